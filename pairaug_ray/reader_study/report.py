"""The reader study's report: what the readers' answers say about the pairs (docs/reader-study.md).

    tasks 1-2 (images, reports)   each reader's accuracy and sensitivity for "synthetic", with Wilson
                                  intervals; pooled over readers; per branch (InterAug, IntraAug) and
                                  kept/pruned: the share of synthetic cases caught
    task 3 (pairs)                the share rated good / poor / unsure, per reader and pooled, per
                                  branch and kept/pruned; how the pruning scores rank the pairs
                                  readers rejected (AUC of the score for "poor")
    every task                    agreement between readers (Cohen's kappa for two, Fleiss' for
                                  more) with a bootstrap interval over cases; the paper's figure
                                  beside ours

Written as reader_study.json and report.html (tables and the case grid of the most and least
convincing synthetic cases) into the study's folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pairaug_ray import schema
from pairaug_ray.errors import UserError
from pairaug_ray.eval import readers as stats
from pairaug_ray.reader_study import db
from pairaug_ray.reader_study.draw import TRUTH_SYNTHETIC

REPORT_FORMAT = "pairaug-reader-study-report/1"
# PairAug, section 4.6: two radiology residents, 50 cases per task.
PAPER = {
    "images": {"accuracy": 0.61},
    "reports": {"accuracy": 0.50},
    "pairs": {"good": 0.61},
}
QUORUMS = ("any", "majority", "all")
BRANCHES = {schema.ORIGIN_INTER: "InterAug", schema.ORIGIN_INTRA: "IntraAug"}


def load_study(study_dir: str) -> dict[str, Any]:
    path = Path(study_dir) / "study.json"
    if not path.is_file():
        raise UserError(f"{path} does not exist: draw a study first (pairaug reader-study create)")
    return json.loads(path.read_text())


def answers_by_task(study: dict[str, Any], answers: list[dict[str, Any]]) -> dict[str, dict[str, dict]]:
    """task -> reader -> case id -> answer, for the study's cases only."""
    task_of = {c["case_id"]: c["task"] for c in study["cases"]}
    out: dict[str, dict[str, dict[str, str]]] = defaultdict(lambda: defaultdict(dict))
    for a in answers:
        if a["case_id"] in task_of:
            out[task_of[a["case_id"]]][a["reader"]][a["case_id"]] = a["answer"]
    return out


def _group_of(case: dict[str, Any], by: str) -> str:
    if by == "branch":
        return BRANCHES.get(case["origin"], case["origin"])
    return "kept" if case.get("kept") else "pruned"


def _turing_task(cases: dict[str, dict], by_reader: dict[str, dict[str, str]], task: str) -> dict:
    per_reader = {}
    pooled_truth, pooled_answers = [], []
    for reader, given in sorted(by_reader.items()):
        ids = [c for c in given if c in cases]
        truth = [cases[c]["truth"] for c in ids]
        said = [given[c] for c in ids]
        per_reader[reader] = stats.turing_scores(truth, said)
        pooled_truth += truth
        pooled_answers += said
    out: dict[str, Any] = {
        "cases": len(cases),
        "per_reader": per_reader,
        "pooled": stats.turing_scores(pooled_truth, pooled_answers),
        "agreement": stats.agreement(by_reader, ["real", "synthetic"]),
    }
    # Per branch and kept/pruned: the share of that group's synthetic cases the readers caught.
    for by in ("branch", "kept"):
        groups: dict[str, list[bool]] = defaultdict(list)
        for given in by_reader.values():
            for c, a in given.items():
                case = cases.get(c)
                if case and case["truth"] == TRUTH_SYNTHETIC:
                    groups[_group_of(case, by)].append(a == TRUTH_SYNTHETIC)
        out[f"by_{by}"] = {g: stats.proportion(sum(v), len(v)) for g, v in sorted(groups.items())}
    paper = PAPER[task]["accuracy"]
    ours = out["pooled"]["accuracy"]
    out["paper"] = {
        "accuracy": paper,
        "difference": None if ours["value"] is None else ours["value"] - paper,
        "paper_within_our_interval": None if ours["value"] is None else ours["low"] <= paper <= ours["high"],
    }
    return out


