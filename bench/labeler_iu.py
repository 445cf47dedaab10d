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
import importlib.util
import re
import resource
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text.labeler import ReportLabels, label_report
from pairaug_ray.text.phrases import PLAIN

ARCHIVE_IN_WHEEL = Path("data") / "NLMCXR_reports.tgz"

# MeSH major term -> CheXpert observation. A term is "Head/qualifier/qualifier..."; a rule is
# (head, required qualifier or None). Chosen to follow CheXpert's definitions of the observations:
# - Lung Opacity includes lung scarring and interstitial markings (CheXpert's opacity list has
#   "scar" and "interstitial marking"), lung densities and infiltrates, but not atelectasis, edema
#   or pneumonia (the labeler does not propagate CheXpert's hierarchy either).
# - Lung Lesion is Nodule and Mass, plus round Opacity/Density (how the indexers encode "nodular
#   opacity"); granulomas are not lesions for CheXpert.
# - Edema includes Pulmonary Congestion: CheXpert maps "vascular congestion" to Edema.
# - Support Devices: catheters, tubes, implanted devices (pacemakers, valves), stents and other
#   medical devices; not "Surgical Instruments" (clips, sternotomy wires), which CheXpert does
#   not count as support devices, nor foreign bodies.
MESH_RULES: dict[str, tuple[tuple[str, str | None], ...]] = {
    "No Finding": (("normal", None),),
    "Enlarged Cardiomediastinum": (("Mediastinum", "prominent"), ("Mediastinum", "enlarged")),
    "Cardiomegaly": (("Cardiomegaly", None), ("Cardiac Shadow", "enlarged")),
    "Lung Opacity": (
        ("Opacity", None),
        ("Airspace Disease", None),
        ("Infiltrate", None),
        ("Density", "lung"),
        ("Density", "retrocardiac"),
        ("Cicatrix", "lung"),
        ("Markings", "interstitial"),
        ("Lung", "interstitial"),
        ("Lung Diseases, Interstitial", None),
    ),
    "Lung Lesion": (("Nodule", None), ("Mass", None), ("Opacity", "round"), ("Density", "round")),
    "Edema": (("Pulmonary Edema", None), ("Pulmonary Congestion", None)),
    "Consolidation": (("Consolidation", None),),
    "Pneumonia": (("Pneumonia", None),),
    "Atelectasis": (("Pulmonary Atelectasis", None),),
    "Pneumothorax": (("Pneumothorax", None), ("Hydropneumothorax", None), ("Hemopneumothorax", None)),
    "Pleural Effusion": (("Pleural Effusion", None), ("Hydropneumothorax", None), ("Hemothorax", None)),
    "Pleural Other": (("Thickening", "pleura"), ("Cicatrix", "pleura"), ("Calcinosis", "pleura")),
    "Fracture": (("Fractures, Bone", None),),
    "Support Devices": (
        ("Catheters, Indwelling", None),
        ("Implanted Medical Device", None),
        ("Tube, Inserted", None),
        ("Medical Device", None),
        ("Stents", None),
    ),
}
NOT_INDEXED = "No Indexing"


@dataclass(frozen=True)
class IUReport:
    uid: str
    findings: str | None
    impression: str | None
    mesh: tuple[str, ...]

    @property
    def text(self) -> str:
        """Findings then impression, a blank line apart so they never share a sentence."""
        return "\n\n".join(s for s in (self.findings, self.impression) if s)


def iu_archive() -> Path | None:
    """The reports archive inside the installed torchxrayvision wheel, or None if not installed."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / ARCHIVE_IN_WHEEL
    return path if path.is_file() else None


def load_iu_reports(archive: Path) -> list[IUReport]:
    reports = []
    with tarfile.open(archive) as tar:
        for member in tar:
            if not (member.isfile() and member.name.endswith(".xml")):
                continue
            fh = tar.extractfile(member)
            if fh is None:
                continue
            root = ET.fromstring(fh.read())
            sections = {a.get("Label"): (a.text or "").strip() for a in root.iter("AbstractText")}
            mesh = tuple(m.text.strip() for m in root.iter("major") if m.text and m.text.strip())
            uid = root.find("uId")
            reports.append(
                IUReport(
                    uid=uid.get("id", member.name) if uid is not None else member.name,
                    findings=sections.get("FINDINGS") or None,
                    impression=sections.get("IMPRESSION") or None,
                    mesh=mesh,
                )
            )
    return reports


def mesh_observations(terms: Iterable[str]) -> set[str] | None:
    """The CheXpert observations a report's MeSH terms name; None if the report was not indexed."""
    parsed = [[p.strip() for p in t.split("/")] for t in terms]
    if not parsed or any(p[0] == NOT_INDEXED for p in parsed):
        return None
    found = set()
    for obs, rules in MESH_RULES.items():
        for head, qualifier in rules:
            if any(p[0] == head and (qualifier is None or qualifier in p[1:]) for p in parsed):
                found.add(obs)
    return found


@dataclass(frozen=True)
class Score:
    observation: str
    support: int  # reports whose MeSH names the observation
    predicted: int  # reports the labeler calls positive
    precision: float
    recall: float
    predicted_pu: int  # positive or uncertain
    precision_pu: float
    recall_pu: float


def _ratio(a: int, b: int) -> float:
    return a / b if b else float("nan")


def score(reports: list[IUReport], labels: list[ReportLabels]) -> list[Score]:
    gold = [mesh_observations(r.mesh) if r.text else None for r in reports]
    pairs = [(g, lab.labels) for g, lab in zip(gold, labels, strict=True) if g is not None]
    scores = []
    for obs in CHEXPERT_OBSERVATIONS:
        support = sum(obs in g for g, _ in pairs)
        row = [obs, support]
        for accepted in ({1}, {1, -1}):
            predicted = sum(lab[obs] in accepted for _, lab in pairs)
            tp = sum(obs in g and lab[obs] in accepted for g, lab in pairs)
            row += [predicted, _ratio(tp, predicted), _ratio(tp, support)]
        scores.append(Score(*row))
    return scores


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
