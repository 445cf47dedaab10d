"""Which text of a pair a CLIP trains on (train.text: impression, findings+impression, report)."""

from __future__ import annotations

from typing import Any

from pairaug_ray import schema


def training_text(row: dict[str, Any], mode: str) -> str:
    """CheXzero trains on the impression. Synthetic reports have no sections (the LLM rewrote the
    whole text), so they, and corpora without sections, use the report as it is."""
    impression, findings, report = (
        _text(row.get(c)) for c in (schema.IMPRESSION, schema.FINDINGS, schema.REPORT)
    )
    if row.get(schema.ORIGIN, schema.ORIGIN_REAL) != schema.ORIGIN_REAL or mode == "report":
        return report or " "
    if mode == "impression":
        return impression or report or "NO IMPRESSION"
    return " ".join(p for p in (findings, impression) if p) or report or " "


def _text(value: Any) -> str:
    """A section's text; missing (None, or NaN in a pandas row) is empty."""
    return value.strip() if isinstance(value, str) else ""