def decide(votes: list[bool], quorum: str) -> bool:
    """Whether the readers' votes (True: reject) reject, by quorum: any, majority (more than half of
    those who answered) or all."""
    if quorum not in QUORUMS:
        raise ValueError(f"quorum must be one of {QUORUMS}, got {quorum!r}")
    if quorum == "any":
        return any(votes)
    if quorum == "all":
        return bool(votes) and all(votes)
    return sum(votes) * 2 > len(votes)


def rejected_cases(by_reader: dict[str, dict[str, str]], quorum: str = "any") -> dict[str, bool]:
    """Pairs task: case id -> whether the readers rejected the pair ("poor" from any reader, from
    a majority of those who rated it, or from all of them)."""
    votes: dict[str, list[bool]] = defaultdict(list)
    for given in by_reader.values():
        for c, a in given.items():
            votes[c].append(a == "poor")
    return {c: decide(v, quorum) for c, v in votes.items()}


def _pairs_task(cases: dict[str, dict], by_reader: dict[str, dict[str, str]], quorum: str) -> dict:
    ratings = ("good", "poor", "unsure")
    out: dict[str, Any] = {
        "cases": len(cases),
        "per_reader": {
            r: stats.rating_shares(list(g.values()), ratings) for r, g in sorted(by_reader.items())
        },
        "pooled": stats.rating_shares([a for g in by_reader.values() for a in g.values()], ratings),
        "agreement": stats.agreement(by_reader, list(ratings)),
    }
    for by in ("branch", "kept"):
        groups: dict[str, list[str]] = defaultdict(list)
        for given in by_reader.values():
            for c, a in given.items():
                if c in cases:
                    groups[_group_of(cases[c], by)].append(a)
        out[f"by_{by}"] = {g: stats.rating_shares(v, ratings) for g, v in sorted(groups.items())}
    rejected = rejected_cases(by_reader, quorum)
    # How the automatic scores rank what readers rejected, per branch and score (InterAug: S_a;
    # IntraAug: S1-S3): what a user needs to set tau and epsilon.
    auc: dict[str, dict[str, Any]] = {}
    for origin, columns in (
        (schema.ORIGIN_INTER, [schema.SCORE_A]),
        (schema.ORIGIN_INTRA, list(schema.INTRA_SCORE_COLUMNS)),
    ):
        ids = [c for c in rejected if c in cases and cases[c]["origin"] == origin]
        for column in columns:
            scores = [cases[c]["scores"].get(column) for c in ids]
            auc[f"{BRANCHES[origin]} {column}"] = stats.score_auc_for_rejected(
                [np.nan if s is None else s for s in scores], [rejected[c] for c in ids]
            )
    out["rejected"] = {"quorum": quorum, "pairs": sum(rejected.values()), "rated": len(rejected)}
    out["score_auc_for_rejected"] = auc
    paper = PAPER["pairs"]["good"]
    ours = out["pooled"]["good"]
    out["paper"] = {
        "good": paper,
        "difference": None if ours["value"] is None else ours["value"] - paper,
        "paper_within_our_interval": None if ours["value"] is None else ours["low"] <= paper <= ours["high"],
    }
    return out


def build_report(study: dict[str, Any], answers: list[dict[str, Any]], quorum: str = "any") -> dict:
    """The report's content (reader_study.json) from the study and every answer."""
    grouped = answers_by_task(study, answers)
    tasks = {}
    for task in study["tasks"]:
        cases = {c["case_id"]: c for c in study["cases"] if c["task"] == task}
        by_reader = {r: dict(g) for r, g in grouped.get(task, {}).items()}
        tasks[task] = (
            _pairs_task(cases, by_reader, quorum) if task == "pairs" else _turing_task(cases, by_reader, task)
        )
        tasks[task]["answered"] = {r: len(g) for r, g in sorted(by_reader.items())}
    # Overall, tasks 1-2 together: per reader and pooled ("can readers tell synthetic from real?").
    truth_of = {c["case_id"]: c["truth"] for c in study["cases"] if c["task"] in ("images", "reports")}
    overall_by_reader: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for a in answers:
        if a["case_id"] in truth_of:
            overall_by_reader[a["reader"]][0].append(truth_of[a["case_id"]])
            overall_by_reader[a["reader"]][1].append(a["answer"])
    overall = {
        "per_reader": {r: stats.turing_scores(ts, ss) for r, (ts, ss) in sorted(overall_by_reader.items())},
        "pooled": stats.turing_scores(
            [truth for ts, _ in overall_by_reader.values() for truth in ts],
            [said for _, ss in overall_by_reader.values() for said in ss],
        ),
    }
    seconds = [a["seconds"] for a in answers]
    return {
        "format": REPORT_FORMAT,
        "study": {k: study[k] for k in ("seed", "cases_per_task", "include_pruned", "tasks", "sources")},
        "readers": sorted({a["reader"] for a in answers}),
        "answers": len(answers),
        "median_seconds_per_case": float(np.median(seconds)) if seconds else None,
        "paper": PAPER,
        "tasks": tasks,
        "overall_real_vs_synthetic": overall,
        "cases": case_summary(study, grouped),
    }


