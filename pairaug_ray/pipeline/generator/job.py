"""The `finetune-t2i` job: train the generator that InterAug and IntraAug draw with.

RoentGen's recipe (docs/generator.md, models/t2i.py) on Ray Train: the real pairs' train split,
decoded and tokenised in Ray Data (stages/t2i_data.py), a TorchTrainer whose workers run
pipeline/generator/loop.py, checkpoints (with a grid of samples each) under the run's storage, a restart
from the latest one after a failure or a rerun. The result is a pipeline folder that
`models.diffusion` and `generate.model` accept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from ray.data import ActorPoolStrategy
from ray.data.expressions import col

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError, JobConfig
from pairaug_ray.manifest import read_manifest
from pairaug_ray.models.refs import resolve_model
from pairaug_ray.pipeline.common import real_pairs_root, train_storage
from pairaug_ray.pipeline.generator.loop import META_FILE, PIPELINE_DIR, SAMPLES_FILE, t2i_loop_per_worker
from pairaug_ray.runtime import init_ray, work_selector
from pairaug_ray.stages.t2i_data import PreprocessT2I

log = logging.getLogger(__name__)

# Reports drawn at every checkpoint: one per CheXpert-5 finding and a normal study, worded as the
# phantom's (and MIMIC-CXR's) impressions are.
SAMPLE_REPORTS = [
    "No acute cardiopulmonary process.",
    "Moderate cardiomegaly.",
    "Large right pleural effusion.",
    "Moderate pulmonary edema.",
    "Right lower lobe consolidation.",
    "Left lower lobe atelectasis.",
]


def finetune_t2i_job(
    cfg: JobConfig, *, step_hook: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Train (or resume) `finetune_t2i.name`; returns the summary with the pipeline's path."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    f = cfg.finetune_t2i
    init_ray(cfg.ray)
    base_path = resolve_model(f.base, cfg.models.cache_dir).path if f.base else None
    real_root = f.real or _real_pairs(cfg)
    pairs = read_manifest(real_root).filter(
        expr=(col(schema.STATUS) == schema.STATUS_OK) & (col(schema.SPLIT) == "train")
    )
    n_pairs = pairs.count()
    if n_pairs < f.batch_size:
        raise ConfigError(
            f"{n_pairs} training pairs in {real_root} are fewer than one batch (finetune_t2i.batch_size {f.batch_size})"
        )
    size = f.image_size
    data = (
        pairs.randomize_block_order(seed=cfg.run.seed)
        .map_batches(
            PreprocessT2I,
            fn_constructor_kwargs={
                "size": size,
                "text": f.text,
                "tokenizer_source": storage.join(base_path, "tokenizer") if base_path else None,
            },
            compute=ActorPoolStrategy(min_size=1, max_size=max(1, f.num_workers)),
            num_cpus=0.5,
            batch_size=16,
            batch_format="pyarrow",
        )
        # Decoded once: every epoch then reads tensors (a phantom or a MIMIC-CXR shard at 64-512 px).
        .materialize()
    )
    run_dir = storage.join(cfg.t2i_dir(), f.name)
    storage_path, fs = train_storage(cfg.t2i_dir())
    meta = {
        "base": f.base,
        "from_scratch": f.base is None,
        "data": {"root": real_root, "pairs": n_pairs, "text": f.text},
        "image_size": size,
        "batch_size": f.batch_size,
        "num_workers": f.num_workers,
    }
    total = f.steps + (f.vae_steps if f.base is None else 0)
    what = (
        f"{'from scratch' if f.base is None else f.base} at {size} px on {n_pairs} pairs, "
        f"{f.num_workers} worker(s), {total} steps"
    )
    with (
        progress.stage("finetune", what) as shown,
        progress.bar("finetune", total=total, unit="steps") as counter,
    ):
        trainer = TorchTrainer(
            t2i_loop_per_worker,
            train_loop_config={
                "cfg": f.model_dump(mode="json"),
                "seed": cfg.run.seed,
                "base_path": base_path,
                "sample_reports": f.sample_reports or SAMPLE_REPORTS,
                "meta": meta,
                "progress": counter,
                "step_hook": step_hook,
            },
            scaling_config=ScalingConfig(
                num_workers=f.num_workers,
                use_gpu=f.use_gpu,
                resources_per_worker={"CPU": f.cpus_per_worker, **({"GPU": 1} if f.use_gpu else {})},
                # CPU workers keep off GPU-labelled nodes, GPU workers off CPU-labelled ones.
                label_selector=work_selector(1 if f.use_gpu else 0) if f.num_workers else None,
            ),
            run_config=RunConfig(
                name=f.name,
                storage_path=storage_path,
                storage_filesystem=fs,
                checkpoint_config=CheckpointConfig(num_to_keep=f.keep_checkpoints),
                failure_config=FailureConfig(max_failures=f.max_failures),
            ),
            datasets={"train": data},
        )
        result = trainer.fit()
        if result.error:
            raise result.error
        m = result.metrics or {}
        shown["line"] = f"step {m.get('step')}, loss {m.get('loss', float('nan')):.4f}"
    checkpoint = _uri(result.checkpoint.path, fs) if result.checkpoint else None
    final = json.loads(storage.read_text(storage.join(checkpoint, META_FILE))) if checkpoint else {}
    summary = {
        "run": run_dir,
        "metrics": result.metrics,
        "checkpoint": checkpoint,
        "pipeline": storage.join(checkpoint, PIPELINE_DIR) if checkpoint else None,
        "samples": storage.join(checkpoint, SAMPLES_FILE) if checkpoint else None,
        "history": final.get("state", {}).get("history", []),
        "restored_from": final.get("state", {}).get("restored_from", []),
        **meta,
    }
    storage.write_json(storage.join(run_dir, "t2i_summary.json"), summary)
    return summary


def _real_pairs(cfg: JobConfig) -> str:
    """The augment job's validated corpus when there is one, else the corpus (built if it is the
    phantom's or MIMIC-CXR's and not built yet)."""
    root = real_pairs_root(cfg)
    if root == cfg.validated_dir():
        return root
    from pairaug_ray.pipeline.prepare import prepare_corpus

    return prepare_corpus(cfg)


def _uri(path: str, fs: Any) -> str:
    return f"s3://{path}" if fs is not None else path


def format_finetune_t2i(summary: dict[str, Any]) -> str:
    m = summary.get("metrics") or {}
    return "\n".join(
        [
            f"trained the generator {'from scratch' if summary['from_scratch'] else 'from ' + str(summary['base'])} "
            f"on {summary['data']['pairs']} pairs at {summary['image_size']} px with {summary['num_workers']} worker(s)",
            f"  step {m.get('step')}, loss {m.get('loss', float('nan')):.4f}, {m.get('samples_per_s', 0):.1f} samples/s",
            f"  pipeline  {summary['pipeline']}   (use it as models.diffusion or generate.model)",
            f"  samples   {summary['samples']}",
            f"  summary   {summary['run']}/t2i_summary.json",
        ]
    )
