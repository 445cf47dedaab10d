"""A deterministic, model-free report rewriter: the `rules` back-end of the rewriting stage.

It does what PairAug asks an LLM to do (its public InterAug/IntraAug/AugText prompts), with rules built
on the project's labeler (`labeler.py`) and sentence splitter (`sections.split_sentences`):

- ``inter`` ("partial opposite meanings"): k in [min_flips, max_flips] observations change
  polarity. A finding the report states (positive or uncertain) is negated ("No pleural
  effusion.", "Heart size is normal."); one it negates becomes a positive statement with a
  plausible severity and side ("There is a small right pleural effusion."). Observations the
  report mentions are preferred; when too few can flip, a new positive finding (CheXpert-5 or
  pneumothorax) is added.
- ``intra`` (the same patient later): at least one observation appears or resolves, phrased
  temporally ("New small left pleural effusion.", "The previously seen right pneumothorax has
  resolved."), and sometimes a remaining positive finding changes severity ("The right pleural
  effusion has increased in size.").
- ``paraphrase`` (the AugText baseline): sentences are reworded without changing what they say
  about any observation; sentences are reordered only when none can be reworded.

How a rewrite is built. The input is split into sentences and labelled once. Only sentences in the
labeler's scope are edited: for a report with FINDINGS / IMPRESSION / CONCLUSION headers, those
sections' sentences; otherwise (no headers, or other headers) the sentences the labeler reads.
Headers, other sections (INDICATION, COMPARISON, ...) and untouched sentences are copied verbatim,
with the whitespace between them. Every sentence that states a flipped observation is rewritten,
so findings and impression agree. Where possible it is cut in its own words: an item of a negated
list ("No pleural effusion or pneumothorax." with the effusion flipped becomes "There is a small
right pleural effusion. No pneumothorax."), a trailing hedge (", concerning for pneumonia"), or
the clauses that do not speak about the flipped observation are kept; the cut text must label
exactly as before. Otherwise the sentence is rebuilt: the flipped observation gets its new
statement, observations it negated become "No A, B or C.", positive ones are restated, and
uncertain ones that only hedged a finding being negated are dropped with it. When a positive
finding is added, "No acute cardiopulmonary process."-style sentences are replaced by it (and
"The lungs are clear." when the new finding is in the lung parenchyma). A finding the report
never mentioned is inserted before its first sentence of pure negations (where positives end in
a typical report), or after its last sentence. New sentences follow the style of the sentence
they replace or sit next to: prose (capitalised, all capitals or all lower case; final period or
not) or PairAug's preprocessed form (lower case, no punctuation, joined by "," with no space).

Guarantees, checked with the labeler inside `rewrite_report` for every output: the text is not
empty and differs from the input after whitespace/case normalisation (even with punctuation
ignored); for ``inter`` and ``intra`` at least one observation's label changes
(`changed_observations`) and every planned flip happened, for ``paraphrase`` no label changes
(No Finding included, except for an input with nothing to label, where any words make it 1). A
candidate that fails is replaced by another seeded variant; after a few, a construction that
always works is used (``inter``/``intra``: add a positive statement of an observation that is not
positive yet; ``paraphrase``: reorder, then an "Overall, ..." lead-in, then repeat a sentence).
See docs/rewriting-rules.md.

Labelling is the labeler's own per-sentence code, with results cached per sentence text (reports
repeat a small vocabulary of sentences), so checking a candidate costs only its new sentences.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text import labeler as _lab
from pairaug_ray.text.labeler import NEGATIVE, NO_FINDING, POSITIVE, UNCERTAIN, Mention
from pairaug_ray.text.phrases import OTHER_FINDING
from pairaug_ray.text.sections import Sentence, section_spans, split_sentences

RULES_VERSION = "1"  # bump when behaviour changes; goes into provenance

Mode = Literal["inter", "intra", "paraphrase"]
MODES: tuple[str, ...] = ("inter", "intra", "paraphrase")


@dataclass(frozen=True)
class RuleEdit:
    """One observation that the rewrite changed (or, for a paraphrase, reworded).

    kind: "to_absent" / "to_present" (inter), "resolved" / "new" / "worsened" / "improved"
    (intra), "reworded" (paraphrase; also a label that moved between 0 and None, i.e. a finding
    that stays absent but is no longer, or newly, stated as absent).
    """

    observation: str
    kind: str
    before: int | None
    after: int | None


@dataclass(frozen=True)
class RuleRewrite:
    text: str
    edits: tuple[RuleEdit, ...]


# --- observations ---------------------------------------------------------------------------------
OBSERVATIONS = tuple(o for o in CHEXPERT_OBSERVATIONS if o != NO_FINDING)
PE, PTX, CM, EC = "Pleural Effusion", "Pneumothorax", "Cardiomegaly", "Enlarged Cardiomediastinum"
LO, LL, ED, CO = "Lung Opacity", "Lung Lesion", "Edema", "Consolidation"
PN, AT, PO, FX, SD = "Pneumonia", "Atelectasis", "Pleural Other", "Fracture", "Support Devices"
# New findings when nothing the report mentions can flip: the CheXpert competition five + PTX.
FALLBACK_NEW = (PE, CM, CO, ED, AT, PTX)
PARENCHYMAL = frozenset((LO, LL, ED, CO, PN, AT))  # contradict "the lungs are clear"

# How likely each observation is to be picked (inter: any mentioned one; intra: resolve a positive,
# or make a negated / unmentioned one appear). Chosen by hand: main findings first, support
# devices and chronic findings (fractures, nodules) rarely.
_INTER_WEIGHT = {PE: 3, PTX: 3, CM: 3, ED: 3, CO: 3, AT: 3, LO: 2, PN: 2, LL: 2, EC: 1, PO: 1, FX: 1, SD: 0.5}
_RESOLVE_WEIGHT = {PE: 3, PTX: 3, CO: 3, AT: 3, ED: 3, PN: 3, LO: 2, SD: 2, CM: 1, EC: 1, LL: 0.5, PO: 0.5, FX: 0.3}  # fmt: skip
_NEW_WEIGHT_MENTIONED = {PE: 2, PTX: 2, CM: 2, ED: 2, CO: 2, AT: 2, LO: 1, PN: 1, LL: 0.5, EC: 0.5, PO: 0.3, FX: 0.3}  # fmt: skip
_NEW_WEIGHT_UNMENTIONED = {PE: 1, PTX: 0.7, CM: 0.7, ED: 1, CO: 1, AT: 1, SD: 0.3}
_SEVERITY_CHANGE = (PE, PTX, ED, CO, AT, LO, CM)


# --- labelling, cached per sentence ---------------------------------------------------------------
_CACHE_MAX = 50_000
_mention_cache: dict[str, tuple[Mention, ...]] = {}


def _sentence_mentions(text: str) -> tuple[Mention, ...]:
    """The labeler's mentions of one sentence, offsets relative to it (cached by text)."""
    hit = _mention_cache.get(text)
    if hit is None:
        hit = tuple(_lab.sentence_mentions(Sentence(text, 0, len(text)), 0))
        if len(_mention_cache) >= _CACHE_MAX:
            _mention_cache.clear()
        _mention_cache[text] = hit
    return hit


def _certainty_set(text: str) -> frozenset[tuple[str, str]]:
    return frozenset((m.observation, m.certainty) for m in _sentence_mentions(text))


@dataclass
class _Sent:
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
class _Doc:
    text: str
    sentences: list[_Sent]
    labels: dict[str, int | None]
    pairaug: bool
    spans: list[tuple[int, int]] | None  # the labeler's scope; None: all of the text

    @property
    def scoped(self) -> list[_Sent]:
        return [s for s in self.sentences if s.scope]


_PAIRAUG_FORBIDDEN = re.compile(r"[A-Z.!?;:]")


def _analyse(text: str) -> _Doc:
    """Sentences, scope and labels exactly as `label_report` computes them."""
    sentences = split_sentences(text)
    spans = _lab.label_spans(text)
    out: list[_Sent] = []
    mentions: list[Mention] = []
    labelled_any = False
    for i, s in enumerate(sentences):
        scope = spans is None or any(a <= s.start < b for a, b in spans)
        ms = _sentence_mentions(s.text) if scope else ()
        if scope:
            labelled_any = labelled_any or any(c.isalpha() for c in s.text)
            mentions.extend(ms)
        out.append(_Sent(i, s.text, s.start, s.end, scope, ms))
    labels = _lab.aggregate(mentions, labelled_any)
    pairaug = bool(text.strip()) and not _PAIRAUG_FORBIDDEN.search(text)
    return _Doc(text, out, labels, pairaug, spans)


def _labels(text: str) -> dict[str, int | None]:
    return _analyse(text).labels


# --- style ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Style:
    pairaug: bool
    case: str = "cap"  # "cap" | "upper" | "lower"
    period: bool = True


_TOKEN = re.compile(r"\w+")


def _style_of(doc: _Doc, sentence: str | None) -> _Style:
    if doc.pairaug:
        return _Style(True)
    if not sentence:
        return _Style(False)
    letters = [c for c in sentence if c.isalpha()]
    case = "cap"
    if len(letters) >= 3 and all(c.isupper() for c in letters):
        case = "upper"
    elif letters and all(not c.isupper() for c in letters):
        case = "lower"
    return _Style(False, case, sentence.rstrip()[-1:] in ".!?")


