"""The generator report card's measures, on features and scores (no model, no Ray).

* Fidelity: the Fréchet distance between Gaussians fitted to image-encoder features of generated
  and real images (FID's formula; CheXGenBench computes it on RAD-DINO features), beside the same
  distance between two halves of the real set, the floor a generator can be judged against.
* Findings shown: per-finding AUC of a classifier's scores on generated images against the labels of
  the reports that drew them (the same classifier on real held-out images is the reference).
* Memorisation: each generated image's nearest training image by feature cosine; a near-duplicate is
  one closer than a threshold calibrated on real images: the similarity that real images of
  *different* patients exceed only `1 - quantile` of the time.
* Edits (IntraAug): whether each finding the new report changed moved the classifier's score the
  stated way by at least a margin, and every finding it kept stayed within it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import linalg
from sklearn.metrics import roc_auc_score


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for features (N, D) of two image sets."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"features must be (N, D) with the same D: got {a.shape} and {b.shape}")
    if min(len(a), len(b)) < 2:
        raise ValueError("each set needs at least 2 images for a covariance")
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        # A singular product (fewer images than dimensions): offset both diagonals, as FID's
        # reference implementation does.
        offset = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(covmean))


def real_floor(real: np.ndarray, seed: int = 0) -> float:
    """The Fréchet distance between two random halves of the real set: what sampling alone gives."""
    idx = np.random.default_rng(seed).permutation(len(real))
    half = len(real) // 2
    return frechet_distance(real[idx[:half]], real[idx[half : 2 * half]])


def finding_aucs(scores: np.ndarray, labels: np.ndarray, findings: Sequence[str]) -> dict[str, float | None]:
    """Per-finding AUC of scores (N, F) against 0/1 labels (N, F; NaN: unknown, left out); None for a
    finding with one class only."""
    out: dict[str, float | None] = {}
    for j, name in enumerate(findings):
        y, s = labels[:, j], scores[:, j]
        keep = ~np.isnan(y)
        y, s = y[keep], s[keep]
        out[name] = float(roc_auc_score(y, s)) if len(np.unique(y)) == 2 else None
    return out


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.clip(np.linalg.norm(x, axis=1, keepdims=True), 1e-12, None)


def nearest(generated: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each generated image, (its nearest training image's index, their cosine similarity)."""
    sims = _normalise(generated) @ _normalise(train).T
    idx = sims.argmax(1)
    return idx, sims[np.arange(len(idx)), idx]


def calibrate_threshold(features: np.ndarray, patients: Sequence[str], quantile: float = 0.99) -> float:
    """The near-duplicate threshold: the `quantile` of the nearest *other-patient* similarity over
    real images, so that a real image is called a near-duplicate of another patient's at most
    1 - quantile of the time."""
    x = _normalise(features)
    sims = x @ x.T
    patients = np.asarray(patients)
    same = patients[:, None] == patients[None, :]
    sims[same] = -np.inf  # itself and the same patient's other studies
    best_other = sims.max(1)
    return float(np.quantile(best_other[np.isfinite(best_other)], quantile))


def near_duplicate_rate(
    generated: np.ndarray, train: np.ndarray, threshold: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """(fraction flagged, flags per generated image, their nearest-train similarity)."""
    _, sim = nearest(generated, train)
    flags = sim > threshold
    return float(flags.mean()) if len(flags) else 0.0, flags, sim


def edit_moves(
    source: np.ndarray,
    edited: np.ndarray,
    changes: Sequence[Mapping[str, int]],
    findings: Sequence[str],
    margin: float = 0.05,
) -> list[dict[str, bool | None]]:
    """Per edit: for each finding the new report changed (+1: now present, -1: now absent), whether
    the classifier's score moved that way by more than `margin`; for every other finding, whether it
    stayed within `margin`. `source`, `edited`: scores (N, F). Returns {"changed": all changed moved
    (None if the edit changed nothing), "kept": all others stayed, "passed": both}."""
    out = []
    for i, change in enumerate(changes):
        delta = edited[i] - source[i]
        moved = [delta[findings.index(f)] * sign > margin for f, sign in change.items()]
        stayed = [abs(delta[j]) <= margin for j, f in enumerate(findings) if f not in change]
        changed_ok = all(moved) if moved else None
        kept_ok = all(stayed)
        out.append({"changed": changed_ok, "kept": kept_ok, "passed": bool(changed_ok) and kept_ok})
    return out
