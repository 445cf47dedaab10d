"""The `rewrite` job: new reports for the real pairs of a manifest, resumably.

    read_manifest(corpus) -> keep ok rows of the configured splits
      -> expand_tasks (one task per pair x mode x sample; skips what is done)
      -> <back-end> on an actor pool (streaming, Ray Data progress bars)
      -> append to <output>/manifest/ -> finalize (one row per pair_id) -> outcome counts

(the bookkeeping around the back-end is pipeline/runner.py's, as for every resumable stage)

The output is a pair dataset whose rows are the new (report, parent image) pairs: `origin` inter,
intra or augtext, `parent_id` the real pair, `source_report`/`source_image_uri` what they came from.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig, RewriteConfig
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pairs import read_columns
from pairaug_ray.pipeline.runner import ResumableStage, run_resumable
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.base import StagePlan
from pairaug_ray.stages.rewrite import (
    LocalRewriter,
    OpenAIRewriter,
    RulesRewriter,
    expand_tasks,
    in_rewrite_draw,
    rewrite_pair_id,
)

log = logging.getLogger(__name__)


def output_identity(cfg: RewriteConfig) -> dict[str, Any]:
    """The settings that shape each output row. A rerun into the same output must keep them; modes,
    n, splits and resources may change (new tasks are simply added)."""
    backend_cfg = getattr(cfg, cfg.backend)
    return {
        "backend": cfg.backend,
        "backend_settings": {
            k: v
            for k, v in backend_cfg.model_dump(mode="json").items()
            if k in ("model", "base_url", "min_flips", "max_flips")
        },
        "prompts": {m: cfg.prompt(m).digest() for m in ("inter", "intra", "paraphrase")},
        "sampling": {"temperature": cfg.temperature, "top_p": cfg.top_p, "max_tokens": cfg.max_tokens},
        "checks": {
            "min_words": cfg.min_words,
            "word_limit": cfg.word_limit,
            "word_tolerance": cfg.word_tolerance,
        },
    }


def rewriter_plan(cfg: JobConfig) -> StagePlan:
    """The actor-pool back-end of `rewrite.backend` (vllm runs through ray.data.llm instead)."""
    rc = cfg.rewrite
    if rc.backend == "rules":
        return RulesRewriter.plan(rc, cfg.run.seed)
    if rc.backend == "openai":
        return OpenAIRewriter.plan(rc, cfg.run.seed)
    if rc.backend == "local":
        return LocalRewriter.plan(rc, cfg.run.seed, cfg.models.cache_dir)
    raise ValueError(f"back-end {rc.backend!r} is not an actor-pool back-end")


def _tasks(cfg: JobConfig, src: str, done: frozenset[str]) -> ray.data.Dataset:
    rc = cfg.rewrite
    ds = read_manifest(src).filter(
        expr=(col(schema.STATUS) == schema.STATUS_OK) & col(schema.SPLIT).is_in(list(rc.splits))
    )
    tasks = ds.map_batches(expand_tasks, fn_kwargs={"cfg": rc, "done": done}, batch_format="pyarrow")
    # Small blocks stream through the back-end and reach storage one file at a time, so a crash
    # loses at most the blocks in flight (a big input file would otherwise be one block).
    return tasks.repartition(target_num_rows_per_block=rc.rows_per_file)


def expected_tasks(cfg: JobConfig, src: str, done: frozenset[str]) -> int:
    """How many task rows `_tasks` will make, from a column read of the input (for the progress bar)."""
    rc = cfg.rewrite
    table = read_columns(src, [schema.PAIR_ID, schema.STATUS, schema.SPLIT, schema.PATIENT_ID])
    pids, statuses, splits, patients = (table.column(c).to_pylist() for c in table.column_names)
    drawn = in_rewrite_draw(rc, patients)
    parents = [
        pid
        for pid, status, split, keep in zip(pids, statuses, splits, drawn, strict=True)
        if status == schema.STATUS_OK and split in rc.splits and keep
    ]
    return sum(
        rewrite_pair_id(pid, mode, k) not in done for pid in parents for mode in rc.modes for k in range(rc.n)
    )


def rewrite_job(
    cfg: JobConfig,
    *,
    input_root: str | None = None,
    output_root: str | None = None,
    vllm_processor_factory: Any = None,
) -> dict[str, Any]:
    """Rewrite the reports of `input_root` (default: the corpus) into `output_root` (default: the
    rewrite output). Returns outcome counts; resumes when the output already holds rows."""
    rc = cfg.rewrite
    check_endpoint(cfg)
    init_ray(cfg.ray)
    src = storage.absolute(input_root or cfg.corpus_dir())
    out = storage.absolute(output_root or cfg.rewrite_dir())
    if rc.backend == "vllm":
        process, passes = _vllm_process(cfg, vllm_processor_factory), rc.max_attempts
    else:
        process, passes = rewriter_plan(cfg).apply, 1

    return run_resumable(
        ResumableStage(
            name="rewrite",
            input=src,
            output=out,
            identity=output_identity(rc),
            todo=lambda done: _tasks(cfg, src, done),
            process=process,
            retry_errors=rc.retry_errors,
            passes=passes,
            expected=lambda done: expected_tasks(cfg, src, done),
        )
    )


def check_endpoint(cfg: JobConfig) -> None:
    """Refuse, before any work, to send reports to an endpoint the config does not allow."""
    if cfg.rewrite.backend == "openai" and cfg.rewrite.openai is not None:
        from pairaug_ray.models.openai_chat import check_endpoint as refuse_unless_allowed

        refuse_unless_allowed(cfg.rewrite.openai)


def _vllm_process(cfg: JobConfig, factory: Any):
    """Pass k of the vLLM back-end: the processor over the tasks left, seeded from attempt k."""
    from pairaug_ray.models.refs import resolve_model
    from pairaug_ray.stages import rewrite_vllm

    rc = cfg.rewrite
    assert rc.vllm is not None
    model = resolve_model(rc.vllm.model, cfg.models.cache_dir)
    config = rewrite_vllm.processor_config(rc, model.path)
    build = factory or rewrite_vllm.build_processor

    def process(tasks: ray.data.Dataset, counter: Any, attempt: int) -> ray.data.Dataset:
        skipped = tasks.filter(expr=col(schema.STATUS) == schema.STATUS_SKIPPED)
        todo = tasks.filter(expr=col(schema.STATUS).is_null())
        processor = build(
            config,
            rewrite_vllm.Preprocess(rc, cfg.run.seed, attempt),
            rewrite_vllm.Postprocess(rc, cfg.run.seed, attempt, model_id=rc.vllm.model),
        )
        return processor(todo).union(skipped)

    return process
