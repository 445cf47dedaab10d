"""Patient attributes in generation prompts: RoentGen-v2's demographic prefix, and balanced draws.

RoentGen-v2 (stanfordmimi/RoentGen-v2) was fine-tuned on prompts of the form

    "74 year old BLACK male. No acute intrathoracic abnormalities identified ."

(its released inference prompts), so a prompt built here puts the patient's age, race group and sex
before the report text. An attribute that is unknown is left out of the prefix rather than
guessed; with none known the prompt is the report alone, as for RoentGen v1.

InterAug draws a *new* patient, so it may draw that patient's attributes from a target
distribution (generate.prompt.target) instead of copying the source patient's: the way to make
the synthetic set demographically balanced. IntraAug edits the same patient: both of its prompts
carry that patient's own prefix, so prompt-to-prompt's token alignment is unchanged.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

SEXES = ("F", "M")
RACE_GROUPS = ("WHITE", "BLACK", "ASIAN", "HISPANIC", "OTHER")
SEX_WORDS = {"F": "female", "M": "male"}


def demographic_prefix(sex: str | None, age: int | float | None, race: str | None) -> str:
    """ "74 year old BLACK male. " from what is known; "" when nothing is."""
    words = []
    if age is not None and age == age:  # not NaN
        words.append(f"{int(age)} year old")
    if race:
        words.append(str(race))
    sex_word = SEX_WORDS.get(str(sex).upper()) if sex else None
    if sex_word:
        words.append(sex_word)
    elif words:
        words.append("patient")  # "74 year old BLACK patient." reads as a sentence
    return f"{' '.join(words)}. " if words else ""


def generation_prompt(
    report: str, sex: str | None = None, age: int | float | None = None, race: str | None = None
) -> str:
    """The text a demographic-conditioned generator draws: the prefix, then the report."""
    return demographic_prefix(sex, age, race) + (report or "")


def _uniform(seed: str, what: str) -> float:
    digest = hashlib.blake2b(f"{seed}:{what}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _pick(weights: Mapping[str, float], u: float) -> str:
    total = sum(weights.values())
    acc = 0.0
    for key, w in weights.items():
        acc += w / total
        if u < acc:
            return key
    return list(weights)[-1]


def draw_demographics(
    seed: str,
    sex: Mapping[str, float] | None = None,
    race: Mapping[str, float] | None = None,
    age_bands: Sequence[tuple[int, int, float]] | None = None,
) -> dict[str, Any]:
    """A new patient's attributes drawn from target weights, the same for the same `seed` (an image's
    pair id) on every rerun. Age: a band `(low, high, weight)` by weight, then a whole year uniformly
    in [low, high]. An attribute without a target is not drawn (None: keep the source's)."""
    out: dict[str, Any] = {"sex": None, "race": None, "age": None}
    if sex:
        out["sex"] = _pick(sex, _uniform(seed, "sex"))
    if race:
        out["race"] = _pick(race, _uniform(seed, "race"))
    if age_bands:
        band = _pick({str(i): w for i, (_, _, w) in enumerate(age_bands)}, _uniform(seed, "age-band"))
        low, high, _ = age_bands[int(band)]
        out["age"] = low + min(high - low, int(_uniform(seed, "age") * (high - low + 1)))
    return out
