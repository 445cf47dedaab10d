"""Putting a rewrite together: the input text with sentences replaced and statements inserted
(an `Edit`), everything else (headers, other sections, untouched sentences, the whitespace
between them) copied verbatim.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pairaug_ray.text.rewrite.analysis import Doc
from pairaug_ray.text.rewrite.style import Style, render, style_of
from pairaug_ray.text.sections import section_spans


@dataclass
class Edit:
    replace: dict[int, list[str]] = field(default_factory=dict)  # sentence index -> statements
    before: dict[int, list[str]] = field(default_factory=dict)  # insert before sentence index
    after: dict[int, list[str]] = field(default_factory=dict)  # insert after sentence index
    tail: list[str] = field(default_factory=list)  # no sentence to attach to


def assemble(doc: Doc, edit: Edit) -> str:
    text = doc.text
    out: list[str] = []
    pos = 0
    for s in doc.sentences:
        if s.index in edit.before:
            style = style_of(doc, s.text)
            out.append(text[pos : s.start])
            out.append(render(edit.before[s.index], style, force_period=True))
            out.append("," if doc.pairaug else " ")
            pos = s.start
        written = s.text
        if s.index in edit.replace:
            out.append(text[pos : s.start])
            written = render(edit.replace[s.index], style_of(doc, s.text))
            out.append(written)
            pos = s.end
        if s.index in edit.after:
            out.append(text[pos : s.end])
            pos = s.end
            style = style_of(doc, s.text)
            if doc.pairaug:
                out.append(",")
            else:
                out.append(" " if written.rstrip()[-1:] in ".!?" else ". ")
            out.append(render(edit.after[s.index], style, force_period=True))
    out.append(text[pos:])
    result = "".join(out)
    if edit.tail:
        result = append_tail(doc, result, edit.tail)
    return result


def append_tail(doc: Doc, text: str, statements: list[str]) -> str:
    """Statements for a report with no sentence in the labeler's scope."""
    if not section_spans(doc.text):
        if not any(c.isalnum() for c in text):
            return render(statements, Style(doc.pairaug))
        sep = "," if doc.pairaug else ("" if text.rstrip()[-1:] in ".!?" else ".") + " "
        return text.rstrip() + sep + render(statements, style_of(doc, text), force_period=True)
    if doc.spans:
        # Headed report with empty findings / impression: put it in the first of them.
        at = doc.spans[0][0]
        return text[:at] + " " + render(statements, Style(False), force_period=True) + text[at:]
    return text.rstrip() + "\n\nFINDINGS: " + render(statements, Style(False), force_period=True) + "\n"


def assemble_verbatim(doc: Doc, edit: Edit) -> str:
    """Like `assemble`, but replacements are finished sentence text, not statements."""
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