def _pairaug_form(statement: str) -> str:
    return " ".join(t for t in _TOKEN.findall(statement.lower()) if t.isascii())


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _render(statements: Sequence[str], style: _Style, *, force_period: bool = False) -> str:
    """Prose statements ("There is a small right pleural effusion.") in a sentence's style."""
    if style.pairaug:
        return ",".join(p for p in (_pairaug_form(s) for s in statements) if p)
    out = []
    for s in statements:
        s = _cap(s.strip())
        if s[-1:] not in ".!?":
            s += "."
        if style.case == "upper":
            s = s.upper()
        elif style.case == "lower":
            s = s.lower()
        out.append(s)
    text = " ".join(out)
    if not style.period and not force_period:
        text = text.rstrip(".")
    return text


_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def _normalised(text: str) -> str:
    """Lower case, letters and digits only: stricter than whitespace/case normalisation, so texts
    that differ here also differ there (and for the rewrite stage's own "unchanged" check)."""
    return _NOT_ALNUM.sub(" ", text.lower()).strip()


# --- attributes of a finding ----------------------------------------------------------------------
_SEV_WORDS = {
    PE: ("small", "moderate", "large"),
    PTX: ("small", "moderate", "large"),
    CM: ("mild", "moderate", "marked"),
}
_SEV_DEFAULT = ("mild", "moderate", "severe")
_SEV_PARSE = {
    "trace": 1, "tiny": 1, "small": 1, "minimal": 1, "mild": 1, "mildly": 1, "subtle": 1, "slight": 1,
    "slightly": 1, "moderate": 2, "moderately": 2, "large": 3, "severe": 3, "severely": 3,
    "marked": 3, "markedly": 3, "massive": 3, "extensive": 3,
}  # fmt: skip
_SEV_RX = re.compile(rf"\b(?:{'|'.join(_SEV_PARSE)})\b")
_SIDE_RX = re.compile(r"\b(right|left|bilateral|bilaterally|bibasilar|bibasal|both)\b")
_LOBE_RX = re.compile(r"\b(right|left) (upper|middle|lower) lobe\b")
_BASE_RX = re.compile(r"\b(?:base|bases|basilar|basal|bibasilar|bibasal)\b")
_ZONE_RX = re.compile(r"\b(upper|mid|middle|lower)\b")
_MM_RX = re.compile(r"\b(\d{1,2}) ?mm\b|\b(\d) ?cm\b")
_RIB_RX = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b")
_CLAUSE_CUT = re.compile(r"[,;:]| and | with | but | which ")
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
DEVICES = (
    ("endotracheal tube", "terminates {n} cm above the carina"),
    ("nasogastric tube", "courses below the diaphragm into the stomach"),
    ("right internal jugular central venous catheter", "terminates in the mid SVC"),
    ("left-sided pacemaker", "has leads in the right atrium and right ventricle"),
)


@dataclass(frozen=True)
class _Attrs:
    sev: int | None = None  # 1..3
    side: str | None = None  # right / left / bilateral
    lobe: str | None = None  # "right lower lobe"
    base: bool = False
    zone: str | None = None  # upper / mid / lower (lung nodules)
    size: int | None = None  # mm (lung nodules)
    rib: int | None = None
    device: str | None = None  # a device phrase ("endotracheal tube")
    tail: str | None = None  # what the device does ("terminates 4 cm above the carina")
    noun: str | None = None  # "nodule" / "mass" for lung lesions


def _extract(sentence: str, mention: Mention) -> _Attrs:
    """Side, severity and location stated near a mention (its clause, else the sentence)."""
    low = sentence.lower()
    a, b = mention.start, mention.end
    cuts_before = [m.end() for m in _CLAUSE_CUT.finditer(low, 0, a)]
    lo = cuts_before[-1] if cuts_before else 0
    after = _CLAUSE_CUT.search(low, b)
    hi = after.start() if after else len(low)
    window = low[lo:hi]
    sides = _SIDE_RX.findall(window) or (found if len(set(found := _SIDE_RX.findall(low))) == 1 else [])
    side = None
    if sides:
        side = sides[0]
        if side in ("bilateral", "bilaterally", "bibasilar", "bibasal", "both"):
            side = "bilateral"
    lobe = _LOBE_RX.search(window) or (lobes[0] if len(lobes := list(_LOBE_RX.finditer(low))) == 1 else None)
    sev = _SEV_RX.search(window)
    zone = _ZONE_RX.search(window)
    size = _MM_RX.search(window)
    rib = _RIB_RX.search(window)
    mm = None
    if size:
        mm = int(size.group(1)) if size.group(1) else int(size.group(2)) * 10
    noun = mention.text.lower()
    return _Attrs(
        sev=_SEV_PARSE[sev.group(0)] if sev else None,
        side=side,
        lobe=lobe.group(0) if lobe else None,
        base=bool(_BASE_RX.search(window)),
        zone={"middle": "mid"}.get(zone.group(1), zone.group(1)) if zone else None,
        size=mm,
        rib=int(rib.group(1)) if rib else None,
        device=noun if mention.observation == SD else None,
        noun=noun if mention.observation == LL else None,
    )


def _new_attrs(obs: str, rng: random.Random, known: _Attrs | None = None) -> _Attrs:
    """Plausible attributes for a finding to be stated as present (keeps a known side)."""
    sev = rng.choices((1, 2, 3), (0.5, 0.35, 0.15))[0]
    side = known.side if known and known.side else rng.choice(("right", "left"))
    if obs == PE and not (known and known.side):
        side = rng.choices(("right", "left", "bilateral"), (0.35, 0.3, 0.35))[0]
    if obs == PTX and side == "bilateral":
        side = rng.choice(("right", "left"))
    lobe = known.lobe if known and known.lobe else None
    if lobe is None and obs != AT:  # atelectasis: at a lung base unless the report says a lobe
        lobe = rng.choice([lb for lb in LOBES if side == "bilateral" or lb.startswith(side)])
    device, tail = rng.choice(DEVICES)
    return _Attrs(
        sev=sev,
        side=side,
        lobe=lobe,
        base=True,
        zone=rng.choice(("upper", "mid", "lower")),
        size=rng.randint(6, 24),
        rib=rng.randint(3, 10),
        device=device,
        tail=tail.format(n=rng.randint(3, 6)),
        noun="nodule",
    )


def _sev_word(obs: str, sev: int | None) -> str:
    return _SEV_WORDS.get(obs, _SEV_DEFAULT)[sev - 1] if sev else ""


def _join(*words: str | None) -> str:
    return " ".join(w for w in words if w)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _article(phrase: str) -> str:
    first = phrase.split(" ", 1)[0].lower()
    if first.isdigit():
        return "an" if first in ("8", "11", "18") or first.startswith("8") else "a"
    return "an" if first[:1] in "aeio" else "a"


@dataclass(frozen=True)
class _NP:
    text: str
    countable: bool = False
    plural: bool = False

    def with_article(self) -> str:
        return f"{_article(self.text)} {self.text}" if self.countable and not self.plural else self.text

    @property
    def be(self) -> str:
        return "are" if self.plural else "is"

    @property
    def have(self) -> str:
        return "have" if self.plural else "has"


def _np(obs: str, a: _Attrs, *, severity: bool = True) -> _NP:
    """A noun phrase for a finding: "small right pleural effusion", "8 mm nodule in the ..."."""
    s = _sev_word(obs, a.sev) if severity else ""
    side = a.side
    if obs == PE:
        if side == "bilateral":
            return _NP(_join(s, "bilateral pleural effusions"), True, True)
        return _NP(_join(s, side, "pleural effusion"), True)
    if obs == PTX:
        return _NP(_join(s, side if side != "bilateral" else "bilateral", "pneumothorax"), True)
    if obs == CM:
        return _NP(_join(s, "cardiomegaly"))
    if obs == ED:
        return _NP(_join(s, "pulmonary edema"))
    if obs == CO:
        loc = a.lobe or (_join(side, "basilar" if a.base else "lung") if side else None)
        if side == "bilateral" and not a.lobe:
            loc = "bibasilar" if a.base else "bilateral"
        return _NP(_join(s, loc, "consolidation"))
    if obs == AT:
        kind = ("subsegmental", "plate-like", "extensive")[a.sev - 1] if severity and a.sev else ""
        if a.lobe:
            return _NP(_join(kind, a.lobe, "atelectasis"))
        if side == "bilateral":
            return _NP(_join("bibasilar", kind, "atelectasis"))
        if side:
            return _NP(_join(kind, "atelectasis at the", side, "lung base"))
        return _NP(_join(kind, "atelectasis"))
    if obs == LO:
        adj = ("faint", "patchy", "dense")[a.sev - 1] if severity and a.sev else ""
        if a.lobe:
            return _NP(_join(adj, "opacity in the", a.lobe), True)
        if side == "bilateral":
            return _NP(_join(adj, "bibasilar opacities"), True, True)
        if side:
            return _NP(_join(adj, side, "basilar" if a.base else "lung", "opacity"), True)
        return _NP(_join(adj, "airspace opacity"), True)
    if obs == LL:
        noun = a.noun if a.noun in ("nodule", "mass", "nodules", "masses", "lesion") else "nodule"
        plural = noun.endswith("s") and noun != "mass"
        size = f"{a.size} mm" if severity and a.size and not plural else ""
        where = f"in the {side} {a.zone} lung" if side and a.zone and side != "bilateral" else ""
        if where:
            return _NP(_join(size, noun, where), True, plural)
        return _NP(
            _join(size, side, "pulmonary" if noun.startswith("nodule") else "lung", noun), True, plural
        )
    if obs == PN:
        if a.lobe:
            return _NP(_join(a.lobe, "pneumonia"))
        return _NP(_join(side if side != "bilateral" else "multifocal", "pneumonia"))
    if obs == EC:
        return _NP(_join("mild" if severity and a.sev == 1 else "", "widening of the mediastinum"))
    if obs == PO:
        return _NP(_join("mild" if severity and a.sev == 1 else "", side, "pleural thickening"))
    if obs == FX:
        if a.rib and side and side != "bilateral":
            return _NP(f"fracture of the {side} {_ordinal(a.rib)} rib", True)
        return _NP(_join(side if side != "bilateral" else "", "rib fracture"), True)
    if obs == SD:
        dev = a.device or "support device"
        plural = dev.endswith("s") and not dev.endswith("ss")
        return _NP(dev, True, plural)
    raise KeyError(obs)


