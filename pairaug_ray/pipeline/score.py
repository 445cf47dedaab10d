"""The `score` job: PairAug's pair scores for every generated pair, resumably.

    read_manifest(generated) -> skip pairs already scored -> ScorePairs on its actor pool
      -> append to <output>/manifest/ -> finalize -> outcome counts

Every score is stored beside its pair, so pruning (pipeline/prune.py) can be redone with other
thresholds without scoring again.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pairs import read_columns
from pairaug_ray.pipeline.runner import ResumableStage, run_resumable
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.score import ScorePairs


def scorer_ref(cfg: JobConfig) -> str:
    """The scorer to use: score.model, else models.scorer, else the tiny one if built."""
    from pairaug_ray.pipeline.prepare import stage_model_ref

    return stage_model_ref(cfg, "scorer", cfg.score.model, "score.model")


def score_job(
    cfg: JobConfig, *, input_root: str | None = None, output_root: str | None = None
) -> dict[str, Any]:
    """Scores for every generated pair, resumably (rows already scored are skipped)."""
    init_ray(cfg.ray)
    s = cfg.score
    src = storage.absolute(input_root or cfg.generate_dir())
    out = storage.absolute(output_root or cfg.score_dir())
    model = scorer_ref(cfg)

    def todo(done: frozenset[str]) -> ray.data.Dataset:
        pairs = read_manifest(src)
        if done:
            pairs = pairs.filter(expr=~col(schema.PAIR_ID).is_in(sorted(done)))
        return pairs.repartition(target_num_rows_per_block=s.rows_per_file)

    def expected(done: frozenset[str]) -> int:
        return sum(pid not in done for pid in read_columns(src, [schema.PAIR_ID]).column(0).to_pylist())

    return run_resumable(
        ResumableStage(
            name="score",
            input=src,
            output=out,
            identity={"model": model, "kind": s.kind, "mode": s.mode, "original": s.original, "input": src},
            todo=todo,
            process=ScorePairs.plan(s, model_ref=model, cache_dir=cfg.models.cache_dir).apply,
            expected=expected,
            noun="pairs",
        )
    )
