"""AUC, F1 and accuracy with CheXzero's bootstrap confidence intervals, vectorised over resamples.

CheXzero (`eval.py`): resample i draws indices with `sklearn.utils.resample(idx, replace=True,
random_state=i)`, i.e. `RandomState(i).randint(n, size=n)` (its `np.random.seed(97)` does not reach
these draws); the point estimate is the mean of the 1,000 replicate metrics; the interval is the 25th
and 975th of the sorted replicates (`iloc[int(0.025 n) - 1]`, `iloc[int(0.975 n) - 1]`), NaN
replicates (a resample with one class) sorted last, as pandas does.

Every metric here is computed from *counts*: a resample is a vector c of how often each row was
drawn, so one sort of the scores per label serves all resamples, and ties and missing labels (NaN:
uncertain or not annotated, excluded per label) are exact.

Threshold rule (CheXzero reports no ACC/F1; MedKLIP/KAD's recipe, see docs/method.md): per label,
the threshold that maximises F1 over the precision-recall curve (the lowest one on ties, as
`np.argmax` over sklearn's ascending thresholds picks); ACC at that threshold. Predictions are
`p >= threshold` for both F1 and ACC (MedKLIP's code uses `p > threshold` for ACC only, scoring ACC
at a different decision than F1). With `threshold="validation"` the threshold comes from a
validation set and F1/ACC are computed at it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

N_BOOTSTRAP = 1000


MIN_BOOTSTRAP = 40  # below this, CheXzero's int(0.025 n) - 1 lower index is -1
CHUNK_CELLS = 20_000_000  # resamples x rows held at once (bounds memory on PadChest-sized sets)


def resample_counts(n: int, n_resamples: int = N_BOOTSTRAP, start: int = 0) -> np.ndarray:
    """(R, n) counts: how often resample i (CheXzero's random_state=i), i in [start, start + R), drew
    each row."""
    draws = np.stack([np.random.RandomState(i).randint(n, size=n) for i in range(start, start + n_resamples)])
    offsets = (np.arange(n_resamples) * n)[:, None]
    flat = np.bincount((draws + offsets).ravel(), minlength=n_resamples * n)
    return flat.reshape(n_resamples, n).astype(np.int32)


@dataclass(frozen=True)
class _Sorted:
    order: np.ndarray  # rows by descending score
    group_end: np.ndarray  # bool over sorted rows: last row of a run of equal scores
    scores: np.ndarray  # sorted scores


def _sort(scores: np.ndarray) -> _Sorted:
    order = np.argsort(-scores, kind="stable")
    s = scores[order]
    end = np.ones(len(s), bool)
    end[:-1] = s[:-1] != s[1:]
    return _Sorted(order, end, s)


def _tie_cumsum(x: np.ndarray, srt: _Sorted) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative sums over the sorted rows taken at group ends: (per-group totals, cumulative
    through each group), each (R, G)."""
    c = np.cumsum(x, axis=-1)[..., srt.group_end]
    totals = np.diff(c, axis=-1, prepend=0)
    return totals, c


def auc_from_counts(y: np.ndarray, scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """ROC AUC per resample (R,), NaN where a resample lacks a class. y in {0, 1, NaN}."""
    valid = ~np.isnan(y)
    srt = _sort(np.where(valid, scores, -np.inf))
    yy = np.nan_to_num(y)[srt.order]
    c = counts[..., srt.order] * valid[srt.order]
    pos, neg = c * yy, c * (1 - yy)
    pos_g, _ = _tie_cumsum(pos, srt)
    neg_g, neg_cum = _tie_cumsum(neg, srt)
    # Mann-Whitney over descending groups: a positive beats the negatives in later (lower) groups
    # and ties half of those in its own group.
    neg_total = neg_cum[..., -1:]
    below = neg_total - neg_cum
    wins = (pos_g * (below + 0.5 * neg_g)).sum(-1)
    n_pos, n_neg = pos.sum(-1), neg.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n_pos > 0) & (n_neg > 0), wins / (n_pos * n_neg), np.nan)