# --- statements -----------------------------------------------------------------------------------
# Prose statements; `_render` adapts them to the style of the report. Variant 0 is the "findings"
# form; later mentions of the same observation (an impression repeating the findings) take
# later variants, the last of which is the short impression form.
def _present(obs: str, a: _Attrs, variant: int) -> str:
    sev = _sev_word(obs, a.sev)
    if obs == CM:
        adv = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}.get(sev, "")
        opts = [
            f"The heart is {_join(adv, 'enlarged')}.",
            f"{_join(sev, 'enlargement')} of the cardiac silhouette.",
            f"{_join(sev, 'cardiomegaly')}.",
        ]
    elif obs == EC:
        opts = [
            "The mediastinum is widened.",
            "The cardiomediastinal silhouette is enlarged.",
            "Widening of the superior mediastinum.",
        ]
    elif obs == SD:
        dev = a.device or "support device"
        np_ = _NP(dev, True)
        opts = [
            f"{np_.with_article()} {a.tail}." if a.tail else f"{np_.with_article()} is in place.",
            f"{dev} in place.",
        ]
    else:
        np_ = _np(obs, a)
        there = f"There {np_.be} {np_.with_article()}."
        if obs == PTX:
            there = f"There is a {_join(sev, a.side, 'apical pneumothorax')}."
        if obs == PN:
            opts = [f"Findings are consistent with {np_.text}.", f"{np_.text}."]
        else:
            opts = [there, f"{np_.with_article()} {np_.be} present.", f"{np_.text}."]
    return opts[variant % len(opts)]


def _new(obs: str, a: _Attrs, variant: int) -> str:
    if obs == CM:
        adv = {1: "mildly", 2: "moderately", 3: "markedly"}.get(a.sev or 0, "")
        opts = [
            f"The heart is now {_join(adv, 'enlarged')}.",
            f"New {_join(_sev_word(obs, a.sev), 'cardiomegaly')}.",
        ]
    elif obs == EC:
        opts = ["There is new widening of the mediastinum.", "New mediastinal widening."]
    elif obs == SD:
        dev = a.device or "support device"
        art = _NP(dev, True).with_article()
        opts = [
            f"Interval placement of {art}, which {a.tail}." if a.tail else f"Interval placement of {art}.",
            f"New {dev}.",
        ]
    else:
        np_ = _np(obs, a)
        there = f"There {np_.be} {'a ' if np_.countable and not np_.plural else ''}new {np_.text}."
        opts = [f"New {np_.text}.", f"Interval development of {np_.with_article()}.", there]
    return opts[variant % len(opts)]


def _absent(obs: str, variant: int) -> str:
    opts = _ABSENT[obs]
    return opts[variant % len(opts)]


_ABSENT: dict[str, tuple[str, ...]] = {
    EC: ("The mediastinal contours are normal.", "Normal cardiomediastinal silhouette."),
    CM: ("Heart size is normal.", "The heart is normal in size.", "No cardiomegaly."),
    LO: ("No focal airspace opacity.", "There is no focal opacity."),
    LL: ("No suspicious pulmonary nodules or masses.", "No pulmonary nodule."),
    ED: ("No pulmonary edema.", "There is no pulmonary edema."),
    CO: ("No focal consolidation.", "There is no focal consolidation."),
    PN: ("No evidence of pneumonia.", "No pneumonia."),
    AT: ("No atelectasis.", "There is no atelectasis."),
    PTX: ("No pneumothorax.", "There is no pneumothorax."),
    PE: ("No pleural effusion.", "There is no pleural effusion.", "No evidence of pleural effusion."),
    PO: ("No pleural thickening.",),
    FX: ("No acute fracture.", "No displaced fracture."),
    SD: ("No support devices are present.",),
}
# For "No A, B or C." lists of observations that a rewritten sentence still negates.
_NEG_NOUN = {
    EC: "mediastinal widening", CM: "cardiomegaly", LO: "focal airspace opacity", LL: "pulmonary nodule",
    ED: "pulmonary edema", CO: "focal consolidation", PN: "pneumonia", AT: "atelectasis",
    PTX: "pneumothorax", PE: "pleural effusion", PO: "pleural thickening", FX: "acute fracture",
    SD: "support devices",
}  # fmt: skip


def _negation_list(observations: Sequence[str]) -> list[str]:
    """ "No pleural effusion or pneumothorax." (size-type observations get their own sentence)."""
    out = [_ABSENT[o][0] for o in observations if o in (CM, EC)]
    nouns = [_NEG_NOUN[o] for o in observations if o not in (CM, EC)]
    if len(nouns) == 1:
        out.append(f"No {nouns[0]}.")
    elif nouns:
        out.append(f"No {', '.join(nouns[:-1])} or {nouns[-1]}.")
    return out


def _resolved(obs: str, a: _Attrs, variant: int, *, many_devices: bool = False) -> str:
    if obs == CM:
        opts = ["The heart is now normal in size.", "Interval resolution of cardiomegaly."]
    elif obs == EC:
        opts = [
            "The mediastinal contours are now normal.",
            "Interval resolution of the mediastinal widening.",
        ]
    elif obs == SD:
        if many_devices or not a.device or a.device in ("devices", "support devices", "tubes", "lines"):
            opts = [
                "Previously seen support devices have been removed.",
                "Interval removal of support devices.",
            ]
        else:
            np_ = _np(SD, a)
            opts = [
                f"The previously seen {np_.text} {np_.have} been removed.",
                f"Interval removal of the {np_.text}.",
            ]
    else:
        np_ = _np(obs, a, severity=False)
        opts = [
            f"The previously seen {np_.text} {np_.have} resolved.",
            f"Interval resolution of the {np_.text}.",
            f"The {np_.text} {np_.be} no longer seen.",
        ]
    return opts[variant % len(opts)]


def _severity_change(obs: str, a: _Attrs, worse: bool, variant: int) -> str:
    new_np = _np(obs, a)
    if obs == CM:
        opts = (
            [f"Worsening {new_np.text}.", f"Interval increase in heart size, now with {new_np.text}."]
            if worse
            else [f"Improving {new_np.text}.", f"Interval decrease in heart size, now with {new_np.text}."]
        )
        return opts[variant % len(opts)]
    np0 = _np(obs, replace(a, sev=None), severity=False)
    direction = "increased" if worse else "decreased"
    opts = [
        f"The {np0.text} {np0.have} {direction} in size, now {_sev_word(obs, a.sev)}."
        if obs in (PE, PTX) and a.sev
        else f"The {np0.text} {np0.have} {direction}.",
        f"Interval {'increase' if worse else 'decrease'} in the {np0.text}.",
        f"{'Worsening' if worse else 'Improving'} {new_np.text}.",
    ]
    return opts[variant % len(opts)]


def _possible(obs: str, a: _Attrs) -> str:
    return f"Possible {_np(obs, a).text}."


# "No acute cardiopulmonary process."-style sentences: no mention, but a claim of normality.
_SUMMARY_ACUTE = re.compile(
    r"\b(?:(?:no|negative for)(?: (?:evidence|xxxx|signs?) of)? (?:acute|active) (?:radiographic )?(?:cardiopulmonary |cardiac or pulmonary |"
    r"intrathoracic |pulmonary |chest |thoracic |cardiothoracic )?(?:process|abnormality|abnormalities|"
    r"disease|findings?|pathology|change|changes|issues?)"
    r"|normal (?:chest|study|exam|examination|radiograph|chest radiograph|chest x-?ray|frontal and lateral)"
    r"|negative (?:chest|study|exam|examination)"
    r"|unremarkable (?:chest|study|exam|examination|radiograph)|no acute radiographic abnormality"
    r"|no radiographic evidence of acute)",
)
_SUMMARY_WHOLE = re.compile(r"^(?:normal|negative|unremarkable|no acute findings?)$")
_LUNGS_CLEAR = re.compile(
    r"\b(?:(?:the |both )?(?:lungs?|lung parenchyma|lung fields) (?:is |are |appears? |remains? )?"
    r"(?:otherwise |grossly |now |again )*clear"
    r"|(?:well[- ]expanded and )?clear lungs|lungs (?:are )?(?:well[- ]expanded|expanded) and clear)\b"
)


