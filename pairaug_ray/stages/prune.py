"""PairAug's two pruning rules, applied to stored scores (see stages/score.py for the scores).

- InterAug keeps a pair when S_a > tau (so does a report drawn as written, origin as_written).
- IntraAug (hybrid consistency) keeps a pair when each of S1, S2, S3 exceeds its mean over all
  IntraAug pairs of the run minus epsilon. The means are global: pipeline/prune.py computes them
  over the whole scored output first, then every batch is filtered with the same thresholds.
- AugText paraphrases keep the real image and are not pruned, as in PairAug.
- Optionally (prune.near_duplicate, not in PairAug): InterAug drops an image whose nearest real
  training image is closer than a threshold (a memorised image, not a new patient).
- Optionally (prune.reader_verdicts, PairAug's reader study put to use): any synthetic pair a
  reader study rejected is dropped, whatever its scores (reader_study/verdicts.py).

Every row keeps its scores and gets `kept`, `pruning` (the thresholds used, as JSON) and, when not
kept, `prune_reason`, so the rules can be redone with other thresholds in seconds.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pairaug_ray import schema

INTRA_SCORES = schema.INTRA_SCORE_COLUMNS


def prune_batch(
    batch: pa.Table,
    *,
    tau: float,
    epsilon: float,
    means: dict[str, float | None],
    nearest: dict[str, tuple[float, str]] | None = None,
    near_threshold: float | None = None,
    vetoed: dict[str, str] | None = None,
) -> pa.Table:
    """Set `kept`, `pruning` and `prune_reason` on every row from its scores, the run's global
    IntraAug means and, with `nearest` (InterAug pair id -> (cosine, training pair id)), the
    near-duplicate threshold; `vetoed` (pair id -> reason) the pairs a reader study rejected."""
    thresholds = {k: (None if m is None else m - epsilon) for k, m in means.items()}
    info = json.dumps(
        {
            "tau": tau,
            "epsilon": epsilon,
            "means": means,
            "thresholds": thresholds,
            "near_duplicate_threshold": near_threshold,
            "reader_vetoes": len(vetoed or {}),
        },
        sort_keys=True,
    )
    rows = batch.to_pylist()
    for r in rows:
        origin = r.get(schema.ORIGIN)
        reasons = [] if r.get(schema.STATUS) == schema.STATUS_OK else [f"status {r.get(schema.STATUS)}"]
        if not reasons and origin in schema.TEXT_TO_IMAGE_ORIGINS:
            score = r.get(schema.SCORE_A)
            if score is None or not score > tau:
                reasons.append(f"S_a {score} is not above tau {tau}")
            if nearest is not None and r[schema.PAIR_ID] in nearest:
                sim, train_id = nearest[r[schema.PAIR_ID]]
                r[schema.NEAREST_TRAIN_SIMILARITY] = sim
                if near_threshold is not None and sim > near_threshold:
                    reasons.append(
                        f"near-duplicate of training pair {train_id} (cosine {sim:.4f} > {near_threshold:.4f})"
                    )
        elif not reasons and origin == schema.ORIGIN_INTRA:
            reasons += [
                f"{k} {r.get(k)} is not above its mean - epsilon {thresholds[k]}"
                for k in INTRA_SCORES
                if r.get(k) is None or thresholds[k] is None or not r[k] > thresholds[k]
            ]
        if not reasons and vetoed and r.get(schema.PAIR_ID) in vetoed:
            reasons.append(vetoed[r[schema.PAIR_ID]])
        # AugText paraphrases keep the real image: PairAug does not prune them.
        r[schema.KEPT] = not reasons
        r[schema.PRUNE_REASON] = "; ".join(reasons) or None
        r[schema.PRUNING] = info
    return schema.rows_to_table(rows)
