"""What every corpus adapter shares: which report text to train on."""

from __future__ import annotations

from pairaug_ray.config import ReportText
from pairaug_ray.text.sections import chexzero_impression, pairaug_text


def report_text(mode: ReportText, raw: str, findings: str | None, impression: str | None) -> str | None:
    """The training text of a report.

    pairaug:  impression + findings, lower-cased, punctuation removed, sentences joined (PairAug's
              preprocessing); None when fewer than 3 tokens remain, as PairAug drops those.
    chexzero: the impression section only, by CheXzero's rule ('NO IMPRESSION' if missing).
    sections: findings then impression, as written.
    """
    if mode == "pairaug":
        return pairaug_text(impression, findings)
    if mode == "chexzero":
        return chexzero_impression(raw)
    if mode == "sections":
        text = " ".join(s for s in (findings, impression) if s)
        return text or None
    raise ValueError(f"unknown report text mode {mode!r}; use pairaug, chexzero or sections")