# --- planning for inter / intra -------------------------------------------------------------------
@dataclass
class _Plan:
    flips: dict[str, str] = field(default_factory=dict)  # obs -> "absent" | "present"
    attrs: dict[str, _Attrs] = field(default_factory=dict)  # attributes of new positives
    severity: dict[str, tuple[bool, _Attrs]] = field(default_factory=dict)  # obs -> (worse, new attrs)


def _first_mention_attrs(doc: _Doc, obs: str) -> _Attrs | None:
    for s in doc.scoped:
        for m in s.mentions:
            if m.observation == obs:
                return _extract(s.text, m)
    return None


def _weighted_sample(items: list[tuple[str, float]], k: int, rng: random.Random) -> list[str]:
    pool = [(o, w) for o, w in items if w > 0]
    out: list[str] = []
    while pool and len(out) < k:
        total = sum(w for _, w in pool)
        r = rng.random() * total
        acc = 0.0
        for i, (o, w) in enumerate(pool):
            acc += w
            if r < acc or i == len(pool) - 1:
                out.append(o)
                pool.pop(i)
                break
    return out


def _plan_inter(doc: _Doc, rng: random.Random, k: int) -> _Plan:
    labels = doc.labels
    mentioned = [(o, float(_INTER_WEIGHT[o])) for o in OBSERVATIONS if labels[o] is not None]
    chosen = _weighted_sample(mentioned, k, rng)
    if len(chosen) < k:
        fresh = [o for o in FALLBACK_NEW if labels[o] is None]
        rng.shuffle(fresh)
        chosen += fresh[: k - len(chosen)]
    plan = _Plan()
    for o in chosen:
        plan.flips[o] = "present" if labels[o] in (0, None) else "absent"
        if plan.flips[o] == "present":
            plan.attrs[o] = _new_attrs(o, rng, _first_mention_attrs(doc, o))
    return plan


def _plan_intra(doc: _Doc, rng: random.Random, k: int) -> _Plan:
    labels = doc.labels
    items: list[tuple[str, float]] = []
    for o in OBSERVATIONS:
        if labels[o] in (1, -1):
            items.append((o, _RESOLVE_WEIGHT.get(o, 0.3)))
        elif labels[o] == 0:
            items.append((o, _NEW_WEIGHT_MENTIONED.get(o, 0.0)))
        else:
            items.append((o, _NEW_WEIGHT_UNMENTIONED.get(o, 0.0)))
    plan = _Plan()
    for o in _weighted_sample(items, k, rng):
        plan.flips[o] = "absent" if labels[o] in (1, -1) else "present"
        if plan.flips[o] == "present":
            plan.attrs[o] = _new_attrs(o, rng, _first_mention_attrs(doc, o))
    # Sometimes a remaining positive finding also changes severity.
    if rng.random() < 0.5:
        options = []
        for o in _SEVERITY_CHANGE:
            if labels[o] != 1 or o in plan.flips:
                continue
            own = [s for s in doc.scoped if s.observations() == [o] and s.certainty(o) == POSITIVE]
            if own:
                options.append((o, own))
        if options:
            o, own = rng.choice(options)
            m = next(m for m in own[0].mentions if m.observation == o)
            a = _extract(own[0].text, m)
            sev = a.sev or 2
            worse = rng.random() < 0.5
            if (worse and sev == 3) or (not worse and sev == 1):
                worse = not worse
            plan.severity[o] = (worse, replace(a, sev=sev + (1 if worse else -1)))
    return plan


def _is_summary(s: _Sent, new_positive: Iterable[str]) -> bool:
    """A normality claim that a newly stated positive finding would contradict."""
    new = set(new_positive) - {SD}
    if not new:
        return False
    low = s.text.lower()
    if _SUMMARY_ACUTE.search(low) or _SUMMARY_WHOLE.match(low.strip(" .")):
        return not any(m.certainty != NEGATIVE for m in s.mentions if m.observation != OTHER_FINDING)
    if new & PARENCHYMAL and _LUNGS_CLEAR.search(low):
        return not any(m.certainty != NEGATIVE for m in s.mentions if m.observation != OTHER_FINDING)
    return False


_LIST_CUE = re.compile(
    r"\b(?:no evidence of|there is no evidence of|negative for|without evidence of|without|with no|"
    r"there (?:is|are) no|no)\s+"
)
_ITEM_SPLIT = re.compile(r"\s*,\s*(?:(?:and|or|nor)\s+)?|\s+(?:and|or|nor)\s+")
_LIST_POST = re.compile(
    r"\s+(?:is|are)\s+(?:seen|identified|present|noted|demonstrated|evident|appreciated)$|\s+(?:seen|identified)$"
)
_HEDGE_TAIL = re.compile(
    r"(?:\s*,\s*|\s+)(?:(?:which|that) (?:is |are )?)?(?:(?:most )?likely|possibly|probably|perhaps|"
    r"concerning for|suspicious for|worrisome for|may|might|could)\b"
)


def _without(s: _Sent, flips: Sequence[str]) -> tuple[str, bool] | None:
    """The sentence in its own words minus what it says about `flips`, or None if that cannot be cut.

    Two shapes are cut: a hedge at the end ("Patchy opacity in the lingula could represent
    pneumonia." without pneumonia is "Patchy opacity in the lingula") and an item of a negated list
    ("No focal consolidation, pneumothorax or large pleural effusion." without the pneumothorax is
    "No focal consolidation or large pleural effusion"). The rest must say exactly what it said
    before (checked with the labeler). Returns (text, whether it goes before the new statements).
    """
    core = _TERMINAL.sub("", s.text).rstrip()
    low = _lab.lower(core)
    flipped = [m for m in s.mentions if m.observation in flips]
    others = [m for m in s.mentions if m.observation not in flips]
    if not flipped or any(m.end > len(core) for m in s.mentions):
        return None
    first = min(m.start for m in flipped)
    last_other = max((m.end for m in others), default=0)
    candidate: str | None = None
    lead = True
    for hm in _HEDGE_TAIL.finditer(low):
        if hm.start() >= last_other and hm.end() <= first and hm.start() > 0:
            candidate = core[: hm.start()]
            break
    if candidate is None:
        cues = [c for c in _LIST_CUE.finditer(low) if c.end() <= first]
        if not cues:
            return None
        cue = cues[-1]
        post = _LIST_POST.search(low, cue.end())
        region_end = post.start() if post else len(low)
        if any(m.start < cue.end() or m.end > region_end for m in flipped):
            return None
        items: list[tuple[int, int]] = []
        pos = cue.end()
        for sep in _ITEM_SPLIT.finditer(low, cue.end(), region_end):
            items.append((pos, sep.start()))
            pos = sep.end()
        items.append((pos, region_end))
        kept = []
        for a, b in items:
            inside = [m for m in s.mentions if a <= m.start < b]
            if any(m.observation in flips for m in inside):
                if any(m.observation not in flips for m in inside):
                    return None
            else:
                kept.append(core[a:b])
        prefix = core[: cue.start()]
        lead = bool(prefix.strip())
        if not kept:
            candidate = prefix.rstrip(" ,;:")
        else:
            region = low[cue.end() : region_end]
            conj = next((c for c in (" nor ", " or ", " and ") if c in region), " or ").strip()
            if len(kept) == 1:
                joined = kept[0]
            elif len(kept) == 2:
                joined = f"{kept[0]} {conj} {kept[1]}"
            else:
                comma = "," if f", {conj} " in region else ""
                joined = f"{', '.join(kept[:-1])}{comma} {conj} {kept[-1]}"
            cue_text = "" if re.match(r"(?i)no\b", joined) else core[cue.start() : cue.end()]
            candidate = prefix + cue_text + joined + (core[post.start() :] if post else "")
    if not any(c.isalnum() for c in candidate):
        candidate = ""
    expected = frozenset((m.observation, m.certainty) for m in others)
    got = _certainty_set(candidate) if candidate else frozenset()
    if got != expected:
        return None
    return candidate, lead


_CLAUSE_SPLIT = re.compile(r"\s*[,;]\s*")


