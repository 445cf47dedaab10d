"""Subgroup evaluation: AUC per sex, age band and race group, and the underdiagnosis gap.

Underdiagnosis (Seyyed-Kalantari et al., Nature Medicine 2021): a patient who has a finding but whom
the model calls healthy. For a zero-shot CLIP without a "No Finding" head, a study is called healthy
when *none* of the evaluated labels is predicted (each at the threshold the overall evaluation used:
its F1-maximising or validation threshold). A subgroup's underdiagnosis rate is the share of its
studies with at least one positive label that are called healthy; the gap of an attribute is the
largest minus the smallest rate over its groups. RoentGen-v2 reports a 19.3% cut of this gap from
synthetic pretraining: `pairaug compare` shows it beside the AUC so a user can check their own runs.

Intervals: CheXzero's bootstrap over the whole test set (the same resamples as the overall metrics),
so a group's size varies from resample to resample as it does between real test sets; the gap's
interval comes from the per-resample gap. A group with fewer than `min_group` images is listed with
its count and no metrics.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from pairaug_ray import schema
from pairaug_ray.eval.metrics import (
    CHUNK_CELLS,
    N_BOOTSTRAP,
    auc_from_counts,
    chexzero_interval,
    resample_counts,
)

AGE_BANDS = ((0, 39, "0-39"), (40, 59, "40-59"), (60, 79, "60-79"), (80, 200, "80+"))
ATTRIBUTES = {schema.SEX: "sex", schema.AGE: "age band", schema.RACE: "race"}
MIN_GROUP = 20


def age_band(age: Any) -> str | None:
    if age is None or (isinstance(age, float) and not np.isfinite(age)):
        return None
    for low, high, name in AGE_BANDS:
        if low <= age <= high:
            return name
    return None


def group_values(frame, column: str) -> np.ndarray:
    """Each row's group for this attribute (None: unknown, left out of that attribute)."""
    values = frame[column].tolist()
    if column == schema.AGE:
        return np.asarray([age_band(v) for v in values], dtype=object)
    return np.asarray([v if isinstance(v, str) and v else None for v in values], dtype=object)


def called_healthy(probs: np.ndarray, thresholds: list[float | None]) -> np.ndarray:
    """(n,) bool: no label predicted at its threshold (labels without a threshold never predict)."""
    t = np.asarray([np.inf if v is None else v for v in thresholds], float)
    return ~(probs >= t).any(axis=1)


def _rate(counts: np.ndarray, sick: np.ndarray, healthy_call: np.ndarray) -> np.ndarray:
    """Per resample: called healthy among the sick rows drawn (NaN when none drawn)."""
    drawn_sick = counts @ sick.astype(float)
    missed = counts @ (sick & healthy_call).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(drawn_sick > 0, missed / drawn_sick, np.nan)


def _macro_auc(y: np.ndarray, probs: np.ndarray, counts: np.ndarray) -> np.ndarray:
    per_label = np.stack([auc_from_counts(y[:, j], probs[:, j], counts) for j in range(y.shape[1])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_label, axis=0)


def subgroup_metrics(
    frame,
    y: np.ndarray,
    probs: np.ndarray,
    thresholds: list[float | None],
    n_bootstrap: int = N_BOOTSTRAP,
    min_group: int = MIN_GROUP,
) -> dict[str, Any]:
    """{attribute: {"groups": {group: {n, sick, macro_auc, underdiagnosis}}, "underdiagnosis_gap"}}
    for every demographic column of `frame` that has known values; {} when it has none."""
    y, probs = np.asarray(y, float), np.asarray(probs, float)
    n = len(y)
    step = max(1, CHUNK_CELLS // max(1, n))
    chunks = [(a, min(step, n_bootstrap - a)) for a in range(0, n_bootstrap, step)]

    def over_resamples(fn) -> np.ndarray:
        """fn(counts) per chunk of resamples, concatenated (memory: one chunk at a time)."""
        return np.concatenate([fn(resample_counts(n, size, start)) for start, size in chunks])

    once = np.ones((1, n))
    sick = np.nan_to_num(y, nan=0.0).max(axis=1) > 0
    healthy_call = called_healthy(probs, thresholds)
    out: dict[str, Any] = {}
    for column, attribute in ATTRIBUTES.items():
        if column not in frame:
            continue
        groups = group_values(frame, column)
        names = sorted({g for g in groups if g is not None})
        if not names:
            continue
        result: dict[str, Any] = {"groups": {}}
        rates = {}
        for g in names:
            member = groups == g
            entry: dict[str, Any] = {"n": int(member.sum()), "sick": int((member & sick).sum())}
            if member.sum() >= min_group:
                # A resample's draws of this group's rows: counts masked to the group.
                aucs = over_resamples(lambda c, m=member: _macro_auc(y, probs, c * m))
                auc = chexzero_interval(aucs, float(_macro_auc(y, probs, once * member)[0]))
                entry["macro_auc"] = auc.as_dict("a label has one class in this group")
                r = over_resamples(lambda c, m=member: _rate(c * m, sick, healthy_call))
                observed = float(_rate(once * member, sick, healthy_call)[0])
                entry["underdiagnosis"] = chexzero_interval(r, observed).as_dict(
                    "no sick patient in this group"
                )
                rates[g] = (r, observed)
            else:
                entry["too_few"] = f"fewer than {min_group} images"
            result["groups"][g] = entry
        if len(rates) >= 2:
            stacked = np.stack([r for r, _ in rates.values()])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                gap = np.nanmax(stacked, axis=0) - np.nanmin(stacked, axis=0)
            observed = [o for _, o in rates.values()]
            result["underdiagnosis_gap"] = chexzero_interval(gap, max(observed) - min(observed)).as_dict(
                "a group has no sick patient"
            )
            result["highest"] = max(rates, key=lambda g: rates[g][1])
        out[attribute] = result
    return out


def format_subgroups(sub: dict[str, Any]) -> list[str]:
    """Lines for the terminal: per attribute, each group's macro AUC and underdiagnosis, then the gap."""
    from pairaug_ray.eval.metrics import format_interval

    lines = []
    for attribute, result in sub.items():
        for g, e in result["groups"].items():
            if "too_few" in e:
                lines.append(f"  {attribute:<9} {g:<9} n={e['n']:<5} ({e['too_few']})")
                continue
            lines.append(
                f"  {attribute:<9} {g:<9} n={e['n']:<5} AUC {format_interval(e['macro_auc'])}  "
                f"underdiagnosis {format_interval(e['underdiagnosis'])}"
            )
        if "underdiagnosis_gap" in result:
            lines.append(
                f"  {attribute:<9} gap       underdiagnosis {format_interval(result['underdiagnosis_gap'])} "
                f"(highest: {result['highest']})"
            )
    return lines
