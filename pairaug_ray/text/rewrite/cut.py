"""Rewriting a sentence in its own words: the sentence minus what it says about the flipped
observations (an item of a negated list, a trailing hedge), or the clauses of it that can stay.
Each cut is checked with the labeler to say exactly what it said before about everything else.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from pairaug_ray.text import labeler
from pairaug_ray.text.labeler import UNCERTAIN
from pairaug_ray.text.phrases import OTHER_FINDING
from pairaug_ray.text.rewrite.analysis import LUNGS_CLEAR, SUMMARY_ACUTE, Sent, certainty_set
from pairaug_ray.text.rewrite.style import TERMINAL

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


def without(s: Sent, flips: Sequence[str]) -> tuple[str, bool] | None:
    """The sentence in its own words minus what it says about `flips`, or None if that cannot be cut.

    Two shapes are cut: a hedge at the end ("Patchy opacity in the lingula could represent
    pneumonia." without pneumonia is "Patchy opacity in the lingula") and an item of a negated list
    ("No focal consolidation, pneumothorax or large pleural effusion." without the pneumothorax is
    "No focal consolidation or large pleural effusion"). The rest must say exactly what it said
    before (checked with the labeler). Returns (text, whether it goes before the new statements).
    """
    core = TERMINAL.sub("", s.text).rstrip()
    low = labeler.lower(core)
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
    got = certainty_set(candidate) if candidate else frozenset()
    if got != expected:
        return None
    return candidate, lead


_CLAUSE_SPLIT = re.compile(r"\s*[,;]\s*")


def kept_clauses(
    s: Sent, flips: Sequence[str], drop_hedges: bool, summary: bool
) -> tuple[str, frozenset[tuple[str, str]], bool]:
    """The clauses (between commas / semicolons) of a sentence being rewritten that can stay.

    A clause stays when, read on its own, it says exactly what it said inside the sentence and
    nothing about the flipped observations: "Cardiomegaly, aortic tortuosity, mild pulmonary edema."
    keeps "Cardiomegaly, aortic tortuosity" when the edema flips. A clause with no finding stays
    only after one that stays ("..., near 100%"); hedges of a finding being negated go with it.
    Returns (kept text, what it says, whether it opened the sentence).
    """
    core = TERMINAL.sub("", s.text).rstrip()
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
            ok = certainty_set(clause) == inside
            real = [c for o, c in inside if o != OTHER_FINDING]
            if drop_hedges and real and all(c == UNCERTAIN for c in real):
                ok = False
        elif ok:
            ok = previous_kept
        if ok and summary and (LUNGS_CLEAR.search(clause.lower()) or SUMMARY_ACUTE.search(clause.lower())):
            ok = False
        previous_kept = ok
        if ok:
            kept.append(clause)
            said |= inside
            first = first or i == 0
    text = ", ".join(kept)
    if not text or certainty_set(text) != said:
        return "", frozenset(), False
    return text, frozenset(said), first
