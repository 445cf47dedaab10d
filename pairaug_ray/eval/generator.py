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

import warnings
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
    with warnings.catch_warnings():
        # A singular product (fewer images than dimensions) is expected with small sets; it is
        # handled below, as FID's reference implementation does, by offsetting both diagonals.
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(covmean).all():
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
    best_other = best_other[np.isfinite(best_other)]
    if not len(best_other):
        raise ValueError("calibrating the near-duplicate threshold needs images of 2 or more patients")
    return float(np.quantile(best_other, quantile))


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


def label_matrix(rows: Sequence[Mapping[str, object]], findings: Sequence[str]) -> np.ndarray:
    """(N, F) labels for the classifier from CheXpert-coded label columns: 1 present, 0 absent or not
    mentioned, NaN uncertain (left out), as the evaluation datasets code them."""
    from pairaug_ray.schema import label_column

    out = np.zeros((len(rows), len(findings)))
    for i, r in enumerate(rows):
        for j, f in enumerate(findings):
            v = r.get(label_column(f))
            out[i, j] = np.nan if v == -1 else (1.0 if v == 1 else 0.0)
    return out


class FindingClassifier:
    """One logistic regression per finding on frozen image features (standardised), trained on real
    training images; a finding with one class in training predicts its prior."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, findings: Sequence[str], c: float = 1.0):
        import warnings

        from sklearn.linear_model import LogisticRegression

        self.findings = list(findings)
        x = np.asarray(features, np.float64)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-8
        x = (x - self.mean) / self.std
        self.models: list[object] = []
        self.priors: list[float] = []
        for j in range(len(self.findings)):
            y = labels[:, j]
            keep = ~np.isnan(y)
            yk = y[keep].astype(int)
            self.priors.append(float(yk.mean()) if len(yk) else 0.0)
            if len(np.unique(yk)) < 2:
                self.models.append(None)
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence chatter on tiny sets
                self.models.append(
                    LogisticRegression(C=c, max_iter=2000, class_weight="balanced").fit(x[keep], yk)
                )

    def scores(self, features: np.ndarray) -> np.ndarray:
        """(N, F) probabilities of each finding."""
        x = (np.asarray(features, np.float64) - self.mean) / self.std
        cols = [
            np.full(len(x), prior) if m is None else m.predict_proba(x)[:, 1]  # type: ignore[attr-defined]
            for m, prior in zip(self.models, self.priors, strict=True)
        ]
        return np.stack(cols, axis=1) if cols else np.zeros((len(x), 0))


class ZeroShotClassifier:
    """A CheXzero-style CLIP as the finding classifier (a checkpoint the user points to): per finding,
    the softmax over the image embedding's cosines with the finding's positive and negative prompt
    embeddings (L, D each); nothing is trained."""

    def __init__(self, positive: np.ndarray, negative: np.ndarray, findings: Sequence[str]):
        self.positive, self.negative, self.findings = positive, negative, list(findings)

    def scores(self, features: np.ndarray) -> np.ndarray:
        from pairaug_ray.eval.zeroshot import zero_shot_probabilities

        return zero_shot_probabilities(_normalise(features), self.positive, self.negative)


def pair_similarities(features: np.ndarray, patients: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of every pair of distinct images: (same-patient pairs, other-patient pairs)."""
    x = _normalise(features)
    sims = x @ x.T
    patients = np.asarray(patients)
    upper = np.triu(np.ones_like(sims, dtype=bool), k=1)
    same = (patients[:, None] == patients[None, :]) & upper
    return sims[same], sims[~(patients[:, None] == patients[None, :]) & upper]


