"""The inter and intra modes: seeded attempts (plan, compose, assemble) until one makes every
planned flip with the labeler's reading, then a construction that always works (state a finding
that is not positive yet as present); and the edits a rewrite reports.
"""

from __future__ import annotations

from dataclasses import replace

from pairaug_ray.text.rewrite.analysis import Doc, labels_of, ok_text
from pairaug_ray.text.rewrite.assemble import assemble
from pairaug_ray.text.rewrite.attributes import new_attrs
from pairaug_ray.text.rewrite.compose import compose
from pairaug_ray.text.rewrite.observations import FALLBACK_NEW, OBSERVATIONS
from pairaug_ray.text.rewrite.plan import Plan, plan_inter, plan_intra
from pairaug_ray.text.rewrite.result import RuleEdit, RuleRewrite
from pairaug_ray.text.rewrite.seeding import MAX_TRIES, seeded_rng
from pairaug_ray.text.rewrite.style import render, style_of


def _edits_for_change(
    doc: Doc, after: dict[str, int | None], mode: str, plan: Plan | None
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


def change(doc: Doc, mode: str, seed: int, min_flips: int, max_flips: int) -> RuleRewrite:
    for attempt in range(MAX_TRIES):
        rng = seeded_rng(doc.text, mode, seed, min_flips, max_flips, attempt)
        k = rng.randint(min_flips, max_flips)
        plan = plan_inter(doc, rng, k) if mode == "inter" else plan_intra(doc, rng, k)
        if not plan.flips:
            continue
        out = assemble(doc, compose(doc, plan, mode, rng))
        if not ok_text(doc, out):
            continue
        after = labels_of(out)
        wanted = all(
            (after[o] == 1) if d == "present" else (after[o] in (0, None)) for o, d in plan.flips.items()
        )
        if wanted:
            return RuleRewrite(out, _edits_for_change(doc, after, mode, plan))
    # Always works: state one observation that is not positive yet as present.
    rng = seeded_rng(doc.text, mode, seed, min_flips, max_flips, MAX_TRIES)
    order = list(FALLBACK_NEW) + [o for o in OBSERVATIONS if o not in FALLBACK_NEW]
    for o in order:
        if doc.labels[o] == 1:
            continue
        plan = Plan(flips={o: "present"}, attrs={o: new_attrs(o, rng)})
        # Insert only: pretend it is unmentioned so that no sentence has to be rewritten.
        fake = replace(doc, labels={**doc.labels, o: None})
        out = assemble(doc, compose(fake, plan, mode, rng))
        after = labels_of(out)
        if ok_text(doc, out) and after[o] == 1:
            return RuleRewrite(out, _edits_for_change(doc, after, mode, None))
    # Every observation is positive: the report becomes a normal one.
    style = style_of(doc, doc.scoped[0].text if doc.scoped else None)
    out = render(["No acute cardiopulmonary process.", "No pleural effusion or pneumothorax."], style)
    return RuleRewrite(out, _edits_for_change(doc, labels_of(out), mode, None))
