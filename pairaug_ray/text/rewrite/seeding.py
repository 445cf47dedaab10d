"""The random stream of one rewrite attempt.

A function of (version, mode, seed, flip limits, attempt, text) through a stable hash, not
Python's salted `hash`, so a rewrite is the same in every process.
"""

from __future__ import annotations

import hashlib
import random

from pairaug_ray.text.rewrite.result import RULES_VERSION

MAX_TRIES = 6


def seeded_rng(
    text: str, mode: str, seed: int, min_flips: int, max_flips: int, attempt: int
) -> random.Random:
    key = f"{RULES_VERSION}\x00{mode}\x00{seed}\x00{min_flips}\x00{max_flips}\x00{attempt}\x00{text}"
    return random.Random(int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big"))
