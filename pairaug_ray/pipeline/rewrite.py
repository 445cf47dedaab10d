"""The `rewrite` job: new reports for the real pairs of a manifest, resumably.

    read_manifest(corpus) -> keep ok rows of the configured splits
      -> expand_tasks (one task per pair x mode x sample; skips what is done)
      -> <back-end> on an actor pool (streaming, Ray Data progress bars)
      -> append to <output>/manifest/ -> finalize (one row per pair_id) -> outcome counts

The output is a pair dataset whose rows are the new (report, parent image) pairs: `origin` inter,
intra or augtext, `parent_id` the real pair, `source_report`/`source_image_uri` what they came from.
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.data import ActorPoolStrategy
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig, RewriteConfig
from pairaug_ray.manifest import read_manifest, write_info, write_manifest
from pairaug_ray.pipeline.common import check_output_identity, outcome_summary
from pairaug_ray.resume import finalize, scan_output
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.rewrite import LocalRewriter, OpenAIRewriter, RulesRewriter, expand_tasks

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


def _pool(size: int, calls_per_actor: int | None = None) -> ActorPoolStrategy:
    return ActorPoolStrategy(min_size=1, max_size=size, max_concurrent_calls_per_actor=calls_per_actor)


def run_backend(tasks: ray.data.Dataset, cfg: JobConfig) -> ray.data.Dataset:
    rc = cfg.rewrite
    common = {"batch_size": rc.batch_size, "batch_format": "pyarrow"}
    if rc.backend == "rules":
        return tasks.map_batches(
            RulesRewriter,
            fn_constructor_kwargs={"cfg": rc, "run_seed": cfg.run.seed},
            compute=_pool(rc.rules.actors),
            **common,
        )
    if rc.backend == "openai":
        return tasks.map_batches(
            OpenAIRewriter,
            fn_constructor_kwargs={"cfg": rc, "run_seed": cfg.run.seed},
            # Several blocks in flight per actor, so the client's semaphore stays full across block
            # boundaries instead of draining to the slowest request of each block.
            compute=_pool(rc.openai.actors, calls_per_actor=4),  # type: ignore[union-attr]
            num_cpus=0.5,  # the actor mostly waits on the network
            **common,
        )
    if rc.backend == "local":
        lc = rc.local
        assert lc is not None
        return tasks.map_batches(
            LocalRewriter,
            fn_constructor_kwargs={"cfg": rc, "run_seed": cfg.run.seed, "cache_dir": cfg.models.cache_dir},
            compute=_pool(lc.actors),
            num_gpus=lc.num_gpus or None,
            **common,
        )
    raise ValueError(f"back-end {rc.backend!r} is not an actor-pool back-end")


def _tasks(cfg: JobConfig, src: str, out: str) -> ray.data.Dataset:
    rc = cfg.rewrite
    state = scan_output(out, retry_errors=rc.retry_errors)
    if state.removed_files:
        log.warning("removed %d partially written file(s) from %s", len(state.removed_files), out)
    if state.done:
        log.info("resuming: %d rows of %s are done and will be skipped", len(state.done), out)
    ds = read_manifest(src).filter(
        expr=(col(schema.STATUS) == schema.STATUS_OK) & col(schema.SPLIT).is_in(list(rc.splits))
    )
    tasks = ds.map_batches(expand_tasks, fn_kwargs={"cfg": rc, "done": state.done}, batch_format="pyarrow")
    # Small blocks stream through the back-end and reach storage one file at a time, so a crash
    # loses at most the blocks in flight (a big input file would otherwise be one block).
    return tasks.repartition(target_num_rows_per_block=rc.rows_per_file)


def rewrite_job(
    cfg: JobConfig,
    *,
    input_root: str | None = None,
    output_root: str | None = None,
    vllm_processor_factory: Any = None,
) -> dict[str, Any]:
    """Rewrite the reports of `input_root` (default: the corpus) into `output_root` (default: the
    rewrite output). Returns outcome counts; resumes when the output already holds rows."""
    init_ray(cfg.ray)
    rc = cfg.rewrite
    src = storage.absolute(input_root or cfg.corpus_dir())
    out = storage.absolute(output_root or cfg.rewrite_dir())
    identity = output_identity(rc)
    check_output_identity(out, "rewrite", identity)
    write_info(out, {"rewrite": identity, "input": src, "complete": False})

    if rc.backend == "vllm":
        _run_vllm_passes(cfg, src, out, identity, vllm_processor_factory)
    else:
        write_manifest(
            run_backend(_tasks(cfg, src, out), cfg),
            out,
            mode="append",
            info={"rewrite": identity, "input": src},
        )
    report = finalize(out)
    summary = outcome_summary(out)
    summary["finalize"] = {"rows": report.rows, "duplicates_removed": report.duplicates_removed}
    write_info(out, {"rewrite": identity, "input": src, "complete": True, "outcomes": summary})
    return summary


def _run_vllm_passes(cfg: JobConfig, src: str, out: str, identity: dict, factory: Any) -> None:
    from pairaug_ray.models.refs import resolve_model
    from pairaug_ray.stages import rewrite_vllm

    rc = cfg.rewrite
    assert rc.vllm is not None
    model = resolve_model(rc.vllm.model, cfg.models.cache_dir)
    config = rewrite_vllm.processor_config(rc, model.path)
    build = factory or rewrite_vllm.build_processor
    for attempt in range(1, rc.max_attempts + 1):
        tasks = _tasks(cfg, src, out)
        skipped = tasks.filter(expr=col(schema.STATUS) == schema.STATUS_SKIPPED)
        todo = tasks.filter(expr=col(schema.STATUS).is_null())
        processor = build(
            config,
            rewrite_vllm.Preprocess(rc, cfg.run.seed, attempt),
            rewrite_vllm.Postprocess(rc, cfg.run.seed, attempt, model_id=rc.vllm.model),
        )
        done = processor(todo)
        write_manifest(
            done.union(skipped) if attempt == 1 else done,
            out,
            mode="append",
            info={"rewrite": identity, "input": src},
        )
        finalize(out)
        if not scan_output(out, retry_errors=True).errors:
            break
