"""Phantom findings over time, and MIMIC-style reports that state them.

A patient's findings evolve from study to study (new, increased, decreased, unchanged, resolved).
Every report sentence is generated together with what it asserts about the 14 CheXpert
observations (positive / negative / uncertain), and the study's labels are aggregated from those
assertions the way the CheXpert labeler aggregates mentions (positive > uncertain > negative;
unmentioned stays null). So labels are consistent with the report *as written*: a small effusion
reported as "possible" is uncertain (-1), a finding that is present but not mentioned is null,
exactly like labels mined from real reports. The ground truth of what was drawn is kept beside it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pairaug_ray import schema

POS, NEG, UNC = schema.LABEL_POSITIVE, schema.LABEL_NEGATIVE, schema.LABEL_UNCERTAIN

# Prevalence at a patient's first study; later studies evolve from the previous state.
PREVALENCE = {
    "pleural effusion": 0.22,
    "cardiomegaly": 0.18,
    "atelectasis": 0.22,
    "consolidation": 0.15,
    "edema": 0.12,
    "pneumothorax": 0.05,
    "lung lesion": 0.07,
    "support devices": 0.15,
}
CTR_BY_SEVERITY = {1: 0.545, 2: 0.59, 3: 0.65}
SEVERITY_WORD = {
    "pleural effusion": ("small", "moderate", "large"),
    "pneumothorax": ("small", "moderate", "large"),
    "default": ("mild", "moderate", "severe"),
}
DEVICES = ("endotracheal tube", "nasogastric tube", "central venous catheter")
ZONES = ("upper", "middle", "lower")
LOBE = {
    ("right", "upper"): "right upper lobe",
    ("right", "middle"): "right middle lobe",
    ("right", "lower"): "right lower lobe",
    ("left", "upper"): "left upper lobe",
    ("left", "middle"): "lingula",
    ("left", "lower"): "left lower lobe",
}


def sample_finding(name: str, rng: np.random.Generator) -> dict[str, Any]:
    sev = int(rng.choice([1, 2, 3], p=[0.5, 0.35, 0.15]))
    side = str(rng.choice(["right", "left"]))
    if name == "pleural effusion":
        return {"side": str(rng.choice(["right", "left", "bilateral"], p=[0.35, 0.3, 0.35])), "severity": sev}
    if name == "cardiomegaly":
        return {"severity": sev, "ctr": CTR_BY_SEVERITY[sev] + float(rng.uniform(-0.01, 0.01))}
    if name in ("atelectasis", "pneumothorax"):
        return {"side": side, "severity": sev}
    if name == "consolidation":
        return {"side": side, "zone": str(rng.choice(ZONES, p=[0.25, 0.25, 0.5])), "severity": sev}
    if name == "edema":
        return {"severity": sev}
    if name == "lung lesion":
        return {"side": side, "zone": str(rng.choice(ZONES))}
    if name == "support devices":
        k = int(rng.integers(1, len(DEVICES) + 1))
        return {"devices": sorted(rng.choice(DEVICES, size=k, replace=False).tolist())}
    raise KeyError(name)


def initial_findings(rng: np.random.Generator) -> dict[str, dict[str, Any]]:
    return {n: sample_finding(n, rng) for n, p in PREVALENCE.items() if rng.random() < p}


def evolve(prev: dict[str, dict], rng: np.random.Generator) -> tuple[dict[str, dict], dict[str, str]]:
    """Next study's findings and, per finding, how it changed since the previous study."""
    nxt: dict[str, dict] = {}
    changes: dict[str, str] = {}
    for name, p in PREVALENCE.items():
        if name in prev:
            f = copy.deepcopy(prev[name])
            persistent = name in ("cardiomegaly", "lung lesion")
            r = rng.random()
            if r < (0.03 if persistent else 0.3):
                changes[name] = "resolved"
                continue
            if "severity" in f and r < 0.5 and not persistent:
                step = 1 if rng.random() < 0.5 else -1
                new = min(3, max(1, f["severity"] + step))
                changes[name] = (
                    "unchanged" if new == f["severity"] else ("increased" if step > 0 else "decreased")
                )
                f["severity"] = new
                if name == "cardiomegaly":
                    f["ctr"] = CTR_BY_SEVERITY[new]
            else:
                changes[name] = "unchanged"
            nxt[name] = f
        elif rng.random() < 0.5 * p:
            nxt[name] = sample_finding(name, rng)
            changes[name] = "new"
    return nxt, changes


