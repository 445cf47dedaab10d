"""The surface form of report text: a sentence's style (prose in capitalised, upper or lower case,
with or without a final period, or PairAug's preprocessed form: lower case, no punctuation,
sentences joined by ","), statements rendered in that style, and the normalisation that tells two
texts apart.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pairaug_ray.text.rewrite.analysis import Doc


@dataclass(frozen=True)
class Style:
    pairaug: bool
    case: str = "cap"  # "cap" | "upper" | "lower"
    period: bool = True


TOKEN = re.compile(r"\w+")


def style_of(doc: Doc, sentence: str | None) -> Style:
    if doc.pairaug:
        return Style(True)
    if not sentence:
        return Style(False)
    letters = [c for c in sentence if c.isalpha()]
    case = "cap"
    if len(letters) >= 3 and all(c.isupper() for c in letters):
        case = "upper"
    elif letters and all(not c.isupper() for c in letters):
        case = "lower"
    return Style(False, case, sentence.rstrip()[-1:] in ".!?")


def pairaug_form(statement: str) -> str:
    return " ".join(t for t in TOKEN.findall(statement.lower()) if t.isascii())


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def render(statements: Sequence[str], style: Style, *, force_period: bool = False) -> str:
    """Prose statements ("There is a small right pleural effusion.") in a sentence's style."""
    if style.pairaug:
        return ",".join(p for p in (pairaug_form(s) for s in statements) if p)
    out = []
    for s in statements:
        s = cap(s.strip())
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


def normalised(text: str) -> str:
    """Lower case, letters and digits only: stricter than whitespace/case normalisation, so texts
    that differ here also differ there (and for the rewrite stage's own "unchanged" check)."""
    return _NOT_ALNUM.sub(" ", text.lower()).strip()


def decap(x: str) -> str:
    return x if x[:2].isupper() else x[:1].lower() + x[1:]


TERMINAL = re.compile(r"[.!?]+$")
