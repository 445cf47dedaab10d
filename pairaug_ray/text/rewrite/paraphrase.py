"""The paraphrase mode (PairAug's AugText baseline): sentences reworded without changing what
they say about any observation, reordered only when none can be reworded, and last-resort
constructions ("Overall, ...", a repeated sentence) that always work.
"""

from __future__ import annotations

import random
import re
from dataclasses import replace

from pairaug_ray.schema import CHEXPERT_OBSERVATIONS
from pairaug_ray.text.labeler import NO_FINDING
from pairaug_ray.text.rewrite.analysis import CACHE_MAX, Doc, Sent, certainty_set, labels_of, ok_text
from pairaug_ray.text.rewrite.assemble import Edit, append_tail, assemble_verbatim
from pairaug_ray.text.rewrite.result import RuleEdit, RuleRewrite
from pairaug_ray.text.rewrite.rewording import paraphrase_candidates
from pairaug_ray.text.rewrite.seeding import MAX_TRIES, seeded_rng
from pairaug_ray.text.rewrite.style import (
    TERMINAL,
    TOKEN,
    Style,
    decap,
    normalised,
    pairaug_form,
    render,
    style_of,
)
from pairaug_ray.text.sections import section_spans, split_sentences

_MAY_SPLIT = re.compile(r"[.!?][\"')\]]*\s+\S|,(?=\S)|\n")
_paraphrase_cache: dict[tuple[str, bool], tuple[str, ...]] = {}


def _sentence_paraphrases(doc: Doc, s: Sent) -> tuple[str, ...]:
    """Rewordings of one sentence, already in its style, that say the same about every observation."""
    key = (s.text, doc.pairaug)
    hit = _paraphrase_cache.get(key)
    if hit is None:
        hit = tuple(_validated_paraphrases(s.text, style_of(doc, s.text)))
        if len(_paraphrase_cache) >= CACHE_MAX:
            _paraphrase_cache.clear()
        _paraphrase_cache[key] = hit
    return hit


def _validated_paraphrases(text: str, style: Style) -> list[str]:
    core = TERMINAL.sub("", text).rstrip()
    if not core:
        return []
    original = certainty_set(text)
    seen: set[tuple[str, ...]] = {tuple(TOKEN.findall(text.lower()))}
    out: list[str] = []
    for cand in paraphrase_candidates(core):
        if cand[-1:] in ".!?" or ". " in cand:
            rendered = render([p for p in re.split(r"(?<=[.!?]) ", cand) if p], style)
        else:  # an in-place substitution: the sentence's own case, its own final punctuation
            rendered = cand + text[len(core) :] if not style.pairaug else pairaug_form(cand)
        tokens = tuple(TOKEN.findall(rendered.lower()))
        if tokens in seen or not tokens:
            continue
        seen.add(tokens)
        if _MAY_SPLIT.search(rendered):
            got = frozenset(x for p in split_sentences(rendered) for x in certainty_set(p.text))
        else:
            got = certainty_set(rendered)
        if got == original:
            out.append(rendered)
    return out


def _reorder(doc: Doc, rng: random.Random) -> Edit | None:
    """Swap two adjacent sentences of one section (labels are per sentence, so nothing changes)."""
    headers = [h.header_start for h in section_spans(doc.text)]

    def section(s: Sent) -> int:
        return sum(1 for h in headers if h <= s.start)

    pairs = [
        (a, b)
        for a, b in zip(doc.sentences, doc.sentences[1:], strict=False)
        if a.scope and b.scope and section(a) == section(b) and normalised(a.text) != normalised(b.text)
    ]
    if not pairs:
        return None
    a, b = rng.choice(pairs)
    sa, sb = style_of(doc, a.text), style_of(doc, b.text)
    # Each keeps the other's final punctuation habit so the text still splits the same way.
    ta = b.text if sb.period == sa.period else render([b.text], replace(sb, period=sa.period))
    tb = a.text if sa.period == sb.period else render([a.text], replace(sa, period=sb.period))
    return Edit(replace={a.index: [ta], b.index: [tb]})


def paraphrase(doc: Doc, seed: int, min_flips: int, max_flips: int) -> RuleRewrite:
    options = {s.index: _sentence_paraphrases(doc, s) for s in doc.scoped}
    rewordable = [i for i, alts in options.items() if alts]
    target = {o: doc.labels[o] for o in CHEXPERT_OBSERVATIONS}
    for attempt in range(MAX_TRIES):
        rng = seeded_rng(doc.text, "paraphrase", seed, min_flips, max_flips, attempt)
        if rewordable:
            share = rng.uniform(0.4, 0.9)
            n = max(1, round(share * len(rewordable)))
            if attempt >= 3:
                n = 1  # fewer changes, fewer ways to go wrong
            chosen = rng.sample(rewordable, n)
            edit = Edit(replace={i: [rng.choice(options[i])] for i in chosen})
        else:
            edit = _reorder(doc, rng)
            if edit is None:
                break
        out = assemble_verbatim(doc, edit)
        if ok_text(doc, out) and labels_of(out) == target:
            return RuleRewrite(out, _paraphrase_edits(doc, edit))
    # Last resorts: reorder, then restate a sentence with a neutral lead-in, then repeat one.
    rng = seeded_rng(doc.text, "paraphrase", seed, min_flips, max_flips, MAX_TRIES)
    tries: list[Edit] = []
    if (edit := _reorder(doc, rng)) is not None:
        tries.append(edit)
    scoped = doc.scoped
    if scoped:
        s = scoped[0]
        style = style_of(doc, s.text)
        lead = {"upper": "OVERALL, ", "lower": "overall, "}.get(style.case, "Overall, ")
        lead = "overall " if style.pairaug else lead
        tries.append(Edit(replace={s.index: [lead + (decap(s.text) if style.case == "cap" else s.text)]}))
        last = scoped[-1]
        sep = "," if doc.pairaug else (" " if last.text.rstrip()[-1:] in ".!?" else ". ")
        tries.append(Edit(replace={last.index: [last.text + sep + last.text]}))
    for edit in tries:
        out = assemble_verbatim(doc, edit)
        if ok_text(doc, out) and labels_of(out) == target:
            return RuleRewrite(out, _paraphrase_edits(doc, edit))
    out = append_tail(doc, doc.text, ["Empty report."])
    return RuleRewrite(
        out, (RuleEdit(NO_FINDING, "reworded", doc.labels[NO_FINDING], labels_of(out)[NO_FINDING]),)
    )


def _paraphrase_edits(doc: Doc, edit: Edit) -> tuple[RuleEdit, ...]:
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