@dataclass
class Statement:
    text: str
    asserts: dict[str, int] = field(default_factory=dict)  # CheXpert observation -> POS/NEG/UNC


def _sev(name: str, severity: int) -> str:
    return SEVERITY_WORD.get(name, SEVERITY_WORD["default"])[severity - 1]


def _side_phrase(side: str) -> str:
    return "bilateral" if side == "bilateral" else side


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _positive_statement(name: str, f: dict, change: str | None, rng: np.random.Generator) -> Statement:
    """One sentence stating a present finding; mild findings are sometimes hedged, like real reports."""
    hedge = f.get("severity", 2) == 1 and rng.random() < 0.2 and change in (None, "new")
    sev = _sev(name, f["severity"]) if "severity" in f else ""
    ch = {"increased": "has increased", "decreased": "has decreased", "unchanged": "is unchanged"}.get(
        change or ""
    )
    if name == "pleural effusion":
        obs = "Pleural Effusion"
        what = f"{'bilateral pleural effusions' if f['side'] == 'bilateral' else f['side'] + ' pleural effusion'}"
        if hedge:
            return Statement(_cap(f"possible {sev} {what}."), {obs: UNC})
        if ch:
            if f["side"] == "bilateral":  # plural subject
                ch = {"has increased": "have increased", "has decreased": "have decreased"}.get(
                    ch, "are unchanged"
                )
            return Statement(_cap(f"the {sev} {what} {ch}."), {obs: POS})
        opts = [
            f"there is a {sev} {what}." if f["side"] != "bilateral" else f"there are {sev} {what}.",
            f"{'new ' if change == 'new' else ''}{sev} {what} with blunting of the costophrenic angle.",
        ]
        return Statement(_cap(str(rng.choice(opts))), {obs: POS})
    if name == "cardiomegaly":
        obs = "Cardiomegaly"
        opts = [
            f"the heart is {sev}ly enlarged." if sev != "severe" else "the heart is markedly enlarged.",
            f"{sev} cardiomegaly{' is unchanged' if change == 'unchanged' else ''}.",
            f"{'stable ' if change == 'unchanged' else ''}{sev} enlargement of the cardiac silhouette.",
        ]
        return Statement(_cap(str(rng.choice(opts))), {obs: POS})
    if name == "atelectasis":
        obs = "Atelectasis"
        where = f"{f['side']} base" if rng.random() < 0.5 else f"{f['side']} lung base"
        if hedge:
            return Statement(
                _cap(f"minimal opacity at the {where} may reflect atelectasis."),
                {obs: UNC, "Lung Opacity": POS},
            )
        kind = ("subsegmental", "plate-like", "lobar")[f["severity"] - 1]
        s = f"{kind} atelectasis at the {where}" + (f" {ch}" if ch else "") + "."
        return Statement(_cap(("new " if change == "new" else "") + s), {obs: POS})
    if name == "consolidation":
        lobe = LOBE[(f["side"], f["zone"])]
        if hedge:
            return Statement(
                _cap(f"patchy opacity in the {lobe} could represent early pneumonia."),
                {"Lung Opacity": POS, "Pneumonia": UNC},
            )
        s = f"{sev} {lobe} consolidation" + (f" {ch}" if ch else "")
        if rng.random() < 0.4:
            return Statement(
                _cap(s + ", concerning for pneumonia."), {"Consolidation": POS, "Pneumonia": UNC}
            )
        return Statement(_cap(("new " if change == "new" else "") + s + "."), {"Consolidation": POS})
    if name == "edema":
        opts = [
            f"{sev} pulmonary edema{' ' + ch if ch else ''}.",
            f"there is {sev} interstitial pulmonary edema.",
        ]
        return Statement(_cap(str(rng.choice(opts))), {"Edema": POS})
    if name == "pneumothorax":
        s = f"{sev} {f['side']} apical pneumothorax" + (f" {ch}" if ch else "") + "."
        return Statement(_cap(("new " if change == "new" else "") + s), {"Pneumothorax": POS})
    if name == "lung lesion":
        zone = {"upper": "upper", "middle": "mid", "lower": "lower"}[f["zone"]]
        opts = [
            f"a {int(rng.integers(6, 15))} mm nodule in the {f['side']} {zone} lung{' is unchanged' if change == 'unchanged' else ''}.",
            f"{'stable ' if change == 'unchanged' else ''}{f['side']} {zone} lung nodule.",
        ]
        return Statement(_cap(str(rng.choice(opts))), {"Lung Lesion": POS})
    if name == "support devices":
        parts = {
            "endotracheal tube": f"endotracheal tube terminates {int(rng.integers(3, 6))} cm above the carina",
            "nasogastric tube": "nasogastric tube courses below the diaphragm into the stomach",
            "central venous catheter": "right subclavian central venous catheter tip is in the mid svc",
        }
        text = "; ".join(parts[d] for d in f["devices"])
        return Statement(_cap(text + "."), {"Support Devices": POS})
    raise KeyError(name)


