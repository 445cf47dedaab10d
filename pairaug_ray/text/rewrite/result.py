"""What the rules rewriter returns: its version (part of every rewrite's provenance and seed),
its modes, and the edits of a rewrite.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RULES_VERSION = "1"  # bump when behaviour changes; goes into provenance

Mode = Literal["inter", "intra", "paraphrase"]
MODES: tuple[str, ...] = ("inter", "intra", "paraphrase")


@dataclass(frozen=True)
class RuleEdit:
    """One observation that the rewrite changed (or, for a paraphrase, reworded).

    kind: "to_absent" / "to_present" (inter), "resolved" / "new" / "worsened" / "improved"
    (intra), "reworded" (paraphrase; also a label that moved between 0 and None, i.e. a finding
    that stays absent but is no longer, or newly, stated as absent).
    """

    observation: str
    kind: str
    before: int | None
    after: int | None


@dataclass(frozen=True)
class RuleRewrite:
    text: str
    edits: tuple[RuleEdit, ...]