class PatientVerifier:
    """Same patient or not, from the cosine similarity of two images' features, with the threshold
    that balances the two error rates on real images of known patients (the equal error rate); and
    the threshold for re-identification against a whole training set (identification_threshold)."""

    def __init__(self, features: np.ndarray, patients: Sequence[str]):
        same, other = pair_similarities(features, patients)
        if not len(same) or not len(other):
            raise ValueError("calibrating the patient verifier needs patients with 2+ images and 2+ patients")
        candidates = np.unique(np.concatenate([same, other]))
        # Equal error rate: the threshold where missing a same-patient pair is as likely as accepting
        # an other-patient pair.
        miss = np.searchsorted(np.sort(same), candidates, side="left") / len(same)
        accept = 1.0 - np.searchsorted(np.sort(other), candidates, side="left") / len(other)
        best = int(np.argmin(np.abs(miss - accept)))
        self.threshold = float(candidates[best])
        self.equal_error_rate = float((miss[best] + accept[best]) / 2)

        # Re-identification searches all training images (1:N), so a pairwise threshold would
        # accept some other patient almost always. Its threshold balances, per probe image, the
        # best match among the *same* patient's other images against the best among other patients'.
        x = _normalise(features)
        sims = x @ x.T
        np.fill_diagonal(sims, -np.inf)
        pats = np.asarray(patients)
        same_mask = pats[:, None] == pats[None, :]
        best_same = np.where(same_mask, sims, -np.inf).max(1)
        best_other = np.where(~same_mask, sims, -np.inf).max(1)
        probes = np.isfinite(best_same) & np.isfinite(best_other)
        bs, bo = np.sort(best_same[probes]), np.sort(best_other[probes])
        cands = np.unique(np.concatenate([bs, bo]))
        miss = np.searchsorted(bs, cands, side="left") / len(bs)
        accept = 1.0 - np.searchsorted(bo, cands, side="left") / len(bo)
        k = int(np.argmin(np.abs(miss - accept)))
        self.identification_threshold = float(cands[k])
        self.identification_error_rate = float((miss[k] + accept[k]) / 2)

    def same(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(verdict, similarity) for image pairs a[i], b[i]."""
        sim = (_normalise(a) * _normalise(b)).sum(1)
        return sim >= self.threshold, sim

    def auc(self, features: np.ndarray, patients: Sequence[str]) -> float | None:
        """How well similarity separates same- from other-patient pairs on held-out real images."""
        same, other = pair_similarities(features, patients)
        if not len(same) or not len(other):
            return None
        y = np.r_[np.ones(len(same)), np.zeros(len(other))]
        return float(roc_auc_score(y, np.r_[same, other]))


def pixel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Root-mean-square difference of two decoded grey radiographs on a 0-1 scale, b resized to a's
    shape (a generated image and a training image need not share a size)."""
    from PIL import Image

    from pairaug_ray.images import to_uint8

    a8, b8 = to_uint8(np.asarray(a)), to_uint8(np.asarray(b))
    if b8.shape != a8.shape:
        b8 = np.asarray(Image.fromarray(b8).resize(a8.shape[::-1], Image.Resampling.BILINEAR))
    return float(np.sqrt(((a8.astype(np.float32) - b8.astype(np.float32)) ** 2).mean()) / 255.0)


def auc_summary(
    scores: np.ndarray, labels: np.ndarray, findings: Sequence[str], *, seed: int = 0, n_resamples: int = 1000
) -> dict[str, object]:
    """Per-finding AUC, their mean, and a 95% bootstrap interval of the mean (images resampled)."""
    per = finding_aucs(scores, labels, findings)
    valid = [v for v in per.values() if v is not None]
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(n_resamples):
        idx = rng.integers(0, len(scores), len(scores))
        vals = [v for v in finding_aucs(scores[idx], labels[idx], findings).values() if v is not None]
        if vals:
            means.append(np.mean(vals))
    interval = [float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))] if means else None
    positives = {f: int(np.nansum(labels[:, j])) for j, f in enumerate(findings)}
    return {
        "per_finding": per,
        "mean": float(np.mean(valid)) if valid else None,
        "interval": interval,
        "n": len(scores),
        "positives": positives,
    }


def fidelity(
    real: np.ndarray,
    real_ids: Sequence[str],
    generated: np.ndarray,
    generated_parents: Sequence[str],
    *,
    seed: int = 0,
    splits: int = 5,
) -> dict[str, object]:
    """Fréchet distance of generated images to real ones against the real-vs-real floor, at equal
    sample sizes (the distance is biased upwards by small samples, so a floor from larger sets
    would flatter nobody fairly).

    For each of `splits` random halvings of the real held-out set into A and B: the images drawn from
    B's reports against A, and B's real images against A (the floor). Returns both per split, the
    ratio's mean and range, and the distance of all generated to all real images."""
    real_ids = list(real_ids)
    pos = {pid: i for i, pid in enumerate(real_ids)}
    parents = np.array([pos.get(p, -1) for p in generated_parents])
    rows = []
    rng = np.random.default_rng(seed)
    for _ in range(splits):
        in_b = np.zeros(len(real_ids), bool)
        in_b[rng.permutation(len(real_ids))[: len(real_ids) // 2]] = True
        gen_b = np.flatnonzero((parents >= 0) & in_b[np.clip(parents, 0, None)])
        if len(gen_b) < 2:
            continue
        real_b = parents[gen_b]  # the same reports' real images: equal sizes, equal content
        a = real[~in_b]
        fd_gen, fd_floor = frechet_distance(generated[gen_b], a), frechet_distance(real[real_b], a)
        rows.append(
            {"generated": fd_gen, "floor": fd_floor, "ratio": fd_gen / max(fd_floor, 1e-12), "n": len(gen_b)}
        )
    if not rows:
        raise ValueError("too few generated images drawn from the held-out reports to compare")
    ratios = [r["ratio"] for r in rows]
    return {
        "frechet_distance": float(np.mean([r["generated"] for r in rows])),
        "floor": float(np.mean([r["floor"] for r in rows])),
        "ratio": float(np.mean(ratios)),
        "ratio_range": [float(min(ratios)), float(max(ratios))],
        "splits": rows,
        "all_generated_vs_all_real": frechet_distance(generated, real),
    }


def followup_pairs(
    patients: Sequence[str], order: Sequence[str], labels: np.ndarray, findings: Sequence[str]
) -> tuple[list[tuple[int, int]], list[dict[str, int]]]:
    """Real follow-up studies as a reference for the edit check: consecutive studies of one patient
    (by `order`, e.g. the study id) whose labels turn at least one finding present (+1) or absent
    (-1); unknown labels are not changes."""
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(patients):
        by_patient.setdefault(p, []).append(i)
    pairs, changes = [], []
    for idx in by_patient.values():
        idx = sorted(idx, key=lambda i: order[i])
        for a, b in zip(idx, idx[1:], strict=False):
            change = {
                f: (1 if labels[b, j] == 1 else -1)
                for j, f in enumerate(findings)
                if not np.isnan(labels[a, j]) and not np.isnan(labels[b, j]) and labels[a, j] != labels[b, j]
            }
            if change:
                pairs.append((a, b))
                changes.append(change)
    return pairs, changes
