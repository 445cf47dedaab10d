"""MedCutMix, text side: diagnostic sentences and sentence CutMix between two reports.

A sentence is *diagnostic* when the labeler finds at least one positive finding in it other than
"No Finding" and "Support Devices" (docs/method.md, MedCutMix: the documented reading;
MedCutMix has no public code). Sentence CutMix takes a diagnostic sentence about a finding d from
a partner report whose own report does not state d as present, and puts it into the report:
replacing the report's sentence that negates d when there is one (so the text does not contradict
itself), appended otherwise.

The labeler runs once per report (`analyse`, cached in the training data pipeline as JSON), so
mixing a batch in the training loop is string work only.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field

from pairaug_ray.text.labeler import NEGATIVE, POSITIVE, label_report
from pairaug_ray.text.sections import split_sentences

NOT_DIAGNOSTIC = frozenset({"No Finding", "Support Devices"})


@dataclass(frozen=True)
class DiagnosticSentence:
    text: str
    findings: frozenset[str]  # observations stated as present in this sentence


@dataclass(frozen=True)
class ReportAnalysis:
    """What sentence CutMix needs to know about one report."""

    present: frozenset[str]  # observations the report states as present
    diagnostic: tuple[DiagnosticSentence, ...]
    negated: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # finding -> first negating sentence span

    def to_json(self) -> str:
        return json.dumps(
            {
                "present": sorted(self.present),
                "diagnostic": [[s.text, sorted(s.findings)] for s in self.diagnostic],
                "negated": {k: list(v) for k, v in self.negated.items()},
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ReportAnalysis:
        d = json.loads(text)
        return cls(
            present=frozenset(d["present"]),
            diagnostic=tuple(DiagnosticSentence(t, frozenset(f)) for t, f in d["diagnostic"]),
            negated={k: (int(a), int(b)) for k, (a, b) in d["negated"].items()},
        )


@dataclass(frozen=True)
class TextMix:
    text: str  # the mixed report
    sentence: str  # the partner's sentence that was inserted
    finding: str  # the observation it states
    replaced: str | None  # the report's sentence it replaced (a negation of the finding), if any


def analyse(report: str) -> ReportAnalysis:
    labels = label_report(report, findings_impression_only=False)
    sentences = split_sentences(report)
    found: dict[int, set[str]] = {}
    negated: dict[str, tuple[int, int]] = {}
    for m in labels.mentions:
        if m.certainty == POSITIVE and m.observation not in NOT_DIAGNOSTIC:
            found.setdefault(m.sentence_index, set()).add(m.observation)
        if m.certainty == NEGATIVE:
            s = sentences[m.sentence_index]
            if m.observation not in negated or s.start < negated[m.observation][0]:
                negated[m.observation] = (s.start, s.end)
    return ReportAnalysis(
        present=frozenset(o for o, v in labels.labels.items() if v == 1),
        diagnostic=tuple(
            DiagnosticSentence(sentences[i].text, frozenset(o)) for i, o in sorted(found.items())
        ),
        negated=negated,
    )


def diagnostic_sentences(report: str) -> list[DiagnosticSentence]:
    return list(analyse(report).diagnostic)


def cutmix_analysed(
    report: str,
    analysis: ReportAnalysis,
    partner: ReportAnalysis,
    rng: random.Random,
    replace_contradiction: bool = True,
) -> TextMix | None:
    """Sentence CutMix from cached analyses; None when the partner has no diagnostic sentence about a
    finding the report does not already state as present."""
    choices = [(s, d) for s in partner.diagnostic for d in sorted(s.findings) if d not in analysis.present]
    if not choices:
        return None
    sentence, finding = rng.choice(choices)
    span = analysis.negated.get(finding) if replace_contradiction else None
    if span is not None:
        start, end = span
        return TextMix(
            report[:start] + sentence.text + report[end:], sentence.text, finding, report[start:end]
        )
    head = report.rstrip()
    # Prose ends its sentences with a stop; PairAug's form joins them with "," (train.text_form).
    joiner = "" if not head else " " if head[-1] in ".!?" else ","
    text = head + joiner + sentence.text
    return TextMix(text=text, sentence=sentence.text, finding=finding, replaced=None)


def sentence_cutmix(
    report: str, partner: str, rng: random.Random, replace_contradiction: bool = True
) -> TextMix | None:
    return cutmix_analysed(report, analyse(report), analyse(partner), rng, replace_contradiction)


@dataclass(frozen=True)
class BatchMix:
    """Sentence CutMix over a batch: row i takes a sentence from row partner[i]."""

    partner: list[int]
    mixes: list[TextMix | None]  # None: row i is left as it is

    @property
    def active(self) -> list[bool]:
        return [m is not None for m in self.mixes]


def plan_batch_mix(
    texts: list[str], analyses: list[ReportAnalysis], rng: random.Random, replace_contradiction: bool = True
) -> BatchMix:
    """A random permutation pairs every row with a partner (docs/method.md, MedCutMix, step 2); rows
    whose partner has no eligible sentence (or that drew themselves) stay unchanged."""
    partner = list(range(len(texts)))
    rng.shuffle(partner)
    mixes = [
        None if j == i else cutmix_analysed(texts[i], analyses[i], analyses[j], rng, replace_contradiction)
        for i, j in enumerate(partner)
    ]
    return BatchMix(partner=partner, mixes=mixes)