def _curve(y: np.ndarray, scores: np.ndarray, counts: np.ndarray):
    valid = ~np.isnan(y)
    srt = _sort(np.where(valid, scores, -np.inf))
    yy = np.nan_to_num(y)[srt.order]
    c = counts[..., srt.order] * valid[srt.order]
    _, tp = _tie_cumsum(c * yy, srt)  # predicted positive: score >= the group's score
    _, pp = _tie_cumsum(c, srt)
    P, N = (c * yy).sum(-1, keepdims=True), (c * (1 - yy)).sum(-1, keepdims=True)
    return srt.scores[srt.group_end], tp, pp - tp, P, N


def f1_acc_from_counts(
    y: np.ndarray, scores: np.ndarray, counts: np.ndarray, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(F1, ACC, threshold) per resample. threshold None: each resample's F1-maximising threshold."""
    if threshold is not None:
        valid = ~np.isnan(y)
        pred = (scores >= threshold) & valid
        yy = np.nan_to_num(y) * valid
        cv = counts * valid
        tp, fp = (cv * pred * yy).sum(-1), (cv * pred * (1 - yy)).sum(-1)
        P, N = (cv * yy).sum(-1), (cv * (1 - yy)).sum(-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = np.where(tp > 0, 2 * tp / (tp + fp + P), 0.0)
            acc = (tp + N - fp) / (P + N)
        return f1, acc, np.full(f1.shape, threshold)
    thresholds, tp, fp, P, N = _curve(y, scores, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (tp + fp + P), 0.0)
    # Rows without a label for this column sort last with score -inf: not a threshold to choose.
    f1 = np.where(np.isneginf(thresholds), -1.0, f1)
    # Lowest threshold among the maxima (thresholds are descending here).
    best = f1.shape[-1] - 1 - np.argmax(f1[..., ::-1], axis=-1)
    take = np.take_along_axis
    tp_b, fp_b = take(tp, best[..., None], -1)[..., 0], take(fp, best[..., None], -1)[..., 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = (tp_b + N[..., 0] - fp_b) / (P[..., 0] + N[..., 0])
    f1_b = take(f1, best[..., None], -1)[..., 0]
    bad = (P[..., 0] == 0) | (P[..., 0] + N[..., 0] == 0)
    return np.where(bad, np.nan, f1_b), np.where(bad, np.nan, acc), thresholds[best]


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> float:
    """The F1-maximising threshold on one set (e.g. validation)."""
    return float(f1_acc_from_counts(y, scores, np.ones((1, len(y))))[2][0])


UNDEFINED = "undefined"  # the key that says why a metric has no value


@dataclass(frozen=True)
class Interval:
    mean: float  # CheXzero's point estimate: the bootstrap mean
    lower: float
    upper: float
    observed: float  # the metric on the data as it is

    def as_dict(self, undefined: str = "no resample has both classes") -> dict[str, Any]:
        """Rounded values; a value that is not a number (NaN) is null, and `undefined` says why, so
        that metrics.json stays JSON that any reader accepts."""
        out: dict[str, Any] = {
            k: round(float(v), 4) if math.isfinite(v) else None for k, v in vars(self).items()
        }
        if any(v is None for v in out.values()):
            out[UNDEFINED] = undefined
        return out


def format_interval(c: dict[str, Any] | None) -> str:
    """'0.8123 (0.7711-0.8502)'; 'n/a (<why>)' when the metric is undefined, and the point estimate
    alone when only the interval is (too many resamples without both classes)."""
    if not c:
        return "n/a"
    why = c.get(UNDEFINED, "not computed")
    if c.get("mean") is None:
        return f"n/a ({why})"
    if c.get("lower") is None or c.get("upper") is None:
        return f"{c['mean']:.4f} (no interval: {why})"
    return f"{c['mean']:.4f} ({c['lower']:.4f}-{c['upper']:.4f})"


def chexzero_interval(replicates: np.ndarray, observed: float) -> Interval:
    n = len(replicates)
    ordered = np.sort(replicates)  # NaN last, as pandas' sort_values
    lower, upper = ordered[int(0.025 * n) - 1], ordered[int(0.975 * n) - 1]
    mean = float(np.nanmean(replicates)) if np.isfinite(replicates).any() else float("nan")
    # pandas' mean skips NaN too; CheXzero's sorted iloc picks would then reach into the NaN tail
    # only when more than 2.5% of resamples lack a class, which a usable test set never does.
    return Interval(mean, float(lower), float(upper), float(observed))


def evaluate(
    y_true: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    n_bootstrap: int = N_BOOTSTRAP,
    thresholds: dict[str, float] | None = None,
) -> dict:
    """Per-label and macro AUC/F1/ACC with bootstrap intervals. y_true (n, L) in {0, 1, NaN};
    probs (n, L). thresholds: fixed per-label thresholds (validation rule); None: F1-maximising."""
    y_true, probs = np.asarray(y_true, float), np.asarray(probs, float)
    if y_true.shape != probs.shape or y_true.shape[1] != len(labels):
        raise ValueError(
            f"labels {y_true.shape} and scores {probs.shape} do not match {len(labels)} label names"
        )
    if n_bootstrap < MIN_BOOTSTRAP:
        raise ValueError(
            f"n_bootstrap {n_bootstrap}: CheXzero's interval needs at least {MIN_BOOTSTRAP} resamples"
        )
    bad = np.argwhere(~np.isfinite(probs))
    if len(bad):
        raise ValueError(f"score of row {bad[0][0]}, label {labels[bad[0][1]]!r} is not a finite number")
    n = y_true.shape[0]
    if n == 0:
        raise ValueError("no rows to evaluate")
    once = np.ones((1, n))
    step = max(1, CHUNK_CELLS // n)
    chunks = [(a, min(step, n_bootstrap - a)) for a in range(0, n_bootstrap, step)]
    # One chunk (the usual case) is drawn once for every label; larger sets redraw per label so that
    # memory stays at one chunk.
    cached = [resample_counts(n, size, start) for start, size in chunks] if len(chunks) == 1 else None
    per_label, reps = {}, {"auc": [], "f1": [], "acc": []}
    for j, name in enumerate(labels):
        y, s = y_true[:, j], probs[:, j]
        fixed = None if thresholds is None else thresholds[name]
        auc_r, f1_r, acc_r = [], [], []
        for c, (start, size) in enumerate(chunks):
            counts = cached[c] if cached else resample_counts(n, size, start)
            auc_r.append(auc_from_counts(y, s, counts))
            f, a, _ = f1_acc_from_counts(y, s, counts, fixed)
            f1_r.append(f)
            acc_r.append(a)
        auc_r, f1_r, acc_r = np.concatenate(auc_r), np.concatenate(f1_r), np.concatenate(acc_r)
        f1_o, acc_o, thr = f1_acc_from_counts(y, s, once, fixed)
        observed = {"auc": auc_from_counts(y, s, once)[0], "f1": f1_o[0], "acc": acc_o[0]}
        positives, negatives = int(np.nansum(y)), int((y == 0).sum())
        why = (
            "no positives in this split"
            if positives == 0
            else "no negatives in this split"
            if negatives == 0
            else "some resamples have one class"
        )
        per_label[name] = {
            "auc": chexzero_interval(auc_r, observed["auc"]).as_dict(why),
            "f1": chexzero_interval(f1_r, observed["f1"]).as_dict(why),
            "acc": chexzero_interval(acc_r, observed["acc"]).as_dict(why),
            "threshold": round(float(thr[0]), 6) if math.isfinite(thr[0]) else None,
            "positives": positives,
            "negatives": negatives,
        }
        for k, r in (("auc", auc_r), ("f1", f1_r), ("acc", acc_r)):
            reps[k].append(r)
    macro = {}
    for k, r in reps.items():
        stacked = np.stack(r)  # (L, R): the macro average within each resample
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: a label with one class
            mean_r = np.nanmean(stacked, axis=0)
            observed = float(
                np.nanmean(
                    [np.nan if (v := per_label[name][k]["observed"]) is None else v for name in labels]
                )
            )
        macro[k] = chexzero_interval(mean_r, observed).as_dict("no label has both classes in this split")
    return {
        "n": n,
        "labels": list(labels),
        "n_bootstrap": n_bootstrap,
        "threshold_rule": "validation" if thresholds is not None else "max-f1",
        "per_label": per_label,
        "macro": macro,
    }


def paired_auc_difference(
    y_true: np.ndarray,
    probs_base: np.ndarray,
    probs_other: np.ndarray,
    labels: list[str],
    n_bootstrap: int = N_BOOTSTRAP,
) -> dict:
    """Macro (and per-label) AUC of `probs_other` minus `probs_base` on the same test images, with a
    paired bootstrap: every resample draws one set of rows and scores both models on it, so the
    interval is that of the difference, not of two independent estimates. A gain is a gain when
    the interval's lower end is above 0. y_true (n, L) in {0, 1, NaN}; both probs (n, L)."""
    y_true = np.asarray(y_true, float)
    probs_base, probs_other = np.asarray(probs_base, float), np.asarray(probs_other, float)
    if not (y_true.shape == probs_base.shape == probs_other.shape) or y_true.shape[1] != len(labels):
        raise ValueError(
            f"labels {y_true.shape} and scores {probs_base.shape}, {probs_other.shape} do not match {len(labels)} labels"
        )
    if n_bootstrap < MIN_BOOTSTRAP:
        raise ValueError(f"n_bootstrap {n_bootstrap}: the interval needs at least {MIN_BOOTSTRAP} resamples")
    n = y_true.shape[0]
    counts = resample_counts(n, n_bootstrap)
    once = np.ones((1, n))
    per_label, diffs, observed = {}, [], []
    for j, name in enumerate(labels):
        y = y_true[:, j]
        d = auc_from_counts(y, probs_other[:, j], counts) - auc_from_counts(y, probs_base[:, j], counts)
        o = float(
            auc_from_counts(y, probs_other[:, j], once)[0] - auc_from_counts(y, probs_base[:, j], once)[0]
        )
        per_label[name] = chexzero_interval(d, o).as_dict("a class is missing")
        diffs.append(d)
        observed.append(o)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a label with one class: all NaN
        macro_r = np.nanmean(np.stack(diffs), axis=0)
        macro = chexzero_interval(macro_r, float(np.nanmean(observed))).as_dict("no label has both classes")
    return {
        "n": n,
        "n_bootstrap": n_bootstrap,
        "per_label": per_label,
        "macro": macro,
        "gain": bool(macro["lower"] is not None and macro["lower"] > 0),
    }


# Seeds of the RandomStates that draw training seeds with replacement in the pooled bootstrap (the
# rows are drawn as CheXzero's resample i draws them: RandomState(i)).
BASE_SEED_DRAWS, OTHER_SEED_DRAWS = 1_000_003, 2_000_003


def seed_draws(n_seeds: int, n_resamples: int, state: int) -> np.ndarray:
    """(R, n_seeds) indices: which training seeds resample r draws (with replacement)."""
    return np.random.RandomState(state).randint(n_seeds, size=(n_resamples, n_seeds))


def _auc_table(y: np.ndarray, runs: Sequence[np.ndarray], counts: np.ndarray) -> np.ndarray:
    """(S, L, R): the AUC of every run (training seed) and label on every resample."""
    return np.stack(
        [np.stack([auc_from_counts(y[:, j], p[:, j], counts) for j in range(y.shape[1])]) for p in runs]
    )


def _over_seeds(aucs: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """(L, R): on resample r, the mean AUC of the seeds that resample drew."""
    picked = aucs[draws, :, np.arange(aucs.shape[2])[:, None]]  # (R, S_drawn, L)
    return picked.mean(axis=1).T


def _check_runs(y: np.ndarray, runs: Sequence[np.ndarray], labels: list[str], n_bootstrap: int) -> None:
    if not runs:
        raise ValueError("no runs to pool: give the scores of at least one training seed")
    for p in runs:
        if p.shape != y.shape or y.shape[1] != len(labels):
            raise ValueError(f"labels {y.shape} and scores {p.shape} do not match {len(labels)} labels")
    if n_bootstrap < MIN_BOOTSTRAP:
        raise ValueError(f"n_bootstrap {n_bootstrap}: the interval needs at least {MIN_BOOTSTRAP} resamples")


def _summarise(per_label_reps: np.ndarray, per_label_obs: np.ndarray, labels: list[str]) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a label with one class: all NaN
        macro_r = np.nanmean(per_label_reps, axis=0)
        macro_o = float(np.nanmean(per_label_obs))
    return {
        "per_label": {
            name: chexzero_interval(per_label_reps[j], float(per_label_obs[j])).as_dict("a class is missing")
            for j, name in enumerate(labels)
        },
        "macro": chexzero_interval(macro_r, macro_o).as_dict("no label has both classes"),
    }


def pooled_auc(
    y_true: np.ndarray, runs: Sequence[np.ndarray], labels: list[str], n_bootstrap: int = N_BOOTSTRAP
) -> dict:
    """One arm's AUC pooled over its training seeds: every resample draws the test rows (CheXzero's
    resample i) and the seeds (with replacement), and averages the drawn seeds' AUCs, so the
    interval holds both the test set's and the training seed's variation."""
    y = np.asarray(y_true, float)
    runs = [np.asarray(p, float) for p in runs]
    _check_runs(y, runs, labels, n_bootstrap)
    counts = resample_counts(y.shape[0], n_bootstrap)
    once = np.ones((1, y.shape[0]))
    reps = _over_seeds(_auc_table(y, runs, counts), seed_draws(len(runs), n_bootstrap, BASE_SEED_DRAWS))
    observed = _auc_table(y, runs, once)[:, :, 0].mean(axis=0)
    return {
        "n": y.shape[0],
        "seeds": len(runs),
        "n_bootstrap": n_bootstrap,
        **_summarise(reps, observed, labels),
    }


def pooled_auc_difference(
    y_true: np.ndarray,
    base_runs: Sequence[np.ndarray],
    other_runs: Sequence[np.ndarray],
    labels: list[str],
    n_bootstrap: int = N_BOOTSTRAP,
) -> dict:
    """The paired bootstrap of `paired_auc_difference`, pooled over training seeds: resample i draws
    one set of test rows for both arms (RandomState(i)), and each arm's seeds with replacement
    (seed_draws); the replicate is the difference of the drawn seeds' mean AUCs. With one seed per
    arm it is `paired_auc_difference`. A gain is a gain when the interval's lower end is above 0."""
    y = np.asarray(y_true, float)
    base = [np.asarray(p, float) for p in base_runs]
    other = [np.asarray(p, float) for p in other_runs]
    _check_runs(y, base + other, labels, n_bootstrap)
    n = y.shape[0]
    counts, once = resample_counts(n, n_bootstrap), np.ones((1, n))
    reps = _over_seeds(_auc_table(y, other, counts), seed_draws(len(other), n_bootstrap, OTHER_SEED_DRAWS))
    reps = reps - _over_seeds(
        _auc_table(y, base, counts), seed_draws(len(base), n_bootstrap, BASE_SEED_DRAWS)
    )
    observed = _auc_table(y, other, once)[:, :, 0].mean(axis=0) - _auc_table(y, base, once)[:, :, 0].mean(
        axis=0
    )
    out = _summarise(reps, observed, labels)
    lower, upper = out["macro"]["lower"], out["macro"]["upper"]
    return {
        "n": n,
        "seeds": [len(base), len(other)],
        "n_bootstrap": n_bootstrap,
        **out,
        "gain": bool(lower is not None and lower > 0),
        "loss": bool(upper is not None and upper < 0),
    }


def seed_t_difference(
    y_true: np.ndarray,
    base_runs: Sequence[np.ndarray],
    other_runs: Sequence[np.ndarray],
    labels: list[str],
    n_bootstrap: int = N_BOOTSTRAP,
    paired: bool = True,
    confidence: float = 0.95,
) -> dict:
    """The difference of two arms' macro (and per-label) AUC over training seeds, with an interval
    that holds for few seeds.

    Point estimate: the observed difference of the seeds' mean AUCs on the whole test set. Its
    variance has two parts: the training seed's, from the spread of the per-seed differences (paired:
    seed k of both arms shares initial weights and data order, so d_k = other_k - base_k; unpaired,
    or different seed counts: Welch's two-sample form), and the test set's, from a paired bootstrap
    of the test images (the same resampled rows for both arms, every seed on each). The interval is
    t-based, its degrees of freedom from Welch-Satterthwaite with the test part counted as known
    (infinite df): with 3 seeds whose differences spread 2.5 points it is about +-6 points, where a
    bootstrap of those seeds gives about +-4. `p` is the two-sided t-test of "no difference"."""
    from scipy import stats

    y = np.asarray(y_true, float)
    base = [np.asarray(p, float) for p in base_runs]
    other = [np.asarray(p, float) for p in other_runs]
    _check_runs(y, base + other, labels, n_bootstrap)
    paired = paired and len(base) == len(other)
    if min(len(base), len(other)) < 2:
        raise ValueError("a seed-aware interval needs at least 2 seeds per arm")
    once = np.ones((1, y.shape[0]))
    a_other = _auc_table(y, other, once)[:, :, 0]  # (S, L)
    a_base = _auc_table(y, base, once)[:, :, 0]
    counts = resample_counts(y.shape[0], n_bootstrap)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a label with one class: NaN, left out
        # Per label and for the macro average (the mean over labels with both classes).
        boot = _auc_table(y, other, counts).mean(axis=0) - _auc_table(y, base, counts).mean(axis=0)  # (L, R)
        columns = [(name, a_other[:, j], a_base[:, j], boot[j]) for j, name in enumerate(labels)]
        columns.append(
            ("macro", np.nanmean(a_other, axis=1), np.nanmean(a_base, axis=1), np.nanmean(boot, axis=0))
        )
        out: dict[str, Any] = {"per_label": {}}
        for name, o, b, boot_diff in columns:
            test_var = float(np.nanvar(boot_diff, ddof=1))
            if paired:
                d = o - b
                seed_var, df_seed = float(np.var(d, ddof=1)) / len(d), len(d) - 1
                welch = seed_var**2 / df_seed if df_seed else np.inf
            else:
                vo, vb = float(np.var(o, ddof=1)) / len(o), float(np.var(b, ddof=1)) / len(b)
                seed_var = vo + vb
                welch = vo**2 / (len(o) - 1) + vb**2 / (len(b) - 1)
            observed = float(np.mean(o) - np.mean(b))
            se = float(np.sqrt(seed_var + test_var))
            df = float((seed_var + test_var) ** 2 / welch) if welch > 0 else float("inf")
            entry: dict[str, Any]
            if not np.isfinite(observed) or not np.isfinite(se):
                entry = {"observed": None, "lower": None, "upper": None, UNDEFINED: "a class is missing"}
            else:
                half = float(stats.t.ppf(0.5 + confidence / 2, df)) * se
                p = float(2 * stats.t.sf(abs(observed) / se, df)) if se > 0 else (0.0 if observed else 1.0)
                entry = {
                    "observed": round(observed, 6),
                    "lower": round(observed - half, 6),
                    "upper": round(observed + half, 6),
                    "se": round(se, 6),
                    "se_seed": round(float(np.sqrt(seed_var)), 6),
                    "se_test": round(float(np.sqrt(test_var)), 6),
                    "df": round(df, 2),
                    "p": p,
                }
            if name == "macro":
                out["macro"] = entry
            else:
                out["per_label"][name] = entry
    lower, upper = out["macro"]["lower"], out["macro"]["upper"]
    return {
        "n": y.shape[0],
        "seeds": [len(base), len(other)],
        "paired_seeds": paired,
        "n_bootstrap": n_bootstrap,
        "method": "t over seeds + paired test bootstrap (Welch-Satterthwaite df)",
        **out,
        "gain": bool(lower is not None and lower > 0),
        "loss": bool(upper is not None and upper < 0),
    }


def holm(p_values: Mapping[str, float | None], alpha: float = 0.05) -> dict[str, dict[str, Any]]:
    """Holm's step-down adjustment over a family of tests (the arms against one baseline): each
    name's adjusted p and whether it is rejected at `alpha` family-wise."""
    ranked = sorted(((p, k) for k, p in p_values.items() if p is not None), key=lambda t: t[0])
    m, running, out = len(ranked), 0.0, {}
    for i, (p, k) in enumerate(ranked):
        running = max(running, min(1.0, (m - i) * p))
        out[k] = {"p_holm": running, "rejected": running < alpha}
    for k, p in p_values.items():
        if p is None:
            out[k] = {"p_holm": None, "rejected": False}
    return out