def _kept_clauses(
    s: _Sent, flips: Sequence[str], drop_hedges: bool, summary: bool
) -> tuple[str, frozenset[tuple[str, str]], bool]:
    """The clauses (between commas / semicolons) of a sentence being rewritten that can stay.

    A clause stays when, read on its own, it says exactly what it said inside the sentence and
    nothing about the flipped observations: "Cardiomegaly, aortic tortuosity, mild pulmonary edema."
    keeps "Cardiomegaly, aortic tortuosity" when the edema flips. A clause with no finding stays
    only after one that stays ("..., near 100%"); hedges of a finding being negated go with it.
    Returns (kept text, what it says, whether it opened the sentence).
    """
    core = _TERMINAL.sub("", s.text).rstrip()
    pieces: list[tuple[int, int]] = []
    start = 0
    for sep in _CLAUSE_SPLIT.finditer(core):
        pieces.append((start, sep.start()))
        start = sep.end()
    pieces.append((start, len(core)))
    if len(pieces) < 2:
        return "", frozenset(), False
    kept: list[str] = []
    said: set[tuple[str, str]] = set()
    first = False
    previous_kept = False
    for i, (a, b) in enumerate(pieces):
        clause = core[a:b]
        inside = {(m.observation, m.certainty) for m in s.mentions if a <= m.start and m.end <= b}
        ok = bool(clause.strip()) and not any(o in flips for o, _ in inside)
        if ok and inside:
            ok = _certainty_set(clause) == inside
            real = [c for o, c in inside if o != OTHER_FINDING]
            if drop_hedges and real and all(c == UNCERTAIN for c in real):
                ok = False
        elif ok:
            ok = previous_kept
        if ok and summary and (_LUNGS_CLEAR.search(clause.lower()) or _SUMMARY_ACUTE.search(clause.lower())):
            ok = False
        previous_kept = ok
        if ok:
            kept.append(clause)
            said |= inside
            first = first or i == 0
    text = ", ".join(kept)
    if not text or _certainty_set(text) != said:
        return "", frozenset(), False
    return text, frozenset(said), first


@dataclass
class _Edit:
    replace: dict[int, list[str]] = field(default_factory=dict)  # sentence index -> statements
    before: dict[int, list[str]] = field(default_factory=dict)  # insert before sentence index
    after: dict[int, list[str]] = field(default_factory=dict)  # insert after sentence index
    tail: list[str] = field(default_factory=list)  # no sentence to attach to


def _compose(doc: _Doc, plan: _Plan, mode: str, rng: random.Random) -> _Edit:
    edit = _Edit()
    occurrences: dict[str, int] = {}
    intra = mode == "intra"
    new_positive = [o for o, d in plan.flips.items() if d == "present"]
    many_devices = len({m.text.lower() for s in doc.scoped for m in s.mentions if m.observation == SD}) > 1

    variants: dict[str, int] = {}

    def variant(o: str) -> int:
        """A seeded template for the first statement of `o`; later ones take the next."""
        n = occurrences.get(o, 0)
        occurrences[o] = n + 1
        if o not in variants:
            variants[o] = rng.randrange(6)
        return variants[o] + n

    def statement(o: str, s: _Sent) -> str:
        n = variant(o)
        if plan.flips[o] == "present":
            a = plan.attrs[o]
            return _new(o, a, n) if intra else _present(o, a, n)
        m = next((m for m in s.mentions if m.observation == o and m.certainty != NEGATIVE), None)
        a = _extract(s.text, m) if m else _Attrs()
        return _resolved(o, a, n, many_devices=many_devices) if intra else _absent(o, n)

    stated_by_summary: set[str] = set()  # by a replaced normality claim
    for s in doc.scoped:
        obs_here = s.observations()
        flips_here = [
            o
            for o in obs_here
            if o in plan.flips and (plan.flips[o] == "present" or s.certainty(o) != NEGATIVE)
        ]
        summary = _is_summary(s, new_positive)
        if not flips_here and not summary:
            sev_obs = [o for o in obs_here if o in plan.severity]
            if sev_obs and obs_here == sev_obs:
                o = sev_obs[0]
                worse, a = plan.severity[o]
                edit.replace[s.index] = [_severity_change(o, a, worse, variant(o))]
            continue
        if flips_here and not summary and (cut := _without(s, flips_here)) is not None:
            rest, lead = cut
            new = [statement(o, s) for o in flips_here]
            edit.replace[s.index] = (
                ([rest] if rest and lead else []) + new + ([rest] if rest and not lead else [])
            )
            continue
        statements: list[str] = []
        negated: list[str] = []
        drop_hedges = any(plan.flips[o] == "absent" for o in flips_here)
        kept, said, opens = _kept_clauses(s, flips_here, drop_hedges, summary)
        covered = {o for o, _ in said}
        for o in obs_here:
            cert = s.certainty(o)
            if o in flips_here:
                statements.append(statement(o, s))
            elif o in covered and all((o, m.certainty) in said for m in s.mentions if m.observation == o):
                continue  # stated by a kept clause
            elif cert == NEGATIVE:
                negated.append(o)
            elif cert == UNCERTAIN and drop_hedges:
                continue
            else:
                m = next(m for m in s.mentions if m.observation == o and m.certainty == cert)
                a = _extract(s.text, m)
                statements.append(_possible(o, a) if cert == UNCERTAIN else _present(o, a, 2))
        if kept:
            statements = [kept, *statements] if opens else [*statements, kept]
        if summary and not flips_here:
            # The normality claim goes; the new findings take its place.
            low = s.text.lower()
            acute = _SUMMARY_ACUTE.search(low) or _SUMMARY_WHOLE.match(low.strip(" ."))
            # "No acute ..." is contradicted by any new finding, "The lungs are clear." by a lung one.
            targets = [o for o in new_positive if o != SD and (acute or o in PARENCHYMAL)]
            if not s.mentions:
                statements = [statement(o, s) for o in targets]
                stated_by_summary.update(targets)
        statements += _negation_list(negated)
        if statements:
            edit.replace[s.index] = statements

    # Findings the report never mentioned: a sentence of their own.
    unmentioned = [o for o in new_positive if doc.labels[o] is None]
    scoped = doc.scoped
    to_insert = [o for o in unmentioned if o not in stated_by_summary]
    target = next(
        (s for s in scoped if s.mentions and all(m.certainty == NEGATIVE for m in s.mentions)), None
    )
    if to_insert:
        statements = []
        for o in to_insert:
            n = variant(o)
            statements.append(_new(o, plan.attrs[o], n) if intra else _present(o, plan.attrs[o], n))
        if target is not None:
            edit.before.setdefault(target.index, []).extend(statements)
        else:
            last = next((s for s in reversed(scoped) if not _is_summary(s, new_positive)), None)
            last = last or (scoped[-1] if scoped else None)
            if last is not None:
                edit.after.setdefault(last.index, []).extend(statements)
            else:
                edit.tail.extend(statements)
    return edit


# --- assembling the text --------------------------------------------------------------------------
def _assemble(doc: _Doc, edit: _Edit) -> str:
    text = doc.text
    out: list[str] = []
    pos = 0
    for s in doc.sentences:
        if s.index in edit.before:
            style = _style_of(doc, s.text)
            out.append(text[pos : s.start])
            out.append(_render(edit.before[s.index], style, force_period=True))
            out.append("," if doc.pairaug else " ")
            pos = s.start
        written = s.text
        if s.index in edit.replace:
            out.append(text[pos : s.start])
            written = _render(edit.replace[s.index], _style_of(doc, s.text))
            out.append(written)
            pos = s.end
        if s.index in edit.after:
            out.append(text[pos : s.end])
            pos = s.end
            style = _style_of(doc, s.text)
            if doc.pairaug:
                out.append(",")
            else:
                out.append(" " if written.rstrip()[-1:] in ".!?" else ". ")
            out.append(_render(edit.after[s.index], style, force_period=True))
    out.append(text[pos:])
    result = "".join(out)
    if edit.tail:
        result = _append_tail(doc, result, edit.tail)
    return result


def _append_tail(doc: _Doc, text: str, statements: list[str]) -> str:
    """Statements for a report with no sentence in the labeler's scope."""
    if not section_spans(doc.text):
        if not any(c.isalnum() for c in text):
            return _render(statements, _Style(doc.pairaug))
        sep = "," if doc.pairaug else ("" if text.rstrip()[-1:] in ".!?" else ".") + " "
        return text.rstrip() + sep + _render(statements, _style_of(doc, text), force_period=True)
    if doc.spans:
        # Headed report with empty findings / impression: put it in the first of them.
        at = doc.spans[0][0]
        return text[:at] + " " + _render(statements, _Style(False), force_period=True) + text[at:]
    return text.rstrip() + "\n\nFINDINGS: " + _render(statements, _Style(False), force_period=True) + "\n"


# --- paraphrase -----------------------------------------------------------------------------------
_VERB = re.compile(
    r"\b(?:is|are|was|were|be|been|has|have|had|appears?|seen|noted|shows?|demonstrates?|remains?|"
    r"which|that|may|might|could|should|would|can|cannot|reveals?|indicates?|represents?|suggests?|"
    r"measures?|projects?|terminates?|courses?|extends?|overlies|obscures?|persists?|consists?|"
    r"obtained|identified|visualized|present|compatible|consistent|due|secondary|related|"
    r"representing|likely|seems?|looks?|contains?|involves?|includes?)\b"
)
_HEDGE = re.compile(
    r"\b(?:no|not|without|possible|possibly|probable|probably|likely|questionable|suspected|suspicious|"
    r"concerning|versus|vs|may|might|could|cannot|unlikely|resolved|resolution|removed|negative|free|"
    r"absent|absence|rule|exclude|evaluate|new|unchanged|stable|increased|decreased|worsening|improving|"
    r"interval|previously|again|there|stable|suggest|suggests|suggestive|borderline|top|upper)\b"
)
_PREPOSITION = re.compile(
    r"\b(?:in|at|of|with|within|involving|along|projecting|over|on|to|from|measuring|overlying|"
    r"consistent|concerning|compatible|suggestive|without|or)\b"
)
_COUNTABLE = frozenset(
    (
        "effusion", "pneumothorax", "nodule", "mass", "opacity", "lesion", "fracture", "density",
        "infiltrate", "tube", "catheter", "line", "pacemaker", "granuloma", "hernia", "focus",
        "defibrillator", "port", "stent", "drain",
    )
)  # fmt: skip
_NOT_PLURAL_ENDINGS = ("ss", "is", "us", "ax", "sis")


