"""Candidate rewordings of one sentence for the paraphrase mode: by sentence pattern ("No X." /
"There is no X.", "X is unchanged." / "Stable X.", "Mild cardiomegaly." / "The heart is mildly
enlarged.", ...) and by word-for-word synonyms. Candidates may be duds; `paraphrase` keeps only
those the labeler reads exactly as the original.
"""

from __future__ import annotations

import re

from pairaug_ray.text.labeler import POSITIVE
from pairaug_ray.text.rewrite.analysis import cached_mentions
from pairaug_ray.text.rewrite.phrasing import article, join
from pairaug_ray.text.rewrite.style import cap, decap

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
        "effusion",
        "pneumothorax",
        "nodule",
        "mass",
        "opacity",
        "lesion",
        "fracture",
        "density",
        "infiltrate",
        "tube",
        "catheter",
        "line",
        "pacemaker",
        "granuloma",
        "hernia",
        "focus",
        "defibrillator",
        "port",
        "stent",
        "drain",
    )
)
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
    return f"{article(x)} {x}"


def _without_article(x: str) -> str:
    return re.sub(r"^(?:a|an|the) ", "", x, flags=re.I)


def _the(x: str) -> str:
    bare = _without_article(x)
    return f"the {bare}" if _head(bare) in _COUNTABLE or _plural(bare) else bare


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
        return cap(repl)
    return repl


def paraphrase_candidates(core: str) -> list[str]:
    """Prose rewordings of one sentence (without its final punctuation); may contain duds."""
    low = core.lower()
    x: str
    out: list[str] = []

    def group(m: re.Match[str], name: str) -> str:
        """A captured piece in its original case (acronyms kept), moved to mid-sentence."""
        return decap(core[m.start(name) : m.end(name)]) if m.group(name) is not None else ""

    if m := _ACUTE_RX.match(low):
        adj, what, noun = m.group("adj"), group(m, "what"), m.group("noun")
        for alt in ("process", "abnormality", "disease"):
            if alt != noun:
                out.append(f"No {adj} {join(what, alt)}.")
        out.append(f"No evidence of {adj} {join(what, 'disease')}.")
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
            out.append(f"Normal {decap(_without_article(subj))}.")
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
        x, be = decap(group(m, "x")), m.group("be")
        out += [f"There {be} {x}.", f"{_without_article(x)}."]
    if (m := _UNCHANGED_AFTER.match(low)) and not _VERB.search(m.group("x")) and not low.startswith("there "):
        x, be, w = decap(group(m, "x")), m.group("be"), m.group("w")
        other = "stable" if w == "unchanged" else "unchanged"
        out += [f"{cap(other)} {_without_article(x)}.", f"{x} {be} {other}."]
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
            f"{side} basilar {join(kind, 'atelectasis')}.",
            f"{join(kind, 'atelectasis')} at the {side} {lung}base.",
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
        ms = cached_mentions(core)
        if ms and all(mm.certainty == POSITIVE for mm in ms):
            bare = decap(core)
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
            out.append(" ".join(cap(p) + "." for p in parts))
    for rx, repl in _SYNONYM_RX:
        if (m := rx.search(low)) is not None:
            piece = core[m.start() : m.end()]
            out.append(core[: m.start()] + _keep_case(piece, repl) + core[m.end() :])
    return out
