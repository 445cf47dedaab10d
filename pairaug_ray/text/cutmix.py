"""MedCutMix, text side: diagnostic sentences and sentence CutMix between two reports.

A sentence is *diagnostic* when the labeler finds at least one positive finding in it other than
"No Finding" and "Support Devices" (`../shared/notes/algorithms.md` §4, the documented reading;
MedCutMix has no public code). Sentence CutMix takes a diagnostic sentence about a finding d from
a partner report whose own report does not state d as present, and puts it into the report:
replacing the report's sentence that negates d when there is one (so the text does not contradict
itself), appended otherwise.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from pairaug_ray.text.labeler import NEGATIVE, POSITIVE, label_report
from pairaug_ray.text.sections import split_sentences

NOT_DIAGNOSTIC = frozenset({"No Finding", "Support Devices"})


@dataclass(frozen=True)
class DiagnosticSentence:
    text: str
    findings: frozenset[str]  # observations stated as present in this sentence


@dataclass(frozen=True)
class TextMix:
    text: str  # the mixed report
    sentence: str  # the partner's sentence that was inserted
    finding: str  # the observation it states
    replaced: str | None  # the report's sentence it replaced (a negation of the finding), if any


def diagnostic_sentences(report: str) -> list[DiagnosticSentence]:
    labels = label_report(report, findings_impression_only=False)
    sentences = split_sentences(report)
    found: dict[int, set[str]] = {}
    for m in labels.mentions:
        if m.certainty == POSITIVE and m.observation not in NOT_DIAGNOSTIC:
            found.setdefault(m.sentence_index, set()).add(m.observation)
    return [DiagnosticSentence(sentences[i].text, frozenset(obs)) for i, obs in sorted(found.items())]


def sentence_cutmix(
    report: str, partner: str, rng: random.Random, replace_contradiction: bool = True
) -> TextMix | None:
    """The mixed report, or None when the partner has no diagnostic sentence about a finding the
    report does not already state as present."""
    present = {o for o, v in label_report(report, findings_impression_only=False).labels.items() if v == 1}
    choices = [(s, d) for s in diagnostic_sentences(partner) for d in sorted(s.findings) if d not in present]
    if not choices:
        return None
    sentence, finding = rng.choice(choices)
    sentences = split_sentences(report)
    replaced = None
    if replace_contradiction:
        mentions = label_report(report, findings_impression_only=False).mentions
        negated = sorted(
            {m.sentence_index for m in mentions if m.observation == finding and m.certainty == NEGATIVE}
        )
        if negated:
            replaced = sentences[negated[0]]
    if replaced is not None:
        text = report[: replaced.start] + sentence.text + report[replaced.end :]
    else:
        text = report.rstrip() + (" " if report.strip() else "") + sentence.text
    return TextMix(
        text=text, sentence=sentence.text, finding=finding, replaced=replaced.text if replaced else None
    )
