"""What each sentence of a report becomes under an inter / intra plan: the statements that
replace a sentence (cut in its own words where possible, otherwise rebuilt), normality claims
replaced by new findings, and findings the report never mentioned inserted next to a sentence.
`assemble` turns the result into text.
"""

from __future__ import annotations

import random

from pairaug_ray.text.labeler import NEGATIVE, UNCERTAIN
from pairaug_ray.text.rewrite import phrasing
from pairaug_ray.text.rewrite.analysis import SUMMARY_ACUTE, SUMMARY_WHOLE, Doc, Sent, is_summary
from pairaug_ray.text.rewrite.assemble import Edit
from pairaug_ray.text.rewrite.attributes import Attrs, extract
from pairaug_ray.text.rewrite.cut import kept_clauses, without
from pairaug_ray.text.rewrite.observations import PARENCHYMAL, SD
from pairaug_ray.text.rewrite.plan import Plan


def compose(doc: Doc, plan: Plan, mode: str, rng: random.Random) -> Edit:
    edit = Edit()
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

    def statement(o: str, s: Sent) -> str:
        n = variant(o)
        if plan.flips[o] == "present":
            a = plan.attrs[o]
            return phrasing.new(o, a, n) if intra else phrasing.present(o, a, n)
        m = next((m for m in s.mentions if m.observation == o and m.certainty != NEGATIVE), None)
        a = extract(s.text, m) if m else Attrs()
        return phrasing.resolved(o, a, n, many_devices=many_devices) if intra else phrasing.absent(o, n)

    stated_by_summary: set[str] = set()  # by a replaced normality claim
    for s in doc.scoped:
        obs_here = s.observations()
        flips_here = [
            o
            for o in obs_here
            if o in plan.flips and (plan.flips[o] == "present" or s.certainty(o) != NEGATIVE)
        ]
        summary = is_summary(s, new_positive)
        if not flips_here and not summary:
            sev_obs = [o for o in obs_here if o in plan.severity]
            if sev_obs and obs_here == sev_obs:
                o = sev_obs[0]
                worse, a = plan.severity[o]
                edit.replace[s.index] = [phrasing.severity_change(o, a, worse, variant(o))]
            continue
        if flips_here and not summary and (cut := without(s, flips_here)) is not None:
            rest, lead = cut
            new = [statement(o, s) for o in flips_here]
            edit.replace[s.index] = (
                ([rest] if rest and lead else []) + new + ([rest] if rest and not lead else [])
            )
            continue
        statements: list[str] = []
        negated: list[str] = []
        drop_hedges = any(plan.flips[o] == "absent" for o in flips_here)
        kept, said, opens = kept_clauses(s, flips_here, drop_hedges, summary)
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
                a = extract(s.text, m)
                statements.append(phrasing.possible(o, a) if cert == UNCERTAIN else phrasing.present(o, a, 2))
        if kept:
            statements = [kept, *statements] if opens else [*statements, kept]
        if summary and not flips_here:
            # The normality claim goes; the new findings take its place.
            low = s.text.lower()
            acute = SUMMARY_ACUTE.search(low) or SUMMARY_WHOLE.match(low.strip(" ."))
            # "No acute ..." is contradicted by any new finding, "The lungs are clear." by a lung one.
            targets = [o for o in new_positive if o != SD and (acute or o in PARENCHYMAL)]
            if not s.mentions:
                statements = [statement(o, s) for o in targets]
                stated_by_summary.update(targets)
        statements += phrasing.negation_list(negated)
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
            statements.append(
                phrasing.new(o, plan.attrs[o], n) if intra else phrasing.present(o, plan.attrs[o], n)
            )
        if target is not None:
            edit.before.setdefault(target.index, []).extend(statements)
        else:
            last = next((s for s in reversed(scoped) if not is_summary(s, new_positive)), None)
            last = last or (scoped[-1] if scoped else None)
            if last is not None:
                edit.after.setdefault(last.index, []).extend(statements)
            else:
                edit.tail.extend(statements)
    return edit
