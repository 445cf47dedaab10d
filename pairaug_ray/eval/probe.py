"""Linear probing: a frozen image encoder's features, one logistic-regression head per label, trained
on 1%, 10% and 100% of a seeded 80/10/10 split; C chosen on the validation part; AUC/ACC/F1 with
bootstrap intervals on the test part (the same metrics as zero-shot).

With patient ids the split is by patient, as is each fraction's draw: a patient's images share their
anatomy, so an image split lets the probe recognise test patients it trained on. Each fraction holds
at least `min_rows` images (whole patients), so that 1% of a small set is not two images.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pairaug_ray.eval.metrics import evaluate

MIN_ROWS = 20
MIN_PATIENTS = 10  # fewer cannot fill a train, a validation and a test part by patient


def split_indices(n: int, fractions: tuple[float, float, float], seed: int, groups=None):
    """Train/validation/test row indices; with `groups` (one id per row) whole groups go to one part,
    the parts' shares counted in groups."""
    if groups is None:
        order = np.random.default_rng(seed).permutation(n)
        n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
        return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]
    ids, row_group = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    g_train, g_val, _ = split_indices(len(ids), fractions, seed)
    part = np.full(len(ids), 2)
    part[g_train], part[g_val] = 0, 1
    rows = part[row_group]
    return tuple(np.flatnonzero(rows == k) for k in range(3))


def fraction_rows(train: np.ndarray, fraction: float, seed: int, groups=None, min_rows: int = MIN_ROWS):
    """A seeded draw of about `fraction` of the training rows, at least `min_rows` (or all of them);
    with `groups`, whole groups in a random order until the count is reached."""
    want = min(len(train), max(min_rows, round(fraction * len(train))))
    if groups is None:
        return np.sort(np.random.default_rng(seed + 1).permutation(train)[:want])
    train_groups = np.asarray(groups).astype(str)[train]
    order = np.random.default_rng(seed + 1).permutation(np.unique(train_groups))
    sizes = {g: n for g, n in zip(*np.unique(train_groups, return_counts=True), strict=True)}
    taken, n = set(), 0
    for g in order:
        if n >= want:
            break
        taken.add(g)
        n += sizes[g]
    return np.sort(train[np.isin(train_groups, list(taken))])


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    if len(y) == 0 or len(np.unique(y)) < 2:
        return None  # one class in this subset: predict its prior
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LogisticRegression(C=c, max_iter=2000).fit(x, y)


def _predict(model, x: np.ndarray, prior: float) -> np.ndarray:
    return np.full(len(x), prior) if model is None else model.predict_proba(x)[:, 1]


def linear_probe(
    features: np.ndarray,
    y: np.ndarray,
    labels: list[str],
    fractions: list[float],
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    c_grid: list[float] = (0.01, 0.1, 1.0, 10.0),
    n_bootstrap: int = 1000,
    groups=None,
    min_rows: int = MIN_ROWS,
) -> dict:
    """`groups`: the patient of each row (None: rows are independent, split by image)."""
    note = None
    if groups is not None and len(np.unique(np.asarray(groups).astype(str))) < MIN_PATIENTS:
        # Too few patients for three parts: an image split, said so in the results.
        note = (
            f"split by image: {len(np.unique(np.asarray(groups).astype(str)))} patients are too few to split"
        )
        groups = None
    train, val, test = split_indices(len(features), split, seed, groups)
    results = {
        "split": {"train": len(train), "validate": len(val), "test": len(test)},
        "split_by": "image" if groups is None else "patient",
        "fractions": {},
    }
    if note:
        results["note"] = note
    if groups is not None:
        g = np.asarray(groups).astype(str)
        results["patients"] = {
            k: len(np.unique(g[idx]))
            for k, idx in zip(("train", "validate", "test"), (train, val, test), strict=True)
        }
    for fraction in fractions:
        sub = fraction_rows(train, fraction, seed, groups, min_rows)
        k = len(sub)
        probs, chosen = np.zeros((len(test), len(labels))), {}
        for j, name in enumerate(labels):
            ok = ~np.isnan(y[sub, j])
            xs, ys = features[sub][ok], y[sub, j][ok]
            prior = float(ys.mean()) if len(ys) else 0.5
            best, best_auc = None, -1.0
            for c in c_grid:
                model = _fit(xs, ys, c)
                vy, vok = y[val, j], ~np.isnan(y[val, j])
                p = _predict(model, features[val][vok], prior)
                auc = roc_auc_score(vy[vok], p) if len(np.unique(vy[vok])) == 2 else 0.5
                if auc > best_auc:
                    best, best_auc = (c, model), auc
            chosen[name] = best[0]
            probs[:, j] = _predict(best[1], features[test], prior)
        out = evaluate(y[test], probs, labels, n_bootstrap=n_bootstrap)
        out["train_rows"], out["c"] = int(k), chosen
        results["fractions"][f"{fraction:g}"] = out
    return results
