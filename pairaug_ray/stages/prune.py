"""PairAug's two pruning rules, applied to stored scores (see stages/score.py for the scores).

- InterAug keeps a pair when S_a > tau.
- IntraAug (hybrid consistency) keeps a pair when each of S1, S2, S3 exceeds its mean over all
  IntraAug pairs of the run minus epsilon. The means are global: pipeline/prune.py computes them
  over the whole scored output first, then every batch is filtered with the same thresholds.
- AugText paraphrases keep the real image and are not pruned, as in PairAug.

Every row keeps its scores and gets `kept` and `pruning` (the thresholds used, as JSON), so the
rules can be redone with other thresholds in seconds.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pairaug_ray import schema

INTRA_SCORES = schema.INTRA_SCORE_COLUMNS


def prune_batch(batch: pa.Table, *, tau: float, epsilon: float, means: dict[str, float | None]) -> pa.Table:
    """Set `kept` and `pruning` on every row from its scores and the run's global IntraAug means."""
    thresholds = {k: (None if m is None else m - epsilon) for k, m in means.items()}
    info = json.dumps(
        {"tau": tau, "epsilon": epsilon, "means": means, "thresholds": thresholds}, sort_keys=True
    )
    rows = batch.to_pylist()
    for r in rows:
        ok = r.get(schema.STATUS) == schema.STATUS_OK
        origin = r.get(schema.ORIGIN)
        if origin == schema.ORIGIN_INTER:
            kept = ok and r.get(schema.SCORE_A) is not None and r[schema.SCORE_A] > tau
        elif origin == schema.ORIGIN_INTRA:
            kept = ok and all(
                r.get(k) is not None and thresholds[k] is not None and r[k] > thresholds[k]
                for k in INTRA_SCORES
            )
        else:  # AugText paraphrases keep the real image: PairAug does not prune them
            kept = ok
        r[schema.KEPT] = bool(kept)
        r[schema.PRUNING] = info
    return schema.rows_to_table(rows)
