"""Which text of a pair a CLIP trains on (train.text: impression, findings+impression, report), and
in which form (train.text_form)."""

from __future__ import annotations

import re
from typing import Any

from pairaug_ray import schema
from pairaug_ray.text.sections import split_sentences

_WORD = re.compile(r"\w+")


def training_text(row: dict[str, Any], mode: str, form: str = "as_written") -> str:
    """CheXzero trains on the impression. Synthetic reports have no sections (the LLM rewrote the
    whole text), so they, and corpora without sections, use the report as it is.

    "impression+denials" is the study's text-only control: a real pair's impression followed by the
    findings section's sentences that only deny findings ("No pleural effusion."), the kind of
    sentence every rewrite adds, so that a gain from synthetic pairs can be told from a gain from
    denial sentences alone (docs/study.md).

    `form` "pairaug" puts every text, real or synthetic, in PairAug's preprocessed form
    (`pairaug_form`): the rewrites start from that form and an LLM answers in it, so real prose
    beside them would let the contrastive loss tell real from synthetic pairs by punctuation."""
    impression, findings, report = (
        _text(row.get(c)) for c in (schema.IMPRESSION, schema.FINDINGS, schema.REPORT)
    )
    if row.get(schema.ORIGIN, schema.ORIGIN_REAL) != schema.ORIGIN_REAL or mode == "report":
        text = report or " "
    elif mode == "impression":
        text = impression or report or "NO IMPRESSION"
    elif mode == "impression+denials":
        from pairaug_ray.text.prompt_text import denials

        said = set(split_text(impression))
        added = [s for s in denials(findings) if s not in said]
        text = " ".join([impression or report or "NO IMPRESSION", *added])
    else:
        text = " ".join(p for p in (findings, impression) if p) or report or " "
    return pairaug_form(text) if form == "pairaug" else text


def pairaug_form(text: str) -> str:
    """PairAug's report form: each sentence lower-cased to its words (`\\w+`, ASCII), the sentences
    joined by "," with no space. Idempotent (the sentence splitter cuts at such commas), and
    sentences survive, which MedCutMix's sentence CutMix needs. Text with no word stays as it is."""
    sentences = []
    for sentence in split_sentences(text):
        words = [
            w for t in _WORD.findall(sentence.text.lower()) if (w := t.encode("ascii", "ignore").decode())
        ]
        if words and not (len(words) == 1 and words[0].isdigit()):  # a stray list number
            sentences.append(" ".join(words))
    return ",".join(sentences) or text


def split_text(text: str) -> list[str]:
    return [s.text for s in split_sentences(text or "")]


def _text(value: Any) -> str:
    """A section's text; missing (None, or NaN in a pandas row) is empty."""
    return value.strip() if isinstance(value, str) else ""
