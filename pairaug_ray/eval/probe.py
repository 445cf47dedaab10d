"""Linear probing: a frozen image encoder's features, one logistic-regression head per label, trained
on 1%, 10% and 100% of a seeded 80/10/10 split; C chosen on the validation part; AUC/ACC/F1 with
bootstrap intervals on the test part (the same metrics as zero-shot)."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from pairaug_ray.eval.metrics import evaluate


def split_indices(n: int, fractions: tuple[float, float, float], seed: int):
    order = np.random.default_rng(seed).permutation(n)
    n_train, n_val = round(fractions[0] * n), round(fractions[1] * n)
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def _fit(x: np.ndarray, y: np.ndarray, c: float):
    if len(np.unique(y)) < 2:
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
) -> dict:
    train, val, test = split_indices(len(features), split, seed)
    results = {"split": {"train": len(train), "validate": len(val), "test": len(test)}, "fractions": {}}
    for fraction in fractions:
        k = max(2, round(fraction * len(train)))
        sub = np.sort(np.random.default_rng(seed + 1).permutation(train)[:k])
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
