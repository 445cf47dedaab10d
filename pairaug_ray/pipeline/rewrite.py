"""The `rewrite` job: new reports for the real pairs of a manifest, resumably.

    read_manifest(corpus [, reports]) -> keep ok rows of the configured splits
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

import pyarrow.compute as pc
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
    task_keys,
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


def _tasks(cfg: JobConfig, sources: list[str], done: frozenset[str]) -> ray.data.Dataset:
    rc = cfg.rewrite
    parts = [
        read_manifest(src).filter(
            expr=(col(schema.STATUS) == schema.STATUS_OK) & col(schema.SPLIT).is_in(list(rc.splits))
        )
        for src in sources
    ]
    ds = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:])
    tasks = ds.map_batches(expand_tasks, fn_kwargs={"cfg": rc, "done": done}, batch_format="pyarrow")
    # Small blocks stream through the back-end and reach storage one file at a time, so a crash
    # loses at most the blocks in flight (a big input file would otherwise be one block).
    return tasks.repartition(target_num_rows_per_block=rc.rows_per_file)


def expected_tasks(cfg: JobConfig, sources: list[str], done: frozenset[str]) -> int:
    """How many task rows `_tasks` will make, from a column read of the inputs (for the progress bar)."""
    rc = cfg.rewrite
    total = 0
    for src in sources:
        table = read_columns(
            src,
            [schema.PAIR_ID, schema.PATIENT_ID, schema.SOURCE_KIND],
            where=(pc.field(schema.STATUS) == schema.STATUS_OK)
            & pc.field(schema.SPLIT).isin(list(rc.splits)),
        )
        pids, patients, kinds = (table.column(c).to_pylist() for c in table.column_names)
        drawn = in_rewrite_draw(rc, patients, pids)
        total += sum(
            rewrite_pair_id(pid, mode, k) not in done
            for pid, kind, keep in zip(pids, kinds, drawn, strict=True)
            if keep
            for mode, k in task_keys(rc, kind)
        )
    return total


def rewrite_inputs(cfg: JobConfig) -> list[str]:
    """What `pairaug rewrite` reads by default: the corpus's pairs, and its reports without images."""
    sources = [cfg.corpus_dir()] if cfg.corpus.has_pairs else []
    reports = cfg.reports_dir()
    if reports is not None:
        validated = cfg.validated_reports_dir()
        sources.append(validated if storage.exists(storage.join(validated, "manifest")) else reports)
    return sources


def rewrite_job(
    cfg: JobConfig,
    *,
    input_root: str | list[str] | None = None,
    output_root: str | None = None,
    vllm_processor_factory: Any = None,
) -> dict[str, Any]:
    """Rewrite the reports of `input_root` (one dataset or several; default: the corpus and its
    reports) into `output_root` (default: the rewrite output). Returns outcome counts; resumes
    when the output already holds rows."""
    rc = cfg.rewrite
    check_endpoint(cfg)
    init_ray(cfg.ray)
    roots = [input_root] if isinstance(input_root, str) else (input_root or rewrite_inputs(cfg))
    sources = [storage.absolute(r) for r in roots]
    src = sources[0]  # the input the output's lineage follows
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
            todo=lambda done: _tasks(cfg, sources, done),
            process=process,
            retry_errors=rc.retry_errors,
            passes=passes,
            expected=lambda done: expected_tasks(cfg, sources, done),
            also_inputs=tuple(sources[1:]),
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
        decided = tasks.filter(expr=col(schema.STATUS).is_not_null())  # skipped, or as_written copies
        todo = tasks.filter(expr=col(schema.STATUS).is_null())
        processor = build(
            config,
            rewrite_vllm.Preprocess(rc, cfg.run.seed, attempt),
            rewrite_vllm.Postprocess(rc, cfg.run.seed, attempt, model_id=rc.vllm.model),
        )
        return processor(todo).union(decided)

    return process