def _resolved_statement(name: str, prev: dict, rng: np.random.Generator) -> Statement:
    what = {
        "pleural effusion": ("pleural effusion", "Pleural Effusion"),
        "cardiomegaly": ("cardiomegaly", "Cardiomegaly"),
        "atelectasis": ("atelectasis", "Atelectasis"),
        "consolidation": ("consolidation", "Consolidation"),
        "edema": ("pulmonary edema", "Edema"),
        "pneumothorax": ("pneumothorax", "Pneumothorax"),
        "lung lesion": ("nodule", "Lung Lesion"),
    }
    if name == "support devices":
        return Statement("Previously seen support devices have been removed.", {"Support Devices": NEG})
    phrase, obs = what[name]
    side = prev.get("side")
    label = f"{_side_phrase(side)} {phrase}" if side else phrase
    if rng.random() < 0.5:
        return Statement(_cap(f"the previously seen {label} has resolved."), {obs: NEG})
    return Statement(_cap(f"interval resolution of the {label}."), {obs: NEG})


NEGATIVES = {  # absent finding -> ways to say so, each with what it asserts
    "pleural effusion": [("No pleural effusion.", {"Pleural Effusion": NEG})],
    "pneumothorax": [
        ("No pneumothorax.", {"Pneumothorax": NEG}),
        ("There is no pneumothorax.", {"Pneumothorax": NEG}),
    ],
    "consolidation": [
        ("No focal consolidation.", {"Consolidation": NEG}),
        ("There is no focal consolidation.", {"Consolidation": NEG}),
    ],
    "edema": [("No pulmonary edema.", {"Edema": NEG}), ("There is no pulmonary edema.", {"Edema": NEG})],
    "cardiomegaly": [
        ("Heart size is normal.", {"Cardiomegaly": NEG}),
        ("The heart is normal in size.", {"Cardiomegaly": NEG}),
    ],
    "atelectasis": [("No atelectasis.", {"Atelectasis": NEG})],
}


def write_report(
    findings: dict[str, dict],
    changes: dict[str, str] | None,
    prev: dict[str, dict] | None,
    rng: np.random.Generator,
    *,
    sex: str,
) -> tuple[str, str, str, dict[str, int | None]]:
    """(full report, findings section, impression section, CheXpert labels) for one study."""
    statements: list[Statement] = []
    positives: dict[str, Statement] = {}
    order = [
        "support devices",
        "consolidation",
        "atelectasis",
        "lung lesion",
        "edema",
        "pleural effusion",
        "pneumothorax",
        "cardiomegaly",
    ]
    for name in order:
        if name in findings:
            positives[name] = _positive_statement(name, findings[name], (changes or {}).get(name), rng)
            statements.append(positives[name])
        elif changes and changes.get(name) == "resolved" and prev and name in prev:
            statements.append(_resolved_statement(name, prev[name], rng))
    # Negatives: a radiologist states most, not all, pertinent negatives.
    absent = [n for n in NEGATIVES if n not in findings and not (changes and changes.get(n) == "resolved")]
    if "pleural effusion" in absent and "pneumothorax" in absent and rng.random() < 0.6:
        statements.append(
            Statement("No pleural effusion or pneumothorax.", {"Pleural Effusion": NEG, "Pneumothorax": NEG})
        )
        absent = [n for n in absent if n not in ("pleural effusion", "pneumothorax")]
    for name in absent:
        if rng.random() < 0.75:
            text, asserts = NEGATIVES[name][int(rng.integers(len(NEGATIVES[name])))]
            statements.append(Statement(text, dict(asserts)))
    if "cardiomegaly" not in findings and rng.random() < 0.4:
        statements.append(
            Statement("The mediastinal contours are normal.", {"Enlarged Cardiomediastinum": NEG})
        )
    findings_text = " ".join(s.text for s in statements)

    impression = _impression(findings, changes, positives, rng)
    labels = aggregate([*statements, *impression])
    impression_text = " ".join(s.text for s in impression)
    report = _mimic_layout(findings_text, impression_text, prev is not None, rng, sex=sex)
    return report, findings_text, impression_text, labels


