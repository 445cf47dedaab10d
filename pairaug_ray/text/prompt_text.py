"""The text a generator is prompted with, when it should not be the report word for word.

Text-to-image models draw the words they are given, negated or not: the study's generators draw a
pleural effusion for "No pleural effusion." (docs/study.md, measured). `without_denials` leaves
out of an InterAug prompt the sentences that only deny findings, so the image leaves them out as
the report says; the pair keeps its whole report as its text.
"""

from __future__ import annotations

from pairaug_ray.text.labeler import NEGATIVE, label_report
from pairaug_ray.text.sections import split_sentences


def _only_denies(sentence: str) -> bool:
    mentions = label_report(sentence, findings_impression_only=False).mentions
    return bool(mentions) and all(m.certainty == NEGATIVE for m in mentions)


def denials(report: str) -> list[str]:
    """The sentences of `report` whose every finding mention is negated ("No pleural effusion.")."""
    return [s.text for s in split_sentences(report or "") if _only_denies(s.text)]


def without_denials(report: str) -> str:
    """`report` without the sentences whose every finding mention is negated ("No pleural effusion.",
    "The previously seen effusion has resolved."); sentences that state a finding, or mention none
    ("No acute cardiopulmonary process."), stay. "" when nothing else is left (an unconditional draw)."""
    return " ".join(s.text for s in split_sentences(report or "") if not _only_denies(s.text))