def _head(x: str) -> str:
    m = _PREPOSITION.search(x)
    words = (x[: m.start()] if m else x).split()
    return words[-1].lower() if words else ""


def _plural(x: str) -> bool:
    m = _PREPOSITION.search(x)
    if re.search(r"\band\b", x[: m.start()] if m else x):
        return True  # "heart and mediastinum"
    head = _head(x)
    return head.endswith("s") and not head.endswith(_NOT_PLURAL_ENDINGS)


def _with_article(x: str) -> str:
    """ "small left pleural effusion" -> "a small left pleural effusion"; mass nouns bare."""
    first = x.split(" ", 1)[0].lower()
    if first in ("a", "an", "the") or _plural(x) or _head(x) not in _COUNTABLE:
        return x
    return f"{_article(x)} {x}"


def _without_article(x: str) -> str:
    return re.sub(r"^(?:a|an|the) ", "", x, flags=re.I)


def _the(x: str) -> str:
    bare = _without_article(x)
    return f"the {bare}" if _head(bare) in _COUNTABLE or _plural(bare) else bare


def _decap(x: str) -> str:
    return x if x[:2].isupper() else x[:1].lower() + x[1:]


_NEG_PREFIX = re.compile(
    r"^(?P<pre>there (?:is|are) no|there is no evidence of|no evidence of|no|negative for)"
    r" (?P<x>.+?)(?P<post> (?:is|are) (?:seen|identified|noted|present|demonstrated|evident|appreciated)|"
    r" (?:seen|identified|noted))?$"
)
_NEG_SKIP = re.compile(
    r"^(?:new|change|changes|significant|substantial|interval|increase|decrease|worsening|improvement|"
    r"definite|other|further|acute (?:cardiopulmonary|disease|process|abnormalit|findings?))\b"
)
_ACUTE_RX = re.compile(
    r"^(?P<pre>no|there is no|no evidence of) (?P<adj>acute|active) (?P<what>cardiopulmonary|intrathoracic|"
    r"pulmonary|radiographic cardiopulmonary|cardiac or pulmonary)?\s?(?P<noun>process|abnormality|"
    r"abnormalities|disease|findings?)(?P<post> (?:identified|seen|noted))?$"
)
_NORMAL_CHEST = re.compile(r"^normal (?:chest|study|examination|exam)(?: radiograph| x-?ray| radiographs)?$")
_HEART_NORMAL = re.compile(
    r"^(?:the )?(?:heart size (?:is )?(?:normal|within normal limits)|heart is normal in size|"
    r"normal heart size|cardiac silhouette is (?:normal|within normal limits)(?: in size)?|"
    r"heart is not enlarged|normal cardiac silhouette|heart size is within normal limits)$"
)
_HEART_FORMS = (
    "Heart size is normal.",
    "The heart is normal in size.",
    "Normal heart size.",
    "Heart size is within normal limits.",
    "The cardiac silhouette is normal in size.",
)
_MEDIASTINUM = re.compile(
    r"^(?P<subj>(?:the )?(?:cardiomediastinal silhouette|cardiomediastinal contours?|mediastinal contours?|"
    r"mediastinal silhouette|mediastinum|cardio mediastinal silhouette|hilar and mediastinal contours|"
    r"mediastinal and hilar contours|cardiac and mediastinal contours)) (?P<be>is|are) "
    r"(?P<q>normal|within normal limits|unremarkable)(?P<rest> in size and contour| in contour| in size)?$"
)
_LUNGS = re.compile(
    r"^(?:(?:the )?lungs are clear(?: bilaterally)?|clear lungs|lungs clear|both lungs are clear|"
    r"the lungs appear clear)$"
)
_LUNG_FORMS = (
    "The lungs are clear.",
    "Clear lungs.",
    "Both lungs are clear.",
    "The lungs are clear bilaterally.",
)
_THERE_IS = re.compile(r"^there (?P<be>is|are) (?P<x>[^,;]+)$")
_IS_PRESENT = re.compile(r"^(?P<x>[^,;]+?) (?P<be>is|are) (?:present|seen|noted|identified)$")
_UNCHANGED_AFTER = re.compile(r"^(?P<x>[^,;]+?) (?P<be>is|are) (?P<w>unchanged|stable)$")
_UNCHANGED_BEFORE = re.compile(r"^(?P<w>unchanged|stable) (?P<x>[^,;]+)$")
_RESOLVED_A = re.compile(
    r"^(?:the )?previously (?:seen|noted|described) (?P<x>[^,;]+?) (?:has|have) resolved$"
)
_RESOLVED_B = re.compile(r"^interval resolution of (?:the )?(?P<x>[^,;]+)$")
_NEW = re.compile(r"^new (?P<x>[^,;]+)$")
_CHANGED_A = re.compile(
    r"^(?:the )?(?P<x>[^,;]+?) (?P<hv>has|have) (?P<dir>increased|decreased)(?: in size)?$"
)
_CHANGED_B = re.compile(r"^interval (?P<dir>increase|decrease) in (?:the )?(?P<x>[^,;]+)$")
_CARDIOMEGALY = re.compile(
    r"^(?:(?P<sev>mild|moderate|severe|marked) cardiomegaly|(?:the )?heart is (?P<adv>mildly|moderately|"
    r"markedly|severely) enlarged|(?P<sev2>mild|moderate|severe|marked) enlargement of the cardiac silhouette|"
    r"(?P<plain>cardiomegaly|(?:the )?heart is enlarged|enlarged cardiac silhouette))$"
)
_LOBE_FINDING = re.compile(
    r"^(?P<sev>(?:mild|moderate|severe|patchy|focal|dense) )?(?P<lobe>(?:right|left) (?:upper|middle|lower) "
    r"lobe) (?P<what>consolidation|opacity|pneumonia|atelectasis|airspace disease)$"
)
_FINDING_LOBE = re.compile(
    r"^(?:there is )?(?P<sev>(?:mild|moderate|severe|patchy|focal|dense) )?(?P<what>consolidation|opacity|"
    r"pneumonia|atelectasis|airspace disease) (?:in|of|involving) the (?P<lobe>(?:right|left) "
    r"(?:upper|middle|lower) lobe)$"
)
_ATELECTASIS_BASE = re.compile(
    r"^(?P<kind>subsegmental|plate-like|plate like|linear|discoid|minimal|mild)? ?atelectasis (?:at|in) "
    r"the (?P<side>right|left) (?P<lung>lung )?base$"
)
_TWO_CLAUSES = re.compile(
    r"^(?P<a>[^,;]+? (?:is|are|appears?) [^,;]+?|[^,;]+? (?:normal|clear|unremarkable)) and "
    r"(?P<b>[^,;]+? (?:is|are|appears?) [^,;]+|[^,;]+? (?:normal|clear|unremarkable))$"
)
_POSSIBLE = re.compile(r"^(?:possible|probable) (?P<x>[^,;]+)$")
# Word-for-word substitutions that keep the rest of the sentence (both directions).
_SYNONYMS: tuple[tuple[str, str], ...] = (
    (r"(?:(?<=\bis )|(?<=\bare ))within normal limits\b", "normal"),
    (r"(?:(?<=\bis )|(?<=\bare )|(?<=\bappear )|(?<=\bappears ))normal(?= *$)", "within normal limits"),
    (r"\bis unchanged\b", "is stable"),
    (r"\bare unchanged\b", "are stable"),
    (r"\bis stable\b", "is unchanged"),
    (r"\bare stable\b", "are unchanged"),
    (r"\bis seen\b", "is noted"),
    (r"\bare seen\b", "are noted"),
    (r"\bis noted\b", "is seen"),
    (r"\bare noted\b", "are seen"),
    (r"\bagain seen\b", "again noted"),
    (r"\bmay reflect\b", "may represent"),
    (r"\bcould represent\b", "may represent"),
    (r"\bmay represent\b", "could represent"),
    (r"\bconcerning for\b", "suspicious for"),
    (r"\bsuspicious for\b", "concerning for"),
    (r"\bconsistent with\b", "compatible with"),
    (r"\bcompatible with\b", "consistent with"),
    (r"\bcompared to\b", "compared with"),
    (r"\bbony\b", "osseous"),
    (r"\bosseous\b", "bony"),
    (r"\bdemonstrates\b", "shows"),
    (r"\bmid svc\b", "mid superior vena cava"),
    (r"\bcourses below the diaphragm\b", "extends below the diaphragm"),
    (r"\bterminates\b", "ends"),
    (r"\bpulmonary vascularity\b", "pulmonary vasculature"),
    (r"\bpulmonary vasculature\b", "pulmonary vascularity"),
    (r"\bno evidence of\b", "no"),
    (r"\bwith blunting of\b", "blunting"),
    (r"\bunremarkable\b", "normal"),
    (r"\bthe lungs are clear\b", "the lungs are clear bilaterally"),
    (r"\blungs are clear bilaterally\b", "lungs are clear"),
)
_SYNONYM_RX = tuple((re.compile(p), r) for p, r in _SYNONYMS)