def case_summary(study: dict[str, Any], grouped: dict[str, dict[str, dict]]) -> list[dict[str, Any]]:
    """Per synthetic case: how convincing readers found it (the share who called it real, tasks 1-2;
    the share who rated it good, task 3)."""
    out = []
    for c in study["cases"]:
        if c["truth"] == "real":
            continue
        said = [g[c["case_id"]] for g in grouped.get(c["task"], {}).values() if c["case_id"] in g]
        if not said:
            continue
        convincing = "good" if c["task"] == "pairs" else "real"
        out.append(
            {
                "case_id": c["case_id"],
                "task": c["task"],
                "pair_id": c["pair_id"],
                "origin": c["origin"],
                "kept": c.get("kept"),
                "answers": said,
                "convincing": sum(a == convincing for a in said) / len(said),
            }
        )
    return out


# --- the HTML page --------------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th:first-child,td:first-child{text-align:left}figure{display:inline-block;margin:.3rem;width:200px;vertical-align:top}
figure img{width:200px;height:200px;background:#000}figcaption{font-size:12px}.grid{margin-bottom:1.5rem}
"""


def _pct(p: dict[str, Any] | None) -> str:
    if not p or p.get("value") is None:
        return "n/a"
    return f"{100 * p['value']:.0f}% ({100 * p['low']:.0f}-{100 * p['high']:.0f}), n={p['n']}"


def _kappa(k: dict[str, Any]) -> str:
    if k.get("value") is None:
        return f"n/a ({k.get('readers', 0)} readers, {k.get('cases', 0)} shared cases)"
    ci = "" if k["low"] is None else f" ({k['low']:.2f} to {k['high']:.2f})"
    return f"{k['method']} {k['value']:.2f}{ci} over {k['cases']} cases"


def _thumb(path: Path, size: int = 200) -> str:
    img = Image.open(path).convert("L").resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _grid(study_dir: Path, study: dict[str, Any], rows: list[dict], title: str) -> str:
    by_id = {c["case_id"]: c for c in study["cases"]}
    figs = []
    for r in rows:
        case = by_id[r["case_id"]]
        caption = (
            f"{BRANCHES.get(r['origin'], r['origin'])}, {'kept' if r['kept'] else 'pruned'}: "
            f"{100 * r['convincing']:.0f}% {'good' if r['task'] == 'pairs' else 'called real'}"
        )
        body = ""
        if case.get("image"):
            body += f'<img alt="case {html.escape(r["case_id"])}" src="{_thumb(study_dir / "media" / case["image"])}">'
        if case.get("report"):
            body += f"<div>{html.escape(case['report'][:300])}</div>"
        figs.append(f"<figure>{body}<figcaption>{html.escape(caption)}</figcaption></figure>")
    return f'<h3>{html.escape(title)}</h3><div class="grid">{"".join(figs) or "<p>none</p>"}</div>'


def render_html(study_dir: str, study: dict[str, Any], report: dict[str, Any], grid_size: int = 6) -> str:
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Reader study report</title>",
        f"<style>{STYLE}</style></head><body><h1>Reader study report</h1>",
        f"<p>{len(report['readers'])} readers ({html.escape(', '.join(report['readers']))}), "
        f"{report['answers']} answers; median {report['median_seconds_per_case'] or 0:.1f} s per case. "
        "Intervals: Wilson 95% for shares, bootstrap over cases for kappa.</p>",
    ]
    for task, t in report["tasks"].items():
        parts.append(f"<h2>Task: {task} ({t['cases']} cases)</h2><table>")
        if task == "pairs":
            parts.append("<tr><th>reader</th><th>good</th><th>poor</th><th>unsure</th></tr>")
            for name, shares in [*t["per_reader"].items(), ("all readers", t["pooled"])]:
                cells = "".join(f"<td>{_pct(shares[k])}</td>" for k in ("good", "poor", "unsure"))
                parts.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
            parts.append(
                f"<tr><td>PairAug (paper)</td><td>{100 * PAPER['pairs']['good']:.0f}%</td><td></td><td></td></tr></table>"
            )
            for by in ("by_branch", "by_kept"):
                parts.append("<table><tr><th>group</th><th>good</th><th>poor</th><th>unsure</th></tr>")
                for g, shares in t[by].items():
                    cells = "".join(f"<td>{_pct(shares[k])}</td>" for k in ("good", "poor", "unsure"))
                    parts.append(f"<tr><td>{html.escape(g)}</td>{cells}</tr>")
                parts.append("</table>")
            parts.append(
                f"<p>Rejected (poor, quorum {t['rejected']['quorum']}): {t['rejected']['pairs']} of "
                f"{t['rejected']['rated']} rated pairs. How the pruning scores rank them (AUC of the "
                "score for rejected; 1 = every rejected pair scored lowest, 0.5 = blind):</p><table>"
                "<tr><th>score</th><th>AUC</th><th>rejected</th><th>accepted</th></tr>"
            )
            for name, a in t["score_auc_for_rejected"].items():
                auc = "n/a" if a["auc"] is None else f"{a['auc']:.2f}"
                parts.append(
                    f"<tr><td>{name}</td><td>{auc}</td><td>{a['rejected']}</td><td>{a['accepted']}</td></tr>"
                )
            parts.append("</table>")
        else:
            parts.append("<tr><th>reader</th><th>accuracy</th><th>sensitivity (synthetic)</th></tr>")
            for name, s in [*t["per_reader"].items(), ("all readers", t["pooled"])]:
                parts.append(
                    f"<tr><td>{html.escape(name)}</td><td>{_pct(s['accuracy'])}</td>"
                    f"<td>{_pct(s['sensitivity_synthetic'])}</td></tr>"
                )
            parts.append(
                f"<tr><td>PairAug (paper)</td><td>{100 * PAPER[task]['accuracy']:.0f}%</td><td></td></tr></table>"
                "<table><tr><th>synthetic cases caught, by group</th><th>share</th></tr>"
            )
            for by in ("by_branch", "by_kept"):
                for g, p in t[by].items():
                    parts.append(f"<tr><td>{html.escape(g)}</td><td>{_pct(p)}</td></tr>")
            parts.append("</table>")
        parts.append(f"<p>Agreement: {_kappa(t['agreement'])}.</p>")
        rows = sorted((c for c in report["cases"] if c["task"] == task), key=lambda c: -c["convincing"])
        if rows:
            parts.append(_grid(Path(study_dir), study, rows[:grid_size], "Most convincing synthetic cases"))
            parts.append(
                _grid(Path(study_dir), study, rows[::-1][:grid_size], "Least convincing synthetic cases")
            )
    parts.append("</body></html>")
    return "".join(parts)


def write_report(study_dir: str, db_url: str | None = None, quorum: str = "any") -> dict[str, Any]:
    """reader_study.json and report.html in the study's folder; returns the report."""
    study = load_study(study_dir)
    engine = db.open_study_db(db_url or db.default_url(study_dir))
    report = build_report(study, db.all_answers(engine), quorum)
    out = Path(study_dir)
    (out / "reader_study.json").write_text(json.dumps(report, indent=1))
    (out / "report.html").write_text(render_html(study_dir, study, report))
    return report


def format_report(report: dict[str, Any]) -> str:
    """The terminal's summary: one line per task."""
    lines = [f"{len(report['readers'])} readers, {report['answers']} answers"]
    overall = report.get("overall_real_vs_synthetic", {}).get("pooled", {}).get("accuracy")
    if overall and overall["n"]:
        lines.append(f"  real vs synthetic, images and reports together: accuracy {_pct(overall)}")
    for task, t in report["tasks"].items():
        if task == "pairs":
            p = t["pooled"]
            lines.append(
                f"  pairs    good {_pct(p['good'])}, poor {_pct(p['poor'])} (paper: good 61%); "
                f"kappa {_kappa(t['agreement'])}"
            )
        else:
            lines.append(
                f"  {task:<8} accuracy {_pct(t['pooled']['accuracy'])} (paper: "
                f"{100 * PAPER[task]['accuracy']:.0f}%); kappa {_kappa(t['agreement'])}"
            )
    return "\n".join(lines)
