"""A rule-based CheXpert-style report labeler: 14 observations, each 1 / 0 / -1 / None.

Why rules: later stages must check, for thousands of synthetic reports and without a GPU, that an
LLM rewrite changed the findings it was asked to change. The CheXpert labeler (NegBio) needs a
dependency parser and Java; this one is pure-Python regexes compiled once at import, with its
vocabulary in `phrases.py`.

How a report is labelled:

1. Scope. If the text has section headers and a findings / impression / conclusion section, only
   those sections are labelled (an INDICATION "eval for pneumonia" is not a finding); otherwise
   all of it. Sentences come from `sections.split_sentences`, so mention offsets and sentence
   indices refer to the text exactly as given.
2. Mentions, per observation (`phrases.PLAIN`). Size/contour phrases (`phrases.SIZE_SUBJECTS`:
   "heart size is normal", "enlarged cardiac silhouette", "cardiomediastinal silhouette within
   normal limits", "costophrenic angles are sharp") carry their own certainty; "top normal" and
   "upper limits of normal" read as normal, "borderline" as uncertain, and a subject with no size
   word ("heart size is stable") is no mention. Exclusions (`phrases.EXCLUDE`) drop look-alikes:
   pericardial effusion, calcified nodules, vertebral collapse, pleural or surgical scars for
   Lung Opacity, prior granulomatous infection for Pneumonia, a fractured catheter or screw.
   CheXpert conventions kept: vascular/pulmonary congestion, vascular prominence, indistinctness
   and Kerley lines are Edema, at most uncertain (`phrases.UNCERTAIN_PHRASES`); a positive or
   uncertain CHF / heart failure is Edema and also Cardiomegaly -1; scarring is Lung Opacity
   unless pleural; "cardiomediastinal silhouette" is Enlarged Cardiomediastinum only; granulomas
   are not Lung Lesion; sternotomy wires and surgical clips are not Support Devices; "no new X"
   and "X or Y" are uncertain. Added: "volume loss" is Atelectasis; blunted costophrenic angles
   are Pleural Effusion.
3. Certainty of each mention, from cues in its *clause*: the sentence cut at ";", ":", "but",
   "however", "although", "which", "except", "with the exception of", "other than", "there is",
   ", the|there|this ...", "and the|there ...". In order:
   a. a size phrase that says normal -> negative;
   b. "cannot exclude", "cannot be ruled out", "not excluded", "rule out", "no new" ->
      uncertain (these beat negation, as CheXpert's pre-negation uncertainty rules do);
   c. the nearest cue before the mention is a negation ("no", "without", "negative for", "free
      of", "no evidence of", "absence of", "rather than", "resolution of", "removal of"; "not"
      only within 2 words), or a negation follows within 6 words ("is not seen", "has resolved",
      "removed", "is absent", "appears within normal limits" right after) -> negative;
   d. a borderline size phrase or a congestion-type phrase, the nearest cue before is an
      uncertainty ("may", "possibly", "probable", "likely", "suggest", "concern for",
      "borderline", "evaluate for", ...), one follows ("is suspected", "may be present", "is not
      well seen", "obscured"), the clause has "versus", "vs" or "?", or the mention is one side
      of "X or Y" -> uncertain;
   e. otherwise positive.
   "Nearest cue" means a scope ends at the next cue of another kind ("no pneumonia, possible
   atelectasis"); "no change in", "no significant change" are pseudo cues that end a scope
   without negating anything ("age-indeterminate" is no cue at all); "to suggest", "concerning
   for", "suspicious for" inherit a negation before them ("no opacity to suggest pneumonia") and
   are uncertain alone.
4. Aggregation, as CheXpert's aggregator: per observation 1 if any mention is positive, else -1
   if any is uncertain, else 0 if any is negative, else None (not mentioned). No Finding is 1
   when no observation other than Support Devices is positive or uncertain *and* no "other
   finding" is (emphysema, granuloma, calcification, degenerative change, scoliosis, hernia,
   elevated hemidiaphragm, ...: CheXpert's No Finding list, kept as mentions of the
   pseudo-observation `OTHER_FINDING`, which has no label of its own); otherwise None. No Finding
   is never 0, and it is None for a report with nothing to read (CheXpert would say 1).
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from pairaug_ray.schema import (
    CHEXPERT_OBSERVATIONS,
    LABEL_NEGATIVE,
    LABEL_POSITIVE,
    LABEL_UNCERTAIN,
    label_column,
)
from pairaug_ray.text.phrases import (
    ADJACENT_POST,
    CP_CLEAR,
    CUES,
    EFFECT,
    EXCLUDE,
    INHERIT_REACH,
    INTRINSIC_PRE_REACH,
    OTHER_FINDING,
    PLAIN,
    POST_REACH,
    PRE_REACH,
    SIZE_SUBJECTS,
    UNCERTAIN_PHRASES,
    size_rule,
)
from pairaug_ray.text.sections import (
    FINDINGS_HEADERS,
    IMPRESSION_HEADERS,
    Sentence,
    section_spans,
    split_sentences,
)

Certainty = Literal["positive", "negative", "uncertain"]
POSITIVE: Certainty = "positive"
NEGATIVE: Certainty = "negative"
UNCERTAIN: Certainty = "uncertain"
NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

_LABEL_OF = {POSITIVE: LABEL_POSITIVE, NEGATIVE: LABEL_NEGATIVE, UNCERTAIN: LABEL_UNCERTAIN}


@dataclass(frozen=True)
class Mention:
    """One phrase that speaks about an observation; `start`/`end` index the labelled text."""

    observation: str
    certainty: Certainty
    sentence_index: int
    start: int
    end: int
    text: str


@dataclass(frozen=True)
class ReportLabels:
    labels: dict[str, int | None]
    mentions: tuple[Mention, ...]

    def as_row(self) -> dict[str, int | None]:
        """The labels keyed by manifest column (`label_pleural_effusion`, ...)."""
        return {label_column(o): self.labels[o] for o in CHEXPERT_OBSERVATIONS}


def _alternation(fragments: Iterable[str]) -> str:
    return "|".join(sorted(fragments, key=len, reverse=True))


Mode = Literal["plain", "size", "uncertain"]


@dataclass(frozen=True)
class _Rule:
    observation: str
    pattern: re.Pattern[str]
    mode: Mode  # "size": the pattern's named groups neg/unc/pos say the certainty


def _compile_rules() -> tuple[list[_Rule], dict[str, re.Pattern[str]]]:
    rules = [
        _Rule(obs, re.compile(rf"\b(?:{_alternation(frags)})\b"), "plain") for obs, frags in PLAIN.items()
    ]
    rules += [
        _Rule(obs, re.compile(rf"\b(?:{_alternation(frags)})\b"), "uncertain")
        for obs, frags in UNCERTAIN_PHRASES.items()
    ]
    rules += [_Rule(obs, re.compile(size_rule(subject)), "size") for obs, subject in SIZE_SUBJECTS.items()]
    rules.append(_Rule("Pleural Effusion", re.compile(CP_CLEAR), "size"))
    excludes = {obs: re.compile(rf"\b(?:{_alternation(frags)})\b") for obs, frags in EXCLUDE.items()}
    return rules, excludes


_RULES, _EXCLUDES = _compile_rules()
_CHF = re.compile(r"(?:congestive )?(?:heart|cardiac) failure|chf|congestive failure")

_CLAUSE_PUNCT = re.compile(r"[,;:]")


def _cue_regex() -> re.Pattern[str]:
    parts = [rf"(?P<{kind}>{_alternation(frags)})" for kind, frags in CUES.items()]
    # Word boundaries by lookaround (not \b) so that "vs." works; "?" is a cue wherever it is.
    return re.compile(rf"(?<![a-z0-9])(?:{'|'.join(parts)})(?![a-z0-9])|(?P<qmark>\?)")


_CUE = _cue_regex()
_TERMINATOR = re.compile(
    r";|:|\b(?:but|however|although|though|whereas|while|which|except|otherwise|nevertheless|"
    r"nonetheless|yet|apart from|aside from|other than|with the exception of)\b"
    r"|,\s*(?:the|there|this|these|it|he|she)\b|\band (?:there|the|it|this)\b|\bthere (?:is|are)\b"
)
_WORD = re.compile(r"[a-z0-9]+")
_OR_BETWEEN = re.compile(r"^[\s,]*(?:[a-z-]+[\s,]+){0,3}?(?:and/)?or[\s,]+(?:[a-z-]+[\s,]+){0,3}$")


def lower(text: str) -> str:
    """`text` in lower case, with the same length and offsets as `text`.

    Characters whose lower case is longer than one character ("İ") are left as they are, so that
    offsets found in the result index `text` too.
    """
    low = text.lower()
    if len(low) == len(text):
        return low
    # A few characters lower-case to two ("İ"); keep offsets aligned by leaving those as they are.
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


@dataclass(frozen=True)
class _Raw:
    observation: str
    start: int  # offsets within the sentence
    end: int
    intrinsic: Certainty | None  # what the phrase itself says, before any cue
    size: bool  # a size/contour phrase, predicate included ("heart is enlarged")


def _find_mentions(low: str) -> list[_Raw]:
    by_obs: dict[str, list[_Raw]] = {}
    for rule in _RULES:
        for m in rule.pattern.finditer(low):
            intrinsic: Certainty | None = UNCERTAIN if rule.mode == "uncertain" else None
            if rule.mode == "size":
                groups = m.groupdict()
                if groups.get("neg") or groups.get("neg2"):
                    intrinsic = NEGATIVE
                elif groups.get("unc") or groups.get("unc2"):
                    intrinsic = UNCERTAIN
                else:
                    intrinsic = POSITIVE
            by_obs.setdefault(rule.observation, []).append(
                _Raw(rule.observation, m.start(), m.end(), intrinsic, rule.mode == "size")
            )
    found: list[_Raw] = []
    for obs, raws in by_obs.items():
        exclude = _EXCLUDES.get(obs)
        excluded = [(e.start(), e.end()) for e in exclude.finditer(low)] if exclude else []
        kept: list[_Raw] = []
        # Longest first, so a size phrase beats a plain word inside it.
        for r in sorted(raws, key=lambda r: (r.start - r.end, r.start)):
            if any(s < r.end and r.start < e for s, e in excluded):
                continue
            if any(k.start < r.end and r.start < k.end for k in kept):
                continue
            kept.append(r)
        found.extend(kept)
    found.sort(key=lambda r: (r.start, r.end))
    return found


@dataclass(frozen=True)
class _Cue:
    kind: str
    start: int
    end: int
    clause: int


def _certainties(low: str, raws: list[_Raw]) -> list[Certainty]:
    terminators = [(m.start(), m.end()) for m in _TERMINATOR.finditer(low)]
    term_ends = [e for _, e in terminators]

    def clause_of(pos: int) -> int:
        return bisect.bisect_right(term_ends, pos)

    cues = [
        _Cue(
            "unc_both" if m.lastgroup == "qmark" else m.lastgroup or "",
            m.start(),
            m.end(),
            clause_of(m.start()),
        )
        for m in _CUE.finditer(low)
        if m.lastgroup != "ignore" and not any(s <= m.start() < e for s, e in terminators)
    ]

    def words(a: int, b: int) -> int:
        return len(_WORD.findall(low, a, b))

    out: list[Certainty] = [_certainty(r, low, cues, clause_of(r.start), words) for r in raws]

    # "atelectasis or pneumonia": both sides uncertain, unless negated ("no effusion or pneumothorax")
    # or listed after a pseudo cue ("no change in the effusion or pneumothorax").
    for i in range(len(raws) - 1):
        a, b = raws[i], raws[i + 1]
        if a.end > b.start or clause_of(a.start) != clause_of(b.start) or a.size or b.size:
            continue
        before = [c for c in cues if c.clause == clause_of(a.start) and c.end <= a.start]
        if before and before[-1].kind == "pseudo":
            continue
        if (
            out[i] == POSITIVE
            and out[i + 1] in (POSITIVE, UNCERTAIN)
            and _OR_BETWEEN.match(low[a.end : b.start])
        ):
            out[i] = out[i + 1] = UNCERTAIN
    return out


def _certainty(
    r: _Raw, low: str, cues: list[_Cue], clause: int, words: Callable[[int, int], int]
) -> Certainty:
    if r.intrinsic == NEGATIVE:
        return NEGATIVE
    same = [c for c in cues if c.clause == clause]
    effects: set[str | None] = set()
    # The nearest cue before the mention decides; any other cue kind in between ends its scope.
    before = [c for c in same if c.end <= r.start]
    if before:
        pre = before[-1]
        if pre.kind == "inherit":
            # Takes the polarity of the cue before it ("no X to suggest Y"), else is uncertain.
            earlier = before[-2] if len(before) > 1 else None
            if earlier and EFFECT.get(earlier.kind) == "neg" and words(earlier.end, r.start) <= INHERIT_REACH:
                effects.add("neg")
            elif words(pre.end, r.start) <= PRE_REACH["unc_pre"]:
                effects.add("unc")
        else:
            reach = PRE_REACH.get(pre.kind)
            if r.size and reach is not None:
                # "no enlarged heart", but not "no effusion, heart is enlarged"
                reach = INTRINSIC_PRE_REACH if not _CLAUSE_PUNCT.search(low, pre.end, r.start) else -1
            if reach is not None and words(pre.end, r.start) <= reach:
                effects.add(EFFECT[pre.kind])
    if any(c.kind == "unc_both" for c in same):
        effects.add("unc")
    for c in same:
        if c.start < r.end and r.start < c.end:
            # A cue inside a size phrase ("heart may be enlarged") only ever makes it uncertain.
            if r.size and EFFECT[c.kind] in ("unc", "ovr"):
                effects.add("unc")
        elif c.start >= r.end:
            reach = POST_REACH.get(c.kind)
            if reach is None and c.kind != "unc_both":
                break  # a cue that only looks forward starts a new scope
            if c.kind in ADJACENT_POST and low[r.end : c.start].strip():
                continue  # "edema, normal heart size" says nothing about edema
            if reach is not None and words(r.end, c.start) <= reach:
                effects.add(EFFECT[c.kind])
    if "ovr" in effects:
        return UNCERTAIN
    if "neg" in effects:
        return NEGATIVE
    if "unc" in effects or r.intrinsic == UNCERTAIN:
        return UNCERTAIN
    return POSITIVE


# Sections that describe the request or the procedure, never the image ("evaluate for pneumonia").
_NOT_FINDINGS = frozenset(
    (
        "EXAMINATION",
        "EXAM",
        "TYPE OF EXAMINATION",
        "PROCEDURE",
        "INDICATION",
        "INDICATIONS",
        "CLINICAL INDICATION",
        "CLINICAL INFORMATION",
        "CLINICAL HISTORY",
        "HISTORY",
        "REASON FOR EXAMINATION",
        "REASON FOR EXAM",
        "REASON FOR STUDY",
        "TECHNIQUE",
        "COMPARISON",
        "COMPARISONS",
        "REFERENCE EXAM",
        "RECOMMENDATION(S)",
        "RECOMMENDATIONS",
        "RECOMMENDATION",
        "NOTIFICATION",
        "NOTIFICATIONS",
    )
)


def label_spans(text: str) -> list[tuple[int, int]] | None:
    """The character ranges of `text` that `label_report` labels, or None for all of `text`.

    The findings and impression sections when the report has them; otherwise everything but the
    request/procedure sections; everything when there are no headers at all.
    """
    sections = section_spans(text)
    wanted = set(FINDINGS_HEADERS) | set(IMPRESSION_HEADERS)
    spans = [(s.body_start, s.body_end) for s in sections if s.name in wanted]
    if spans or not sections:
        return spans or None
    allowed, pos = [], 0
    for s in sections:
        if s.name in _NOT_FINDINGS:
            allowed.append((pos, s.header_start))
            pos = s.body_end
    allowed.append((pos, len(text)))
    return [(a, b) for a, b in allowed if a < b]


def label_report(text: str, *, findings_impression_only: bool = True) -> ReportLabels:
    """Label one report (or any report-like text: a section, a rewrite, PairAug-style text).

    With `findings_impression_only` (the default) a report with FINDINGS / IMPRESSION /
    CONCLUSION headers is labelled on those sections alone, and one with other headers on all
    but its request/procedure sections (INDICATION, HISTORY, TECHNIQUE, COMPARISON, ...); text
    without headers is labelled in full. Mention offsets and sentence indices always refer to
    `text` and to `split_sentences(text)`.
    """
    sentences = split_sentences(text)
    spans = label_spans(text) if findings_impression_only else None
    mentions: list[Mention] = []
    labelled_any = False
    for index, sentence in enumerate(sentences):
        if spans is not None and not any(s <= sentence.start < e for s, e in spans):
            continue
        # A sentence of digits or marks alone ("2.") says nothing, not even "normal".
        labelled_any = labelled_any or any(c.isalpha() for c in sentence.text)
        mentions.extend(sentence_mentions(sentence, index))
    return ReportLabels(labels=aggregate(mentions, labelled_any), mentions=tuple(mentions))


def sentence_mentions(sentence: Sentence, index: int) -> list[Mention]:
    """The mentions in one sentence, each with its certainty, as `label_report` finds them.

    Offsets are `sentence.start` plus the offset within `sentence.text`; every mention gets
    `index` as its sentence index. Empty when the sentence speaks about no observation.
    """
    low = lower(sentence.text)
    raws = _find_mentions(low)
    if not raws:
        return []
    out = []
    for raw, certainty in zip(raws, _certainties(low, raws), strict=True):
        start, end = sentence.start + raw.start, sentence.start + raw.end
        phrase = sentence.text[raw.start : raw.end]
        out.append(Mention(raw.observation, certainty, index, start, end, phrase))
        # CheXpert: a heart failure that is there (or may be) makes cardiomegaly uncertain.
        if raw.observation == "Edema" and certainty != NEGATIVE and _CHF.fullmatch(low[raw.start : raw.end]):
            out.append(Mention("Cardiomegaly", UNCERTAIN, index, start, end, phrase))
    return out


def aggregate(mentions: Iterable[Mention], labelled_any: bool) -> dict[str, int | None]:
    """The 14 labels (1 / 0 / -1 / None, keyed by observation) that `mentions` add up to.

    Step 4 of the module docstring. `labelled_any`: whether any labelled sentence had a letter in
    it; without one, No Finding is None rather than 1.
    """
    seen: dict[str, set[Certainty]] = {}
    for m in mentions:
        seen.setdefault(m.observation, set()).add(m.certainty)
    labels: dict[str, int | None] = {}
    for obs in CHEXPERT_OBSERVATIONS:
        certainties = seen.get(obs, set())
        labels[obs] = next((_LABEL_OF[c] for c in (POSITIVE, UNCERTAIN, NEGATIVE) if c in certainties), None)
    finding = any(
        seen.get(obs, set()) & {POSITIVE, UNCERTAIN}
        for obs in (*CHEXPERT_OBSERVATIONS, OTHER_FINDING)
        if obs not in (NO_FINDING, SUPPORT_DEVICES)
    )
    labels[NO_FINDING] = LABEL_POSITIVE if labelled_any and not finding else None
    return labels


def _as_label(value: object) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return int(value)  # type: ignore[call-overload]


def changed_observations(before: Mapping[str, int | None], after: Mapping[str, int | None]) -> list[str]:
    """Observations (not No Finding) whose label differs between two label mappings.

    Either mapping may be keyed by observation ("Pleural Effusion") or by manifest column
    ("label_pleural_effusion"); a missing key, None and NaN all mean "not mentioned", and 1.0
    equals 1, so labels read back from pandas compare as expected.
    """

    def get(labels: Mapping[str, int | None], obs: str) -> int | None:
        value = labels[obs] if obs in labels else labels.get(label_column(obs))
        return _as_label(value)

    return [o for o in CHEXPERT_OBSERVATIONS if o != NO_FINDING and get(before, o) != get(after, o)]