def _keep_case(found: str, repl: str) -> str:
    if len(found) > 1 and found.isupper():
        return repl.upper()
    if found[:1].isupper():
        return _cap(repl)
    return repl


def _paraphrase_candidates(core: str) -> list[str]:
    """Prose rewordings of one sentence (without its final punctuation); may contain duds."""
    low = core.lower()
    x: str
    out: list[str] = []

    def group(m: re.Match[str], name: str) -> str:
        """A captured piece in its original case (acronyms kept), moved to mid-sentence."""
        return _decap(core[m.start(name) : m.end(name)]) if m.group(name) is not None else ""

    if m := _ACUTE_RX.match(low):
        adj, what, noun = m.group("adj"), group(m, "what"), m.group("noun")
        for alt in ("process", "abnormality", "disease"):
            if alt != noun:
                out.append(f"No {adj} {_join(what, alt)}.")
        out.append(f"No evidence of {adj} {_join(what, 'disease')}.")
    if _NORMAL_CHEST.match(low):
        out += ["Normal chest radiograph.", "Normal radiographic examination of the chest."]
    if _HEART_NORMAL.match(low):
        out += list(_HEART_FORMS)
    if m := _MEDIASTINUM.match(low):
        subj, be, q, rest = group(m, "subj"), m.group("be"), m.group("q"), group(m, "rest")
        for alt in ("normal", "within normal limits", "unremarkable"):
            if alt != q:
                out.append(f"{subj} {be} {alt}{rest}.")
        if not rest and q == "normal":
            out.append(f"Normal {_decap(_without_article(subj))}.")
    if _LUNGS.match(low):
        out += list(_LUNG_FORMS)
    if (
        (m := _NEG_PREFIX.match(low))
        and not _NEG_SKIP.match(m.group("x"))
        and not _VERB.search(m.group("x"))
        and not re.search(r"\b(?:no|not|without)\b", m.group("x"))
    ):
        x = group(m, "x")
        be = "are" if _plural(re.split(r",| or | and | nor ", x)[-1].strip()) else "is"
        out += [f"No {x}.", f"There {be} no {x}.", f"No evidence of {x}.", f"No {x} {be} seen."]
        parts = re.split(r" or | and ", x)
        if len(parts) == 2 and "," not in x and all(len(p.split()) <= 4 for p in parts):
            out.append(f"No {parts[1]} or {parts[0]}.")
    if (m := _THERE_IS.match(low)) and not _HEDGE.match(m.group("x")) and not _VERB.search(m.group("x")):
        x, be = group(m, "x"), m.group("be")
        out += [f"{x} {be} present.", f"{_without_article(x)}."]
    if (
        (m := _IS_PRESENT.match(low))
        and not _HEDGE.match(m.group("x"))
        and not _VERB.search(m.group("x"))
        and not low.startswith("there ")
    ):
        x, be = _decap(group(m, "x")), m.group("be")
        out += [f"There {be} {x}.", f"{_without_article(x)}."]
    if (m := _UNCHANGED_AFTER.match(low)) and not _VERB.search(m.group("x")) and not low.startswith("there "):
        x, be, w = _decap(group(m, "x")), m.group("be"), m.group("w")
        other = "stable" if w == "unchanged" else "unchanged"
        out += [f"{_cap(other)} {_without_article(x)}.", f"{x} {be} {other}."]
    if (m := _UNCHANGED_BEFORE.match(low)) and not _VERB.search(m.group("x")):
        x, w = group(m, "x"), m.group("w")
        be = "are" if _plural(x) else "is"
        out += [f"{_the(x)} {be} {w}.", f"{'Stable' if w == 'unchanged' else 'Unchanged'} {x}."]
    if m := _RESOLVED_A.match(low):
        x = group(m, "x")
        out += [f"Interval resolution of the {x}.", f"The {x} {'have' if _plural(x) else 'has'} resolved."]
    if m := _RESOLVED_B.match(low):
        x = group(m, "x")
        hv = "have" if _plural(x) else "has"
        out += [f"The previously seen {x} {hv} resolved.", f"The {x} {hv} resolved."]
    if (m := _NEW.match(low)) and not _VERB.search(m.group("x")):
        x = group(m, "x")
        out += [f"Interval development of {_with_article(x)}."]
        if _plural(x):
            out.append(f"There are new {x}.")
        elif _head(x) in _COUNTABLE:
            out.append(f"There is a new {x}.")
        else:
            out.append(f"There is new {x}.")
    if m := _CHANGED_A.match(low):
        x, d = group(m, "x"), m.group("dir")
        if not _VERB.search(m.group("x")):
            out += [
                f"Interval {d[:-1]} in the {_without_article(x)}.",
                f"The {_without_article(x)} {m.group('hv')} {d} in size.",
            ]
    if m := _CHANGED_B.match(low):
        x, d = group(m, "x"), m.group("dir")
        out.append(f"The {x} {'have' if _plural(x) else 'has'} {d}d.")
    if m := _CARDIOMEGALY.match(low):
        sev = (
            m.group("sev")
            or m.group("sev2")
            or {"mildly": "mild", "moderately": "moderate"}.get(
                m.group("adv") or "", "marked" if m.group("adv") else ""
            )
        )
        if m.group("plain"):
            out += ["Cardiomegaly.", "The heart is enlarged.", "Enlarged cardiac silhouette."]
        else:
            adv = {"mild": "mildly", "moderate": "moderately", "severe": "severely", "marked": "markedly"}[
                sev
            ]
            out += [
                f"{sev} cardiomegaly.",
                f"The heart is {adv} enlarged.",
                f"{sev} enlargement of the cardiac silhouette.",
            ]
    if m := _LOBE_FINDING.match(low):
        sev, lobe, what = group(m, "sev"), group(m, "lobe"), group(m, "what")
        out += [f"{sev}{what} in the {lobe}.", f"There is {sev}{what} in the {lobe}."]
    if m := _FINDING_LOBE.match(low):
        sev, lobe, what = group(m, "sev"), group(m, "lobe"), group(m, "what")
        out += [f"{sev}{lobe} {what}."]
    if m := _ATELECTASIS_BASE.match(low):
        kind, side = group(m, "kind"), m.group("side")
        lung = "" if m.group("lung") else "lung "
        out += [
            f"{side} basilar {_join(kind, 'atelectasis')}.",
            f"{_join(kind, 'atelectasis')} at the {side} {lung}base.",
        ]
    if (m := _POSSIBLE.match(low)) and not _VERB.search(m.group("x")):
        x = group(m, "x")
        out.append(f"{_with_article(x)} {'are' if _plural(x) else 'is'} possible.")
    # A bare noun phrase that states findings: "Small left pleural effusion."
    if (
        not out
        and len(low.split()) <= 10
        and "," not in low
        and not _VERB.search(low)
        and not _HEDGE.search(low)
    ):
        ms = _sentence_mentions(core)
        if ms and all(mm.certainty == POSITIVE for mm in ms):
            bare = _decap(core)
            be = "are" if _plural(bare) else "is"
            out += [f"There {be} {_with_article(bare)}.", f"{_with_article(bare)} {be} present."]
    # "Heart size is normal and lungs are clear": the other way round, or as two sentences.
    if m := _TWO_CLAUSES.match(low):
        a, b = group(m, "a"), group(m, "b")
        out += [f"{b} and {a}.", f"{a}. {b}."]
    # Clauses joined by semicolons become sentences of their own.
    if ";" in core:
        parts = [p.strip() for p in core.split(";") if p.strip()]
        if len(parts) > 1:
            out.append(" ".join(_cap(p) + "." for p in parts))
    for rx, repl in _SYNONYM_RX:
        if (m := rx.search(low)) is not None:
            piece = core[m.start() : m.end()]
            out.append(core[: m.start()] + _keep_case(piece, repl) + core[m.end() :])
    return out


_TERMINAL = re.compile(r"[.!?]+$")


_MAY_SPLIT = re.compile(r"[.!?][\"')\]]*\s+\S|,(?=\S)|\n")
_paraphrase_cache: dict[tuple[str, bool], tuple[str, ...]] = {}


def _sentence_paraphrases(doc: _Doc, s: _Sent) -> tuple[str, ...]:
    """Rewordings of one sentence, already in its style, that say the same about every observation."""
    key = (s.text, doc.pairaug)
    hit = _paraphrase_cache.get(key)
    if hit is None:
        hit = tuple(_validated_paraphrases(s.text, _style_of(doc, s.text)))
        if len(_paraphrase_cache) >= _CACHE_MAX:
            _paraphrase_cache.clear()
        _paraphrase_cache[key] = hit
    return hit


