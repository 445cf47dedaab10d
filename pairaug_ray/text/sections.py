"""Report sections, the two reference preprocessings (CheXzero, PairAug) and sentence splitting.

MIMIC-CXR free-text reports are loosely structured: upper-case headers ending in a colon
(`FINDINGS:`, `IMPRESSION:`, ...), on their own line or inline after a sentence, a `FINAL REPORT`
title line, `___` de-identification marks and ragged whitespace. `find_headers` locates the
headers with character offsets; everything else here is built on it, so the labeler can
restrict itself to findings/impression and still report offsets into the original text.

`chexzero_impression` and `pairaug_text` reproduce the two papers' own preprocessing exactly
(quirks included) because trained models and published numbers depend on them; they are not
"better" section parsers and must not be tidied up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import NamedTuple

# Headers recognised anywhere in the text when written in upper case, and at a line start in any
# case. Longer names first, so `FINDINGS AND IMPRESSION` wins over `FINDINGS` at the same place.
KNOWN_HEADERS = (
    "FINDINGS AND IMPRESSION",
    "FINDINGS/IMPRESSION",
    "REASON FOR EXAMINATION",
    "REASON FOR EXAM",
    "REASON FOR STUDY",
    "CLINICAL INDICATION",
    "CLINICAL INFORMATION",
    "CLINICAL HISTORY",
    "TYPE OF EXAMINATION",
    "RECOMMENDATION(S)",
    "RECOMMENDATIONS",
    "RECOMMENDATION",
    "NOTIFICATIONS",
    "NOTIFICATION",
    "REFERENCE EXAM",
    "EXAMINATION",
    "INDICATIONS",
    "INDICATION",
    "IMPRESSIONS",
    "IMPRESSION",
    "CONCLUSIONS",
    "CONCLUSION",
    "COMPARISONS",
    "COMPARISON",
    "TECHNIQUE",
    "PROCEDURE",
    "FINDINGS",
    "FINDING",
    "HISTORY",
    "WET READ",
    "ADDENDUM",
    "SUMMARY",
    "OPINION",
    "EXAM",
)
# Title lines that head a section without a colon.
TITLE_HEADERS = ("FINAL REPORT", "PRELIMINARY REPORT", "ADDENDUM")

# Which headers feed `Sections.findings` / `.impression`, in order of preference. A combined
# "FINDINGS AND IMPRESSION" section is the impression (it is what the radiologist concluded),
# never both, so impression + findings never duplicates text.
FINDINGS_HEADERS = ("FINDINGS", "FINDING")
IMPRESSION_HEADERS = (
    "IMPRESSION",
    "IMPRESSIONS",
    "CONCLUSION",
    "CONCLUSIONS",
    "FINDINGS AND IMPRESSION",
    "FINDINGS/IMPRESSION",
)

_KNOWN_ALT = "|".join(re.escape(h) for h in KNOWN_HEADERS)
# Inline: an upper-case known header not glued to a preceding letter or digit ("___IMPRESSION:" is
# still a header; de-identification marks are underscores).
_INLINE_HEADER = re.compile(rf"(?<![A-Za-z0-9])(?P<name>{_KNOWN_ALT})[ \t]*:")
# Line start: a known header in any case ("Impression:"), or any upper-case phrase of 3+ letters.
_LINE_HEADER = re.compile(
    rf"^[ \t]*(?P<name>(?i:{_KNOWN_ALT})|[A-Z][A-Z0-9 ()/&,'-]{{1,48}}[A-Z)])[ \t]*:(?!\d)",
    re.MULTILINE,
)
_TITLE_HEADER = re.compile(
    rf"^[ \t]*(?P<name>{'|'.join(re.escape(h) for h in TITLE_HEADERS)})[ \t]*:?[ \t]*$", re.MULTILINE
)
_WS = re.compile(r"\s+")


class Header(NamedTuple):
    """A section header: canonical upper-case `name`; `text[start:end]` is the header incl. colon."""

    name: str
    start: int
    end: int


def _canonical(name: str) -> str:
    return _WS.sub(" ", name.strip()).upper()


def find_headers(text: str) -> list[Header]:
    """All section headers in `text`, in order, without overlaps."""
    found: dict[int, Header] = {}
    for rx in (_TITLE_HEADER, _LINE_HEADER, _INLINE_HEADER):
        for m in rx.finditer(text):
            name = _canonical(m.group("name"))
            if sum(c.isalpha() for c in name) < 3:
                continue
            start = m.start("name")
            end = m.end() if rx is not _TITLE_HEADER else m.end("name")
            prev = found.get(start)
            if prev is None or end > prev.end:
                found[start] = Header(name, start, end)
    headers: list[Header] = []
    for h in sorted(found.values(), key=lambda h: (h.start, -h.end)):
        if headers and h.start < headers[-1].end:
            continue  # e.g. an inline known header inside a longer generic line header
        headers.append(h)
    return headers


class SectionSpan(NamedTuple):
    """One headed section: `text[body_start:body_end]` is its raw body."""

    name: str
    header_start: int
    body_start: int
    body_end: int


def section_spans(text: str) -> list[SectionSpan]:
    """The headed sections of `text` with offsets; text before the first header is not a section."""
    headers = find_headers(text)
    spans = []
    for i, h in enumerate(headers):
        body_end = headers[i + 1].start if i + 1 < len(headers) else len(text)
        spans.append(SectionSpan(h.name, h.start, h.end, body_end))
    return spans


def normalize_whitespace(text: str) -> str:
    return _WS.sub(" ", text).strip()


@dataclass(frozen=True)
class Sections:
    """Findings, impression and all headed sections (upper-case name -> whitespace-normalised text).

    A header repeated in one report (an addendum with a second IMPRESSION, say) keeps its last
    occurrence, the same choice CheXzero makes. A header with an empty body maps to "" in
    `sections`, while `findings`/`impression` are None for absent *or* empty sections.
    """

    findings: str | None
    impression: str | None
    sections: dict[str, str] = field(default_factory=dict)


def extract_sections(report: str) -> Sections:
    """Split a MIMIC-CXR style free-text report into its headed sections.

    `IMPRESSION` is preferred for the impression, then `CONCLUSION`, then a combined `FINDINGS AND
    IMPRESSION` section. A report with no headers at all has findings and impression None (its
    text is not guessed to be either).
    """
    sections = {
        s.name: normalize_whitespace(report[s.body_start : s.body_end]) for s in section_spans(report)
    }

    def first(names: tuple[str, ...]) -> str | None:
        return next((sections[n] for n in names if sections.get(n)), None)

    return Sections(
        findings=first(FINDINGS_HEADERS),
        impression=first(IMPRESSION_HEADERS),
        sections=sections,
    )


# --- CheXzero -----------------------------------------------------------------------------------------
_CHEXZERO_RECOMMENDATION = ("RECOMMENDATION(S):", "RECOMMENDATION:", "RECOMMENDATIONS:")
_CHEXZERO_NOTIFICATION = ("NOTIFICATION:", "NOTIFICATIONS:")


def chexzero_impression(report: str) -> str:
    """The impression text exactly as CheXzero's `data_process.write_report_csv` extracts it.

    The report is split on whitespace; the impression starts after the *last* token equal to
    `IMPRESSION:` and ends at the *first* `RECOMMENDATION(S):` (else `RECOMMENDATION:`, else
    `RECOMMENDATIONS:`) or `NOTIFICATION:` (else `NOTIFICATIONS:`) token, whichever comes first.
    Tokens are re-joined with single spaces. Without an `IMPRESSION:` token the text is
    `'NO IMPRESSION'`. Faithful quirks: the header must be its own token (`IMPRESSION:No` or
    `IMPRESSION :` do not count, and neither does lower case); an end marker *before* the last
    impression gives an empty string; an end marker that is the very first token is ignored
    (CheXzero tests the index for truthiness).
    """
    tokens = report.split()
    if "IMPRESSION:" not in tokens:
        return "NO IMPRESSION"
    begin = len(tokens) - tokens[::-1].index("IMPRESSION:")

    def first_index(candidates: tuple[str, ...]) -> int | None:
        # Only the first candidate present is looked at, as in the original if/elif chain.
        for c in candidates:
            if c in tokens:
                return tokens.index(c)
        return None

    ends = [i for i in (first_index(_CHEXZERO_RECOMMENDATION), first_index(_CHEXZERO_NOTIFICATION)) if i]
    end = min(ends) if ends else None
    return " ".join(tokens[begin:end])


# --- PairAug ------------------------------------------------------------------------------------------
_PAIRAUG_NUMBERED = re.compile(r"[0-9]+\.")
_PAIRAUG_TOKEN = re.compile(r"\w+")  # nltk RegexpTokenizer(r"\w+") is re.findall with re.UNICODE


def pairaug_text(impression: str | None, findings: str | None) -> str | None:
    """The training text exactly as PairAug's `data/reports_jsonl.py` builds it, or None if dropped.

    `impression + " " + findings`, newlines to spaces, split on `[0-9]+\\.` and then on `.`; each
    piece has `"\\ufffd\\ufffd"` replaced by a space, is lower-cased and tokenised with `\\w+`.
    Pieces with <= 1 token (counted *before* dropping non-ASCII) are skipped; non-ASCII characters
    are removed from each token and emptied tokens dropped; pieces are space-joined, and the
    report is the pieces joined with "," (no space) if it has >= 3 tokens in total, else None.

    Inferred (the original reads pandas columns and would raise on a missing one): a None
    section counts as an empty string, so `pairaug_text(None, "...")` is `" " + findings`.
    Faithful quirks kept: decimals lose their integer part ("1.5 cm" -> "5 cm"), "_" is a word
    character so `___` de-identification marks survive as tokens, and only "\\n" (not "\\r") is
    turned into a space (harmless, since tokenisation ignores whitespace).
    """
    captions = ((impression or "") + " " + (findings or "")).replace("\n", " ")
    pieces = [sent for point in _PAIRAUG_NUMBERED.split(captions) for sent in point.split(".")]
    total = 0
    kept: list[str] = []
    for piece in pieces:
        if not piece:
            continue
        tokens = _PAIRAUG_TOKEN.findall(piece.replace("\ufffd\ufffd", " ").lower())
        if len(tokens) <= 1:
            continue
        ascii_tokens = [a for t in tokens if (a := t.encode("ascii", "ignore").decode("ascii"))]
        if ascii_tokens:
            kept.append(" ".join(ascii_tokens))
        total += len(ascii_tokens)
    return ",".join(kept) if total >= 3 else None


# --- sentences ----------------------------------------------------------------------------------------
class Sentence(NamedTuple):
    """A sentence: `text == source[start:end]`, stripped of surrounding space and list markers."""

    text: str
    start: int
    end: int


# Words that end in a period without ending a sentence (compared lower-case, without the final dot).
_ABBREVIATIONS = frozenset(
    ("dr", "mr", "mrs", "ms", "prof", "sr", "jr", "st", "vs", "e.g", "i.e", "eg", "ie", "cf", "viz")
    + ("approx", "incl", "resp", "fig", "figs", "al")
)
# Abbreviations that often do end a sentence: a break only when the next word is capitalised.
_SOFT_ABBREVIATIONS = frozenset(("a.m", "p.m", "etc"))

_TERMINAL = re.compile(r"[.!?]+[\"')\]]*(?=\s|$)")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)\.$")
_LIST_MARKER = re.compile(r"(?<!\S)(?P<n>\d{1,2})[.)](?=[ \t]+\S|[ \t]*\n)")
_BULLET = re.compile(r"^[ \t]*[-*\u2022][ \t]+", re.MULTILINE)
_BLANK_LINE = re.compile(r"\n[ \t]*\n\s*")
# PairAug's joiner: a comma with no space after it, not inside a number ("1,500").
_JOIN_COMMA = re.compile(r"(?<!\d),(?=[^\s,])|(?<=\d),(?=[^\s\d,])")
_EDGE_JUNK = " \t\r\n,;"


def _list_markers(text: str) -> list[tuple[int, int]]:
    """Spans of numbered-list markers ("1.", "2)"), accepted only in sequence.

    A "1." must start a sentence (text start, after a line break or after .!?:;); a later "n." is a
    marker only if the previous marker was n-1. This is what keeps "compared with study 2. The
    heart ..." a normal sentence end while "1. No effusion 2. Normal heart" is two items.
    """
    spans = []
    expected = 1
    for m in _LIST_MARKER.finditer(text):
        n = int(m.group("n"))
        before = text[: m.start()]
        stripped = before.rstrip()
        at_start = not stripped or stripped[-1] in ".!?:;" or "\n" in before[len(stripped) :]
        if (n == 1 and at_start) or (n == expected and n > 1):
            spans.append((m.start(), m.end()))
            expected = n + 1
    return spans


def _is_abbreviation(text: str, dot_end: int) -> bool:
    # Look only at a short window before the dot: searching from 0 made splitting quadratic.
    m = _WORD_BEFORE.search(text, max(0, dot_end - 64), dot_end)
    if not m:
        return False
    word = m.group(1).lower()
    if word in _ABBREVIATIONS:
        return True
    if word in _SOFT_ABBREVIATIONS:
        nxt = text[dot_end:].lstrip()[:1]
        return not nxt.isupper()
    return False


def split_sentences(text: str) -> list[Sentence]:
    """Split report text into sentences with character offsets into `text`.

    Breaks at ., ! or ? followed by whitespace (not after abbreviations such as "Dr." or "e.g.";
    "1.5 cm" has no space after the dot), at blank lines, before numbered-list items and bullets
    (the marker itself is dropped), around section headers (dropped too), and at PairAug's
    sentence joiner: a comma directly followed by a non-space character ("no effusion,heart
    normal"). PairAug-preprocessed text has no other punctuation left, so every such comma is a
    boundary there, while normal prose writes ", " and is not split at commas. Semicolons and
    run-ons without punctuation are not split: they are clauses of one sentence (the labeler
    scopes cues by clause itself).
    """
    cuts: list[tuple[int, int]] = []  # (start, end) spans that separate sentences and are dropped
    markers = _list_markers(text)
    cuts.extend(markers)
    cuts.extend((h.start, h.end) for h in find_headers(text))
    cuts.extend((m.start(), m.end()) for m in _BULLET.finditer(text))
    cuts.extend((m.start(), m.end()) for m in _BLANK_LINE.finditer(text))
    cuts.extend((m.start(), m.end()) for m in _JOIN_COMMA.finditer(text))
    in_marker = {i for s, e in markers for i in range(s, e)}
    for m in _TERMINAL.finditer(text):
        if m.start() in in_marker:
            continue
        if text[m.start()] == "." and m.end() - m.start() == 1 and _is_abbreviation(text, m.end()):
            continue
        cuts.append((m.end(), m.end()))  # the terminal punctuation stays with its sentence
    cuts.sort()

    sentences = []
    pos = 0
    for cut_start, cut_end in [*cuts, (len(text), len(text))]:
        if cut_start > pos:
            _append_stripped(text, pos, cut_start, sentences)
        pos = max(pos, cut_end)
    return sentences


def _append_stripped(text: str, start: int, end: int, out: list[Sentence]) -> None:
    while start < end and text[start] in _EDGE_JUNK:
        start += 1
    while end > start and text[end - 1] in _EDGE_JUNK:
        end -= 1
    if any(c.isalnum() for c in text[start:end]):
        out.append(Sentence(text[start:end], start, end))
