"""Attributes of a finding (severity, side, lobe, lung base or zone, nodule size, rib, device):
read from the sentence that mentions it, or drawn at random, plausibly, for a finding to be stated
as present.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from pairaug_ray.text.labeler import Mention
from pairaug_ray.text.rewrite.observations import AT, LL, PE, PTX, SD

_SEV_PARSE = {
    "trace": 1,
    "tiny": 1,
    "small": 1,
    "minimal": 1,
    "mild": 1,
    "mildly": 1,
    "subtle": 1,
    "slight": 1,
    "slightly": 1,
    "moderate": 2,
    "moderately": 2,
    "large": 3,
    "severe": 3,
    "severely": 3,
    "marked": 3,
    "markedly": 3,
    "massive": 3,
    "extensive": 3,
}
_SEV_RX = re.compile(rf"\b(?:{'|'.join(_SEV_PARSE)})\b")
_SIDE_RX = re.compile(r"\b(right|left|bilateral|bilaterally|bibasilar|bibasal|both)\b")
_LOBE_RX = re.compile(r"\b(right|left) (upper|middle|lower) lobe\b")
_BASE_RX = re.compile(r"\b(?:base|bases|basilar|basal|bibasilar|bibasal)\b")
_ZONE_RX = re.compile(r"\b(upper|mid|middle|lower)\b")
_MM_RX = re.compile(r"\b(\d{1,2}) ?mm\b|\b(\d) ?cm\b")
_RIB_RX = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)\b")
_CLAUSE_CUT = re.compile(r"[,;:]| and | with | but | which ")
LOBES = ("right upper lobe", "right middle lobe", "right lower lobe", "left upper lobe", "left lower lobe")
DEVICES = (
    ("endotracheal tube", "terminates {n} cm above the carina"),
    ("nasogastric tube", "courses below the diaphragm into the stomach"),
    ("right internal jugular central venous catheter", "terminates in the mid SVC"),
    ("left-sided pacemaker", "has leads in the right atrium and right ventricle"),
)


@dataclass(frozen=True)
class Attrs:
    sev: int | None = None  # 1..3
    side: str | None = None  # right / left / bilateral
    lobe: str | None = None  # "right lower lobe"
    base: bool = False
    zone: str | None = None  # upper / mid / lower (lung nodules)
    size: int | None = None  # mm (lung nodules)
    rib: int | None = None
    device: str | None = None  # a device phrase ("endotracheal tube")
    tail: str | None = None  # what the device does ("terminates 4 cm above the carina")
    noun: str | None = None  # "nodule" / "mass" for lung lesions


def extract(sentence: str, mention: Mention) -> Attrs:
    """Side, severity and location stated near a mention (its clause, else the sentence)."""
    low = sentence.lower()
    a, b = mention.start, mention.end
    cuts_before = [m.end() for m in _CLAUSE_CUT.finditer(low, 0, a)]
    lo = cuts_before[-1] if cuts_before else 0
    after = _CLAUSE_CUT.search(low, b)
    hi = after.start() if after else len(low)
    window = low[lo:hi]
    sides = _SIDE_RX.findall(window) or (found if len(set(found := _SIDE_RX.findall(low))) == 1 else [])
    side = None
    if sides:
        side = sides[0]
        if side in ("bilateral", "bilaterally", "bibasilar", "bibasal", "both"):
            side = "bilateral"
    lobe = _LOBE_RX.search(window) or (lobes[0] if len(lobes := list(_LOBE_RX.finditer(low))) == 1 else None)
    sev = _SEV_RX.search(window)
    zone = _ZONE_RX.search(window)
    size = _MM_RX.search(window)
    rib = _RIB_RX.search(window)
    mm = None
    if size:
        mm = int(size.group(1)) if size.group(1) else int(size.group(2)) * 10
    noun = mention.text.lower()
    return Attrs(
        sev=_SEV_PARSE[sev.group(0)] if sev else None,
        side=side,
        lobe=lobe.group(0) if lobe else None,
        base=bool(_BASE_RX.search(window)),
        zone={"middle": "mid"}.get(zone.group(1), zone.group(1)) if zone else None,
        size=mm,
        rib=int(rib.group(1)) if rib else None,
        device=noun if mention.observation == SD else None,
        noun=noun if mention.observation == LL else None,
    )


def new_attrs(obs: str, rng: random.Random, known: Attrs | None = None) -> Attrs:
    """Plausible attributes for a finding to be stated as present (keeps a known side)."""
    sev = rng.choices((1, 2, 3), (0.5, 0.35, 0.15))[0]
    side = known.side if known and known.side else rng.choice(("right", "left"))
    if obs == PE and not (known and known.side):
        side = rng.choices(("right", "left", "bilateral"), (0.35, 0.3, 0.35))[0]
    if obs == PTX and side == "bilateral":
        side = rng.choice(("right", "left"))
    lobe = known.lobe if known and known.lobe else None
    if lobe is None and obs != AT:  # atelectasis: at a lung base unless the report says a lobe
        lobe = rng.choice([lb for lb in LOBES if side == "bilateral" or lb.startswith(side)])
    device, tail = rng.choice(DEVICES)
    return Attrs(
        sev=sev,
        side=side,
        lobe=lobe,
        base=True,
        zone=rng.choice(("upper", "mid", "lower")),
        size=rng.randint(6, 24),
        rib=rng.randint(3, 10),
        device=device,
        tail=tail.format(n=rng.randint(3, 6)),
        noun="nodule",
    )