def _validated_paraphrases(text: str, style: _Style) -> list[str]:
    core = _TERMINAL.sub("", text).rstrip()
    if not core:
        return []
    original = _certainty_set(text)
    seen: set[tuple[str, ...]] = {tuple(_TOKEN.findall(text.lower()))}
    out: list[str] = []
    for cand in _paraphrase_candidates(core):
        if cand[-1:] in ".!?" or ". " in cand:
            rendered = _render([p for p in re.split(r"(?<=[.!?]) ", cand) if p], style)
        else:  # an in-place substitution: the sentence's own case, its own final punctuation
            rendered = cand + text[len(core) :] if not style.pairaug else _pairaug_form(cand)
        tokens = tuple(_TOKEN.findall(rendered.lower()))
        if tokens in seen or not tokens:
            continue
        seen.add(tokens)
        if _MAY_SPLIT.search(rendered):
            got = frozenset(x for p in split_sentences(rendered) for x in _certainty_set(p.text))
        else:
            got = _certainty_set(rendered)
        if got == original:
            out.append(rendered)
    return out


def _reorder(doc: _Doc, rng: random.Random) -> _Edit | None:
    """Swap two adjacent sentences of one section (labels are per sentence, so nothing changes)."""
    headers = [h.header_start for h in section_spans(doc.text)]

    def section(s: _Sent) -> int:
        return sum(1 for h in headers if h <= s.start)

    pairs = [
        (a, b)
        for a, b in zip(doc.sentences, doc.sentences[1:], strict=False)
        if a.scope and b.scope and section(a) == section(b) and _normalised(a.text) != _normalised(b.text)
    ]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    sa, sb = _style_of(doc, a.text), _style_of(doc, b.text)
    # Each keeps the other's final punctuation habit so the text still splits the same way.
    ta = b.text if sb.period == sa.period else _render([b.text], replace(sb, period=sa.period))
    tb = a.text if sa.period == sb.period else _render([a.text], replace(sa, period=sb.period))
    return _Edit(replace={a.index: [ta], b.index: [tb]})


# --- the rewriter ---------------------------------------------------------------------------------
_MAX_TRIES = 6


def _rng(text: str, mode: str, seed: int, min_flips: int, max_flips: int, attempt: int) -> random.Random:
    key = f"{RULES_VERSION}\x00{mode}\x00{seed}\x00{min_flips}\x00{max_flips}\x00{attempt}\x00{text}"
    return random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big"))


def rewrite_report(
    text: str, mode: Mode, seed: int, *, min_flips: int = 1, max_flips: int = 2
) -> RuleRewrite:
    """Rewrite one report (prose, MIMIC-style with headers, or PairAug-preprocessed text).

    Deterministic for (text, mode, seed, min_flips, max_flips). See the module docstring for what
    each mode does and for the guarantees, which are checked here with the labeler.
    """
    if mode not in MODES:
        raise ValueError(f"unknown rewrite mode {mode!r}; expected one of {', '.join(MODES)}")
    if not 1 <= min_flips <= max_flips:
        raise ValueError(f"need 1 <= min_flips <= max_flips, got {min_flips}, {max_flips}")
    if not isinstance(text, str):
        raise TypeError(f"report text must be a string, got {type(text).__name__}")
    doc = _analyse(text)
    if mode == "paraphrase":
        return _paraphrase(doc, seed, min_flips, max_flips)
    return _change(doc, mode, seed, min_flips, max_flips)


def _ok_text(doc: _Doc, out: str) -> bool:
    return bool(out.strip()) and _normalised(out) != _normalised(doc.text)


def _edits_for_change(
    doc: _Doc, after: dict[str, int | None], mode: str, plan: _Plan | None
) -> tuple[RuleEdit, ...]:
    edits = []
    for o in OBSERVATIONS:
        b, a = doc.labels[o], after[o]
        if b == a:
            if plan and o in plan.severity and a == 1:
                edits.append(RuleEdit(o, "worsened" if plan.severity[o][0] else "improved", b, a))
            continue
        if a in (1, -1) and b not in (1, -1) or (a == 1 and b == -1):
            kind = "new" if mode == "intra" else "to_present"
        elif b in (1, -1):
            kind = "resolved" if mode == "intra" else "to_absent"
        else:
            kind = "reworded"
        edits.append(RuleEdit(o, kind, b, a))
    return tuple(edits)


def _change(doc: _Doc, mode: str, seed: int, min_flips: int, max_flips: int) -> RuleRewrite:
    for attempt in range(_MAX_TRIES):
        rng = _rng(doc.text, mode, seed, min_flips, max_flips, attempt)
        k = rng.randint(min_flips, max_flips)
        plan = _plan_inter(doc, rng, k) if mode == "inter" else _plan_intra(doc, rng, k)
        if not plan.flips:
            continue
        out = _assemble(doc, _compose(doc, plan, mode, rng))
        if not _ok_text(doc, out):
            continue
        after = _labels(out)
        wanted = all(
            (after[o] == 1) if d == "present" else (after[o] in (0, None)) for o, d in plan.flips.items()
        )
        if wanted:
            return RuleRewrite(out, _edits_for_change(doc, after, mode, plan))
    # Always works: state one observation that is not positive yet as present.
    rng = _rng(doc.text, mode, seed, min_flips, max_flips, _MAX_TRIES)
    order = list(FALLBACK_NEW) + [o for o in OBSERVATIONS if o not in FALLBACK_NEW]
    for o in order:
        if doc.labels[o] == 1:
            continue
        plan = _Plan(flips={o: "present"}, attrs={o: _new_attrs(o, rng)})
        # Insert only: pretend it is unmentioned so that no sentence has to be rewritten.
        fake = replace(doc, labels={**doc.labels, o: None})
        out = _assemble(doc, _compose(fake, plan, mode, rng))
        after = _labels(out)
        if _ok_text(doc, out) and after[o] == 1:
            return RuleRewrite(out, _edits_for_change(doc, after, mode, None))
    # Every observation is positive: the report becomes a normal one.
    style = _style_of(doc, doc.scoped[0].text if doc.scoped else None)
    out = _render(["No acute cardiopulmonary process.", "No pleural effusion or pneumothorax."], style)
    return RuleRewrite(out, _edits_for_change(doc, _labels(out), mode, None))


def _paraphrase(doc: _Doc, seed: int, min_flips: int, max_flips: int) -> RuleRewrite:
    options = {s.index: _sentence_paraphrases(doc, s) for s in doc.scoped}
    rewordable = [i for i, alts in options.items() if alts]
    target = {o: doc.labels[o] for o in CHEXPERT_OBSERVATIONS}
    for attempt in range(_MAX_TRIES):
        rng = _rng(doc.text, "paraphrase", seed, min_flips, max_flips, attempt)
        if rewordable:
            share = rng.uniform(0.4, 0.9)
            n = max(1, round(share * len(rewordable)))
            if attempt >= 3:
                n = 1  # fewer changes, fewer ways to go wrong
            chosen = rng.sample(rewordable, n)
            edit = _Edit(replace={i: [rng.choice(options[i])] for i in chosen})
        else:
            edit = _reorder(doc, rng)
            if edit is None:
                break
        out = _assemble_verbatim(doc, edit)
        if _ok_text(doc, out) and _labels(out) == target:
            return RuleRewrite(out, _paraphrase_edits(doc, edit))
    # Last resorts: reorder, then restate a sentence with a neutral lead-in, then repeat one.
    rng = _rng(doc.text, "paraphrase", seed, min_flips, max_flips, _MAX_TRIES)
    tries: list[_Edit] = []
    if (edit := _reorder(doc, rng)) is not None:
        tries.append(edit)
    scoped = doc.scoped
    if scoped:
        s = scoped[0]
        style = _style_of(doc, s.text)
        lead = {"upper": "OVERALL, ", "lower": "overall, "}.get(style.case, "Overall, ")
        lead = "overall " if style.pairaug else lead
        tries.append(_Edit(replace={s.index: [lead + (_decap(s.text) if style.case == "cap" else s.text)]}))
        last = scoped[-1]
        sep = "," if doc.pairaug else (" " if last.text.rstrip()[-1:] in ".!?" else ". ")
        tries.append(_Edit(replace={last.index: [last.text + sep + last.text]}))
    for edit in tries:
        out = _assemble_verbatim(doc, edit)
        if _ok_text(doc, out) and _labels(out) == target:
            return RuleRewrite(out, _paraphrase_edits(doc, edit))
    out = _append_tail(doc, doc.text, ["Empty report."])
    return RuleRewrite(
        out, (RuleEdit(NO_FINDING, "reworded", doc.labels[NO_FINDING], _labels(out)[NO_FINDING]),)
    )


def _assemble_verbatim(doc: _Doc, edit: _Edit) -> str:
    """Like `_assemble`, but replacements are finished sentence text, not statements."""
    text = doc.text
    out: list[str] = []
    pos = 0
    for s in doc.sentences:
        if s.index in edit.replace:
            out.append(text[pos : s.start])
            out.append(edit.replace[s.index][0])
            pos = s.end
    out.append(text[pos:])
    return "".join(out)


def _paraphrase_edits(doc: _Doc, edit: _Edit) -> tuple[RuleEdit, ...]:
    touched: list[str] = []
    for s in doc.sentences:
        if s.index in edit.replace:
            for o in s.observations():
                if o not in touched:
                    touched.append(o)
    if not touched:
        nf = doc.labels[NO_FINDING]
        return (RuleEdit(NO_FINDING, "reworded", nf, nf),)
    order = {o: i for i, o in enumerate(CHEXPERT_OBSERVATIONS)}
    return tuple(
        RuleEdit(o, "reworded", doc.labels[o], doc.labels[o]) for o in sorted(touched, key=order.__getitem__)
    )
