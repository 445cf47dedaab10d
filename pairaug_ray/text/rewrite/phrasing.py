"""How a finding is stated: noun phrases ("small right pleural effusion", "8 mm nodule in the
left upper lung") and prose statements of a finding as present, new, absent, resolved, changed in
severity or possible, plus "No A, B or C." lists of negated findings. Statements come in
variants: a later mention of the same observation (an impression repeating the findings) takes
the next one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from pairaug_ray.text.rewrite.attributes import Attrs
from pairaug_ray.text.rewrite.observations import AT, CM, CO, EC, ED, FX, LL, LO, PE, PN, PO, PTX, SD

_SEV_WORDS = {
    PE: ("small", "moderate", "large"),
    PTX: ("small", "moderate", "large"),
    CM: ("mild", "moderate", "marked"),
}
_SEV_DEFAULT = ("mild", "moderate", "severe")


def _sev_word(obs: str, sev: int | None) -> str:
    return _SEV_WORDS.get(obs, _SEV_DEFAULT)[sev - 1] if sev else ""


def join(*words: str | None) -> str:
    return " ".join(w for w in words if w)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def article(phrase: str) -> str:
    first = phrase.split(" ", 1)[0].lower()
    if first.isdigit():
        return "an" if first in ("8", "11", "18") or first.startswith("8") else "a"
    return "an" if first[:1] in "aeio" else "a"


@dataclass(frozen=True)
class _NP:
    text: str
    countable: bool = False
    plural: bool = False

    def with_article(self) -> str:
        return f"{article(self.text)} {self.text}" if self.countable and not self.plural else self.text

    @property
    def be(self) -> str:
        return "are" if self.plural else "is"

    @property
    def have(self) -> str:
        return "have" if self.plural else "has"


def _np(obs: str, a: Attrs, *, severity: bool = True) -> _NP:
    """A noun phrase for a finding: "small right pleural effusion", "8 mm nodule in the ..."."""
    s = _sev_word(obs, a.sev) if severity else ""
    side = a.side
    if obs == PE:
        if side == "bilateral":
            return _NP(join(s, "bilateral pleural effusions"), True, True)
        return _NP(join(s, side, "pleural effusion"), True)
    if obs == PTX:
        return _NP(join(s, side if side != "bilateral" else "bilateral", "pneumothorax"), True)
    if obs == CM:
        return _NP(join(s, "cardiomegaly"))
    if obs == ED:
        return _NP(join(s, "pulmonary edema"))
    if obs == CO:
        loc = a.lobe or (join(side, "basilar" if a.base else "lung") if side else None)
        if side == "bilateral" and not a.lobe:
            loc = "bibasilar" if a.base else "bilateral"
        return _NP(join(s, loc, "consolidation"))
    if obs == AT:
        kind = ("subsegmental", "plate-like", "extensive")[a.sev - 1] if severity and a.sev else ""
        if a.lobe:
            return _NP(join(kind, a.lobe, "atelectasis"))
        if side == "bilateral":
            return _NP(join("bibasilar", kind, "atelectasis"))
        if side:
            return _NP(join(kind, "atelectasis at the", side, "lung base"))
        return _NP(join(kind, "atelectasis"))
    if obs == LO:
        adj = ("faint", "patchy", "dense")[a.sev - 1] if severity and a.sev else ""
        if a.lobe:
            return _NP(join(adj, "opacity in the", a.lobe), True)
        if side == "bilateral":
            return _NP(join(adj, "bibasilar opacities"), True, True)
        if side:
            return _NP(join(adj, side, "basilar" if a.base else "lung", "opacity"), True)
        return _NP(join(adj, "airspace opacity"), True)
    if obs == LL:
        noun = a.noun if a.noun in ("nodule", "mass", "nodules", "masses", "lesion") else "nodule"
        plural = noun.endswith("s") and noun != "mass"
        size = f"{a.size} mm" if severity and a.size and not plural else ""
        where = f"in the {side} {a.zone} lung" if side and a.zone and side != "bilateral" else ""
        if where:
            return _NP(join(size, noun, where), True, plural)
        return _NP(join(size, side, "pulmonary" if noun.startswith("nodule") else "lung", noun), True, plural)
    if obs == PN:
        if a.lobe:
            return _NP(join(a.lobe, "pneumonia"))
        return _NP(join(side if side != "bilateral" else "multifocal", "pneumonia"))
    if obs == EC:
        return _NP(join("mild" if severity and a.sev == 1 else "", "widening of the mediastinum"))
    if obs == PO:
        return _NP(join("mild" if severity and a.sev == 1 else "", side, "pleural thickening"))
    if obs == FX:
        if a.rib and side and side != "bilateral":
            return _NP(f"fracture of the {side} {_ordinal(a.rib)} rib", True)
        return _NP(join(side if side != "bilateral" else "", "rib fracture"), True)
    if obs == SD:
        dev = a.device or "support device"
        plural = dev.endswith("s") and not dev.endswith("ss")
        return _NP(dev, True, plural)
    raise KeyError(obs)


# Prose statements; `render` adapts them to the style of the report. Variant 0 is the "findings"
# form; later mentions of the same observation (an impression repeating the findings) take
# later variants, the last of which is the short impression form.
def present(obs: str, a: Attrs, variant: int) -> str:
    sev = _sev_word(obs, a.sev)
    if obs == CM:
        adv = {"mild": "mildly", "moderate": "moderately", "marked": "markedly"}.get(sev, "")
        opts = [
            f"The heart is {join(adv, 'enlarged')}.",
            f"{join(sev, 'enlargement')} of the cardiac silhouette.",
            f"{join(sev, 'cardiomegaly')}.",
        ]
    elif obs == EC:
        opts = [
            "The mediastinum is widened.",
            "The cardiomediastinal silhouette is enlarged.",
            "Widening of the superior mediastinum.",
        ]
    elif obs == SD:
        dev = a.device or "support device"
        np_ = _NP(dev, True)
        opts = [
            f"{np_.with_article()} {a.tail}." if a.tail else f"{np_.with_article()} is in place.",
            f"{dev} in place.",
        ]
    else:
        np_ = _np(obs, a)
        there = f"There {np_.be} {np_.with_article()}."
        if obs == PTX:
            there = f"There is a {join(sev, a.side, 'apical pneumothorax')}."
        if obs == PN:
            opts = [f"Findings are consistent with {np_.text}.", f"{np_.text}."]
        else:
            opts = [there, f"{np_.with_article()} {np_.be} present.", f"{np_.text}."]
    return opts[variant % len(opts)]


def new(obs: str, a: Attrs, variant: int) -> str:
    if obs == CM:
        adv = {1: "mildly", 2: "moderately", 3: "markedly"}.get(a.sev or 0, "")
        opts = [
            f"The heart is now {join(adv, 'enlarged')}.",
            f"New {join(_sev_word(obs, a.sev), 'cardiomegaly')}.",
        ]
    elif obs == EC:
        opts = ["There is new widening of the mediastinum.", "New mediastinal widening."]
    elif obs == SD:
        dev = a.device or "support device"
        art = _NP(dev, True).with_article()
        opts = [
            f"Interval placement of {art}, which {a.tail}." if a.tail else f"Interval placement of {art}.",
            f"New {dev}.",
        ]
    else:
        np_ = _np(obs, a)
        there = f"There {np_.be} {'a ' if np_.countable and not np_.plural else ''}new {np_.text}."
        opts = [f"New {np_.text}.", f"Interval development of {np_.with_article()}.", there]
    return opts[variant % len(opts)]


def absent(obs: str, variant: int) -> str:
    opts = _ABSENT[obs]
    return opts[variant % len(opts)]


_ABSENT: dict[str, tuple[str, ...]] = {
    EC: ("The mediastinal contours are normal.", "Normal cardiomediastinal silhouette."),
    CM: ("Heart size is normal.", "The heart is normal in size.", "No cardiomegaly."),
    LO: ("No focal airspace opacity.", "There is no focal opacity."),
    LL: ("No suspicious pulmonary nodules or masses.", "No pulmonary nodule."),
    ED: ("No pulmonary edema.", "There is no pulmonary edema."),
    CO: ("No focal consolidation.", "There is no focal consolidation."),
    PN: ("No evidence of pneumonia.", "No pneumonia."),
    AT: ("No atelectasis.", "There is no atelectasis."),
    PTX: ("No pneumothorax.", "There is no pneumothorax."),
    PE: ("No pleural effusion.", "There is no pleural effusion.", "No evidence of pleural effusion."),
    PO: ("No pleural thickening.",),
    FX: ("No acute fracture.", "No displaced fracture."),
    SD: ("No support devices are present.",),
}
# For "No A, B or C." lists of observations that a rewritten sentence still negates.
_NEG_NOUN = {
    EC: "mediastinal widening",
    CM: "cardiomegaly",
    LO: "focal airspace opacity",
    LL: "pulmonary nodule",
    ED: "pulmonary edema",
    CO: "focal consolidation",
    PN: "pneumonia",
    AT: "atelectasis",
    PTX: "pneumothorax",
    PE: "pleural effusion",
    PO: "pleural thickening",
    FX: "acute fracture",
    SD: "support devices",
}


def negation_list(observations: Sequence[str]) -> list[str]:
    """ "No pleural effusion or pneumothorax." (size-type observations get their own sentence)."""
    out = [_ABSENT[o][0] for o in observations if o in (CM, EC)]
    nouns = [_NEG_NOUN[o] for o in observations if o not in (CM, EC)]
    if len(nouns) == 1:
        out.append(f"No {nouns[0]}.")
    elif nouns:
        out.append(f"No {', '.join(nouns[:-1])} or {nouns[-1]}.")
    return out


def resolved(obs: str, a: Attrs, variant: int, *, many_devices: bool = False) -> str:
    if obs == CM:
        opts = ["The heart is now normal in size.", "Interval resolution of cardiomegaly."]
    elif obs == EC:
        opts = [
            "The mediastinal contours are now normal.",
            "Interval resolution of the mediastinal widening.",
        ]
    elif obs == SD:
        if many_devices or not a.device or a.device in ("devices", "support devices", "tubes", "lines"):
            opts = [
                "Previously seen support devices have been removed.",
                "Interval removal of support devices.",
            ]
        else:
            np_ = _np(SD, a)
            opts = [
                f"The previously seen {np_.text} {np_.have} been removed.",
                f"Interval removal of the {np_.text}.",
            ]
    else:
        np_ = _np(obs, a, severity=False)
        opts = [
            f"The previously seen {np_.text} {np_.have} resolved.",
            f"Interval resolution of the {np_.text}.",
            f"The {np_.text} {np_.be} no longer seen.",
        ]
    return opts[variant % len(opts)]


def severity_change(obs: str, a: Attrs, worse: bool, variant: int) -> str:
    new_np = _np(obs, a)
    if obs == CM:
        opts = (
            [f"Worsening {new_np.text}.", f"Interval increase in heart size, now with {new_np.text}."]
            if worse
            else [f"Improving {new_np.text}.", f"Interval decrease in heart size, now with {new_np.text}."]
        )
        return opts[variant % len(opts)]
    np0 = _np(obs, replace(a, sev=None), severity=False)
    direction = "increased" if worse else "decreased"
    opts = [
        f"The {np0.text} {np0.have} {direction} in size, now {_sev_word(obs, a.sev)}."
        if obs in (PE, PTX) and a.sev
        else f"The {np0.text} {np0.have} {direction}.",
        f"Interval {'increase' if worse else 'decrease'} in the {np0.text}.",
        f"{'Worsening' if worse else 'Improving'} {new_np.text}.",
    ]
    return opts[variant % len(opts)]


def possible(obs: str, a: Attrs) -> str:
    return f"Possible {_np(obs, a).text}."
