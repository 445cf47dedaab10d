"""Measure `pairaug_ray.text.labeler` against the MeSH indexing of the Indiana University reports.

The torchxrayvision wheel ships `data/NLMCXR_reports.tgz`: 3,955 OpenI chest X-ray reports as XML
with FINDINGS / IMPRESSION sections and MeSH `major` terms assigned by human indexers. The
archive is read in place from site-packages (CC BY-NC-ND 4.0: nothing from it is copied into the
repository). torchxrayvision itself is not imported: it needs torchvision, which is absent.

MeSH is indexing, not a CheXpert-style gold standard: indexers tag what a report is *about*,
skip some findings, tag others that CheXpert would not count, and never record uncertainty. The
numbers below measure agreement with that indexing, a floor on quality rather than its value.

    .venv/bin/python bench/labeler_iu.py            # the table
    .venv/bin/python bench/labeler_iu.py --show "Pleural Effusion" --limit 20   # disagreements
"""

from __future__ import annotations

import argparse
import re
import resource
import time
from pathlib import Path

from pairaug_ray.corpora.iu_reports import (
    IUReport,
    Score,
    iu_archive,
    load_iu_reports,
    mesh_observations,
    score,
)
from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text.labeler import ReportLabels, label_report
from pairaug_ray.text.phrases import PLAIN


def run(reports: list[IUReport]) -> tuple[list[ReportLabels], float]:
    """Label every report; returns the labels and the throughput in reports per second."""
    start = time.perf_counter()
    labels = [label_report(r.text) for r in reports]
    return labels, len(reports) / (time.perf_counter() - start)


def run_keyword_baseline(reports: list[IUReport]) -> tuple[list[ReportLabels], float]:
    """The plain baseline: an observation is positive when any of its phrases occurs, with no
    negation, uncertainty, scope or exclusion handling. Same vocabulary, same regex engine."""
    rules = {obs: re.compile(rf"\b(?:{'|'.join(frags)})\b", re.I) for obs, frags in PLAIN.items()}
    start = time.perf_counter()
    out = []
    for r in reports:
        labels: dict[str, int | None] = dict.fromkeys(CHEXPERT_OBSERVATIONS)
        for obs, rule in rules.items():
            if rule.search(r.text):
                labels[obs] = 1
        if not any(v == 1 for o, v in labels.items() if o != "Support Devices"):
            labels["No Finding"] = 1
        out.append(ReportLabels(labels=labels, mentions=()))
    return out, len(reports) / (time.perf_counter() - start)


def format_table(scores: list[Score]) -> str:
    lines = [
        "| observation | MeSH support | labeled 1 | precision | recall | labeled 1 or -1 | precision | recall |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in scores:
        lines.append(
            f"| {s.observation} | {s.support} | {s.predicted} | {s.precision:.3f} | {s.recall:.3f} "
            f"| {s.predicted_pu} | {s.precision_pu:.3f} | {s.recall_pu:.3f} |"
        )
    return "\n".join(lines)


def show_disagreements(reports: list[IUReport], labels: list[ReportLabels], obs: str, limit: int) -> None:
    """Print false positives and false negatives for one observation (for improving the rules)."""
    for kind in ("false positive", "false negative"):
        print(f"\n## {obs}: {kind}s")
        shown = 0
        for r, lab in zip(reports, labels, strict=True):
            gold = mesh_observations(r.mesh)
            if gold is None or not r.text:
                continue
            predicted = lab.labels[obs] == 1
            if (kind == "false positive" and predicted and obs not in gold) or (
                kind == "false negative" and not predicted and obs in gold
            ):
                print(f"- {r.uid} MeSH={list(r.mesh)} label={lab.labels[obs]}")
                print(f"    {r.text!r}")
                for m in lab.mentions:
                    if m.observation == obs or obs == "No Finding":
                        print(f"    -> {m.observation} {m.certainty}: {m.text!r}")
                shown += 1
                if shown >= limit:
                    break


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, help="NLMCXR_reports.tgz (default: from torchxrayvision)")
    parser.add_argument("--show", metavar="OBSERVATION", help="print disagreements for one observation")
    parser.add_argument("--limit", type=int, default=15)
    args = parser.parse_args(argv)
    archive = args.archive or iu_archive()
    if archive is None:
        parser.error("torchxrayvision is not installed (its wheel holds NLMCXR_reports.tgz); pass --archive")
    reports = load_iu_reports(archive)
    labels, throughput = run(reports)
    baseline, baseline_throughput = run_keyword_baseline(reports)
    scored = sum(bool(r.text) and mesh_observations(r.mesh) is not None for r in reports)
    print(
        f"{len(reports)} reports, {scored} scored (with text and MeSH indexing); "
        f"labelled at {throughput:,.0f} reports/s; keyword baseline {baseline_throughput:,.0f} reports/s "
        f"(labeler/baseline throughput ratio {throughput / baseline_throughput:.2f})\n"
    )
    print(format_table(score(reports, labels)))
    print("\nKeyword baseline (positive when a phrase occurs; no negation or uncertainty):\n")
    print(format_table(score(reports, baseline)))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    print(f"\npeak RSS of this process: {peak_mib:.0f} MiB")
    if args.show:
        show_disagreements(reports, labels, args.show, args.limit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
