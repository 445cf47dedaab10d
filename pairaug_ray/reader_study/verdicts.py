"""The readers' verdicts as a pruning rule (`prune.reader_verdicts`; docs/reader-study.md).

A synthetic pair is vetoed when the readers rated it "poor" in the pairs task (rule `poor`), or
also when they called its image or its report synthetic in tasks 1-2 (rule `poor_or_synthetic`),
by the quorum the user picks: any reader, a majority of those who answered, or all of them. The
result maps the pair's id to the reason that goes into `prune_reason`.
"""

from __future__ import annotations

from collections import defaultdict

from pairaug_ray.reader_study import db
from pairaug_ray.reader_study.report import QUORUMS, decide, load_study

RULES = ("poor", "poor_or_synthetic")


def vetoed_pairs(
    study_dir: str, *, db_url: str | None = None, rule: str = "poor", quorum: str = "any"
) -> dict[str, str]:
    """pair id -> why the readers vetoed it, for every synthetic pair of the study they vetoed."""
    if rule not in RULES or quorum not in QUORUMS:
        raise ValueError(f"rule must be one of {RULES} and quorum one of {QUORUMS}")
    study = load_study(study_dir)
    cases = {c["case_id"]: c for c in study["cases"]}
    engine = db.open_study_db(db_url or db.default_url(study_dir))
    votes: dict[tuple[str, str], list[bool]] = defaultdict(list)  # (pair id, task) -> veto per reader
    for a in db.all_answers(engine):
        case = cases.get(a["case_id"])
        if case is None or case["truth"] == "real":
            continue
        if case["task"] == "pairs":
            votes[(case["pair_id"], "pairs")].append(a["answer"] == "poor")
        elif rule == "poor_or_synthetic":
            votes[(case["pair_id"], case["task"])].append(a["answer"] == "synthetic")
    reasons: dict[str, list[str]] = defaultdict(list)
    what = {"pairs": "rated poor", "images": "image called synthetic", "reports": "report called synthetic"}
    for (pair_id, task), v in sorted(votes.items()):
        if decide(v, quorum):
            reasons[pair_id].append(f"{what[task]} by {sum(v)} of {len(v)} readers")
    return {p: "readers: " + "; ".join(r) for p, r in reasons.items()}
