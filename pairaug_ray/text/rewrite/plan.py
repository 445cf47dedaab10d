"""Choosing what an inter / intra rewrite changes: which observations flip (weighted by hand:
main findings first, support devices and chronic findings rarely), the attributes of those that
become present, and, for intra, sometimes a severity change of a remaining positive finding.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, replace

from pairaug_ray.text.labeler import POSITIVE
from pairaug_ray.text.rewrite.analysis import Doc
from pairaug_ray.text.rewrite.attributes import Attrs, extract, new_attrs
from pairaug_ray.text.rewrite.observations import (
    AT,
    CM,
    CO,
    EC,
    ED,
    FALLBACK_NEW,
    FX,
    LL,
    LO,
    OBSERVATIONS,
    PE,
    PN,
    PO,
    PTX,
    SD,
)

# How likely each observation is to be picked (inter: any mentioned one; intra: resolve a positive,
# or make a negated / unmentioned one appear). Chosen by hand: main findings first, support
# devices and chronic findings (fractures, nodules) rarely.
_INTER_WEIGHT = {PE: 3, PTX: 3, CM: 3, ED: 3, CO: 3, AT: 3, LO: 2, PN: 2, LL: 2, EC: 1, PO: 1, FX: 1, SD: 0.5}
_RESOLVE_WEIGHT = {
    PE: 3,
    PTX: 3,
    CO: 3,
    AT: 3,
    ED: 3,
    PN: 3,
    LO: 2,
    SD: 2,
    CM: 1,
    EC: 1,
    LL: 0.5,
    PO: 0.5,
    FX: 0.3,
}
_NEW_WEIGHT_MENTIONED = {
    PE: 2,
    PTX: 2,
    CM: 2,
    ED: 2,
    CO: 2,
    AT: 2,
    LO: 1,
    PN: 1,
    LL: 0.5,
    EC: 0.5,
    PO: 0.3,
    FX: 0.3,
}
_NEW_WEIGHT_UNMENTIONED = {PE: 1, PTX: 0.7, CM: 0.7, ED: 1, CO: 1, AT: 1, SD: 0.3}
_SEVERITY_CHANGE = (PE, PTX, ED, CO, AT, LO, CM)


@dataclass
class Plan:
    flips: dict[str, str] = field(default_factory=dict)  # obs -> "absent" | "present"
    attrs: dict[str, Attrs] = field(default_factory=dict)  # attributes of new positives
    severity: dict[str, tuple[bool, Attrs]] = field(default_factory=dict)  # obs -> (worse, new attrs)


def _first_mention_attrs(doc: Doc, obs: str) -> Attrs | None:
    for s in doc.scoped:
        for m in s.mentions:
            if m.observation == obs:
                return extract(s.text, m)
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


def plan_inter(doc: Doc, rng: random.Random, k: int) -> Plan:
    labels = doc.labels
    mentioned = [(o, float(_INTER_WEIGHT[o])) for o in OBSERVATIONS if labels[o] is not None]
    chosen = _weighted_sample(mentioned, k, rng)
    if len(chosen) < k:
        fresh = [o for o in FALLBACK_NEW if labels[o] is None]
        rng.shuffle(fresh)
        chosen += fresh[: k - len(chosen)]
    plan = Plan()
    for o in chosen:
        plan.flips[o] = "present" if labels[o] in (0, None) else "absent"
        if plan.flips[o] == "present":
            plan.attrs[o] = new_attrs(o, rng, _first_mention_attrs(doc, o))
    return plan


def plan_intra(doc: Doc, rng: random.Random, k: int) -> Plan:
    labels = doc.labels
    items: list[tuple[str, float]] = []
    for o in OBSERVATIONS:
        if labels[o] in (1, -1):
            items.append((o, _RESOLVE_WEIGHT.get(o, 0.3)))
        elif labels[o] == 0:
            items.append((o, _NEW_WEIGHT_MENTIONED.get(o, 0.0)))
        else:
            items.append((o, _NEW_WEIGHT_UNMENTIONED.get(o, 0.0)))
    plan = Plan()
    for o in _weighted_sample(items, k, rng):
        plan.flips[o] = "absent" if labels[o] in (1, -1) else "present"
        if plan.flips[o] == "present":
            plan.attrs[o] = new_attrs(o, rng, _first_mention_attrs(doc, o))
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
            a = extract(own[0].text, m)
            sev = a.sev or 2
            worse = rng.random() < 0.5
            if (worse and sev == 3) or (not worse and sev == 1):
                worse = not worse
            plan.severity[o] = (worse, replace(a, sev=sev + (1 if worse else -1)))
    return plan