CHANGE_PREFIX = {"new": "new", "increased": "increased", "decreased": "decreased", "unchanged": "unchanged"}


def _impression(findings, changes, positives: dict[str, Statement], rng) -> list[Statement]:
    """A short summary of the important positives, in impression style ("Moderate left effusion.")."""
    pathologic = [n for n in positives if n != "support devices"]
    if not pathologic:
        opts = [
            "No acute cardiopulmonary process.",
            "No acute cardiopulmonary abnormality.",
            "No acute intrathoracic process.",
        ]
        return [Statement(str(rng.choice(opts)), {})]
    out = []
    for name in pathologic[:3]:
        f, said = findings[name], positives[name]
        if any(v == UNC for v in said.asserts.values()):
            out.append(said)  # a hedged finding stays hedged in the impression
            continue
        change = CHANGE_PREFIX.get((changes or {}).get(name, ""), "")
        sev = _sev(name, f["severity"]) if "severity" in f else ""
        side = _side_phrase(f["side"]) if "side" in f else ""
        noun = {
            "pleural effusion": "pleural effusions" if side == "bilateral" else "pleural effusion",
            "consolidation": f"{LOBE[(f['side'], f['zone'])]} consolidation"
            if "zone" in f
            else "consolidation",
            "edema": "pulmonary edema",
            "lung lesion": "pulmonary nodule",
            "pneumothorax": "pneumothorax",
            "atelectasis": "atelectasis",
            "cardiomegaly": "cardiomegaly",
        }[name]
        if name in ("consolidation", "lung lesion", "edema", "cardiomegaly"):
            side = ""
        if name == "lung lesion":
            sev = f["side"]
        words = " ".join(w for w in (change, sev, side, noun) if w)
        out.append(Statement(_cap(words + "."), dict(said.asserts)))
    return out


def aggregate(statements: list[Statement]) -> dict[str, int | None]:
    """CheXpert aggregation: positive beats uncertain beats negative; unmentioned stays null.
    No Finding is positive when nothing but support devices is positive or uncertain."""
    labels: dict[str, int | None] = dict.fromkeys(schema.CHEXPERT_OBSERVATIONS)
    rank = {POS: 3, UNC: 2, NEG: 1}
    for s in statements:
        for obs, value in s.asserts.items():
            cur = labels[obs]
            if cur is None or rank[value] > rank[cur]:
                labels[obs] = value
    abnormal = any(v in (POS, UNC) for o, v in labels.items() if o not in ("No Finding", "Support Devices"))
    labels["No Finding"] = None if abnormal else POS
    return labels


INDICATIONS = [
    "shortness of breath",
    "cough and fever",
    "chest pain",
    "hypoxia",
    "evaluate for pneumonia",
    "follow-up of effusion",
    "line placement",
    "dyspnea on exertion",
]


def _mimic_layout(findings: str, impression: str, has_prior: bool, rng, *, sex: str) -> str:
    who = "man" if sex == "M" else "woman"
    portable = rng.random() < 0.3
    exam = "CHEST (PORTABLE AP)" if portable else "CHEST (PA AND LAT)"
    technique = "Portable AP chest radiograph." if portable else "PA and lateral views of the chest."
    comparison = "___" if has_prior else "None."
    lines = [
        "                                 FINAL REPORT",
        f" EXAMINATION:  {exam}",
        "",
        f" INDICATION:  ___ year old {who} with {rng.choice(INDICATIONS)}.",
        "",
        f" TECHNIQUE:  {technique}",
        "",
        f" COMPARISON:  {comparison}",
        "",
        " FINDINGS: ",
        " ",
        " " + findings,
        " ",
        " IMPRESSION: ",
        " ",
        " " + impression,
    ]
    if rng.random() < 0.1 and impression and not impression.startswith("No acute"):
        lines += ["", " NOTIFICATION:  The findings were discussed with Dr. ___ by telephone at ___."]
    return "\n".join(lines) + "\n"
