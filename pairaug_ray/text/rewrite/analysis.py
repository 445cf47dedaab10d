"""Reading a report: its sentences, which of them are in the labeler's scope, their mentions
and the report's labels.

Sentences, scope and labels are exactly what `labeler.label_report` computes, built from the
labeler's own per-sentence steps (`label_spans`, `sentence_mentions`, `aggregate`) with the
mentions cached per sentence text: reports repeat a small vocabulary of sentences, so checking a
candidate rewrite costs only its new sentences. Also here: normality claims that mention no
finding ("No acute cardiopulmonary process.", "The lungs are clear.") and the check that an
output is not empty and differs from its input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from pairaug_ray.text import labeler
from pairaug_ray.text.labeler import NEGATIVE, POSITIVE, UNCERTAIN, Mention
from pairaug_ray.text.phrases import OTHER_FINDING
from pairaug_ray.text.rewrite.observations import PARENCHYMAL, SD
from pairaug_ray.text.rewrite.style import normalised
from pairaug_ray.text.sections import Sentence, split_sentences

CACHE_MAX = 50_000
_mention_cache: dict[str, tuple[Mention, ...]] = {}


def cached_mentions(text: str) -> tuple[Mention, ...]:
    """The labeler's mentions of one sentence, offsets relative to it (cached by text)."""
    hit = _mention_cache.get(text)
    if hit is None:
        hit = tuple(labeler.sentence_mentions(Sentence(text, 0, len(text)), 0))
        if len(_mention_cache) >= CACHE_MAX:
            _mention_cache.clear()
        _mention_cache[text] = hit
    return hit


def certainty_set(text: str) -> frozenset[tuple[str, str]]:
    return frozenset((m.observation, m.certainty) for m in cached_mentions(text))


@dataclass
class Sent:
    index: int
    text: str
    start: int
    end: int
    scope: bool
    mentions: tuple[Mention, ...]

    def certainty(self, obs: str) -> str | None:
        found = {m.certainty for m in self.mentions if m.observation == obs}
        return next((c for c in (POSITIVE, UNCERTAIN, NEGATIVE) if c in found), None)

    def observations(self) -> list[str]:
        out: list[str] = []
        for m in self.mentions:
            if m.observation != OTHER_FINDING and m.observation not in out:
                out.append(m.observation)
        return out


@dataclass
class Doc:
    text: str
    sentences: list[Sent]
    labels: dict[str, int | None]
    pairaug: bool
    spans: list[tuple[int, int]] | None  # the labeler's scope; None: all of the text

    @property
    def scoped(self) -> list[Sent]:
        return [s for s in self.sentences if s.scope]


_PAIRAUG_FORBIDDEN = re.compile(r"[A-Z.!?;:]")


def analyse(text: str) -> Doc:
    """Sentences, scope and labels exactly as `label_report` computes them."""
    sentences = split_sentences(text)
    spans = labeler.label_spans(text)
    out: list[Sent] = []
    mentions: list[Mention] = []
    labelled_any = False
    for i, s in enumerate(sentences):
        scope = spans is None or any(a <= s.start < b for a, b in spans)
        ms = cached_mentions(s.text) if scope else ()
        if scope:
            labelled_any = labelled_any or any(c.isalpha() for c in s.text)
            mentions.extend(ms)
        out.append(Sent(i, s.text, s.start, s.end, scope, ms))
    labels = labeler.aggregate(mentions, labelled_any)
    pairaug = bool(text.strip()) and not _PAIRAUG_FORBIDDEN.search(text)
    return Doc(text, out, labels, pairaug, spans)


def labels_of(text: str) -> dict[str, int | None]:
    return analyse(text).labels


# "No acute cardiopulmonary process."-style sentences: no mention, but a claim of normality.
SUMMARY_ACUTE = re.compile(
    r"\b(?:(?:no|negative for)(?: (?:evidence|xxxx|signs?) of)? (?:acute|active) (?:radiographic )?(?:cardiopulmonary |cardiac or pulmonary |"
    r"intrathoracic |pulmonary |chest |thoracic |cardiothoracic )?(?:process|abnormality|abnormalities|"
    r"disease|findings?|pathology|change|changes|issues?)"
    r"|normal (?:chest|study|exam|examination|radiograph|chest radiograph|chest x-?ray|frontal and lateral)"
    r"|negative (?:chest|study|exam|examination)"
    r"|unremarkable (?:chest|study|exam|examination|radiograph)|no acute radiographic abnormality"
    r"|no radiographic evidence of acute)",
)
SUMMARY_WHOLE = re.compile(r"^(?:normal|negative|unremarkable|no acute findings?)$")
LUNGS_CLEAR = re.compile(
    r"\b(?:(?:the |both )?(?:lungs?|lung parenchyma|lung fields) (?:is |are |appears? |remains? )?"
    r"(?:otherwise |grossly |now |again )*clear"
    r"|(?:well[- ]expanded and )?clear lungs|lungs (?:are )?(?:well[- ]expanded|expanded) and clear)\b"
)


def is_summary(s: Sent, new_positive: Iterable[str]) -> bool:
    """A normality claim that a newly stated positive finding would contradict."""
    new = set(new_positive) - {SD}
    if not new:
        return False
    low = s.text.lower()
    if SUMMARY_ACUTE.search(low) or SUMMARY_WHOLE.match(low.strip(" .")):
        return not any(m.certainty != NEGATIVE for m in s.mentions if m.observation != OTHER_FINDING)
    if new & PARENCHYMAL and LUNGS_CLEAR.search(low):
        return not any(m.certainty != NEGATIVE for m in s.mentions if m.observation != OTHER_FINDING)
    return False


def ok_text(doc: Doc, out: str) -> bool:
    return bool(out.strip()) and normalised(out) != normalised(doc.text)
