"""Statistics of a reader study (PairAug section 4.6, the Visual Turing Test; docs/reader-study.md).

Tasks 1 and 2 ask "real or synthetic/unsure?" of a mix of real and synthetic cases: a reader's
accuracy (near 50% means the synthetic cases pass for real), and their sensitivity for "synthetic"
(the share of synthetic cases they caught). Task 3 rates synthetic pairs "good", "poor" or "unsure".
Agreement between readers is Cohen's kappa for two and Fleiss' kappa for more.

Intervals: Wilson's score interval for a proportion (scipy), which keeps its coverage at the 50
cases of the paper's tasks where the normal approximation does not; a percentile bootstrap over
cases for kappa (cases resampled, every reader's answer to a case kept together, since the readers
answered the same cases).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, roc_auc_score

N_BOOTSTRAP = 2000
SYNTHETIC = "synthetic"  # tasks 1-2 answers: "real" or "synthetic" ("synthetic/unsure" on the page)
REAL = "real"


def proportion(successes: int, n: int) -> dict[str, Any]:
    """successes / n with Wilson's 95% interval (None when n is 0)."""
    if n == 0:
        return {"value": None, "low": None, "high": None, "n": 0}
    ci = binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return {"value": successes / n, "low": float(ci.low), "high": float(ci.high), "n": n}


def turing_scores(truth: Sequence[str], answers: Sequence[str]) -> dict[str, Any]:
    """One reader's accuracy and sensitivity for "synthetic" over the cases they answered (truth and
    answers are "real" or "synthetic", case for case)."""
    if len(truth) != len(answers):
        raise ValueError(f"{len(truth)} truths for {len(answers)} answers")
    t, a = np.asarray(truth), np.asarray(answers)
    synthetic = t == SYNTHETIC
    return {
        "accuracy": proportion(int((t == a).sum()), len(t)),
        "sensitivity_synthetic": proportion(int((a[synthetic] == SYNTHETIC).sum()), int(synthetic.sum())),
        "specificity_real": proportion(int((a[~synthetic] == REAL).sum()), int((~synthetic).sum())),
    }


def rating_shares(ratings: Sequence[str], categories: Sequence[str] = ("good", "poor", "unsure")) -> dict:
    """Task 3: the share of each rating, with its interval."""
    n = len(ratings)
    return {c: proportion(sum(r == c for r in ratings), n) for c in categories}


def fleiss_kappa(table: np.ndarray) -> float:
    """Fleiss' kappa of a cases x categories table of counts (each row sums to the number of readers).

    P_i, the agreement on case i, is the share of reader pairs that agree on it; P_e the agreement
    expected from the categories' overall shares. kappa = (mean P_i - P_e) / (1 - P_e)."""
    table = np.asarray(table, dtype=float)
    raters = table.sum(axis=1)
    if table.shape[0] == 0 or not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every case needs the same number (at least 2) of ratings")
    m = raters[0]
    p_case = ((table * (table - 1)).sum(axis=1)) / (m * (m - 1))
    shares = table.sum(axis=0) / table.sum()
    p_e = float((shares**2).sum())
    if p_e == 1.0:
        return float("nan")  # every answer the same category: agreement is not defined
    return float((p_case.mean() - p_e) / (1 - p_e))


def _kappa(matrix: np.ndarray, categories: list[str]) -> float:
    """matrix: cases x readers of answers."""
    if matrix.shape[1] == 2:
        if len(set(matrix[:, 0]) | set(matrix[:, 1])) < 2:
            return float("nan")
        return float(cohen_kappa_score(matrix[:, 0], matrix[:, 1], labels=categories))
    table = np.stack([(matrix == c).sum(axis=1) for c in categories], axis=1)
    return fleiss_kappa(table)


def agreement(
    answers: Mapping[str, Mapping[str, str]], categories: Sequence[str], *, seed: int = 0
) -> dict[str, Any]:
    """Agreement between readers over the cases all of them answered: Cohen's kappa for two readers,
    Fleiss' for more, with a bootstrap 95% interval over cases. `answers`: reader -> case -> answer."""
    readers = sorted(answers)
    if len(readers) < 2:
        return {"method": None, "value": None, "low": None, "high": None, "cases": 0, "readers": len(readers)}
    cases = sorted(set.intersection(*(set(answers[r]) for r in readers)))
    method = "cohen" if len(readers) == 2 else "fleiss"
    out: dict[str, Any] = {"method": method, "cases": len(cases), "readers": len(readers)}
    if len(cases) < 2:
        return {**out, "value": None, "low": None, "high": None}
    cats = list(categories)
    matrix = np.array([[answers[r][c] for r in readers] for c in cases], dtype=object)
    value = _kappa(matrix, cats)
    rng = np.random.default_rng(seed)
    reps = np.array(
        [_kappa(matrix[rng.integers(0, len(cases), len(cases))], cats) for _ in range(N_BOOTSTRAP)]
    )
    reps = reps[np.isfinite(reps)]
    low, high = (
        (float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))) if len(reps) else (None, None)
    )
    return {**out, "value": None if not np.isfinite(value) else value, "low": low, "high": high}


def score_auc_for_rejected(scores: Sequence[float], rejected: Sequence[bool]) -> dict[str, Any]:
    """How well an automatic pruning score ranks the pairs readers rejected: the AUC of -score for
    "rejected" (1.0: every rejected pair scored below every accepted one, which is what pruning by a
    threshold on the score needs; 0.5: the score does not see what readers see)."""
    s, y = np.asarray(scores, dtype=float), np.asarray(rejected, dtype=bool)
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return {"auc": None, "rejected": n_pos, "accepted": n_neg}
    return {"auc": float(roc_auc_score(y, -s)), "rejected": n_pos, "accepted": n_neg}
