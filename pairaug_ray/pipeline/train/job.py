"""The `train` job: check the config against the cluster, gather the pairs, run the TorchTrainer,
and summarise the run (metrics, checkpoints, the model folder to use as a scorer)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import ray

from pairaug_ray import progress, storage
from pairaug_ray.config import ConfigError, JobConfig, TrainConfig
from pairaug_ray.pipeline.common import train_storage
from pairaug_ray.pipeline.train.data import preprocessed, training_pairs, validation_rows
from pairaug_ray.pipeline.train.loop import META_FILE, MODEL_DIR, train_loop_per_worker
from pairaug_ray.runtime import init_ray, started_local_ray, work_selector

log = logging.getLogger(__name__)


def _should_cache(t: TrainConfig, pairs: int, size: int) -> bool:
    if t.cache_preprocessed != "auto":
        return t.cache_preprocessed == "always"
    if t.augment_image.enabled:
        return False
    tensor_bytes = pairs * (3 * size * size * 4 + 2 * 77 * 8 + 64)
    store = ray.available_resources().get("object_store_memory", 0)
    return tensor_bytes < 0.25 * store


MIN_STEPS_PER_PASS = 50


def _repeats_per_pass(steps_per_epoch: int, total_steps: int) -> int:
    """How many times one pass of the trainer goes over the data: enough for MIN_STEPS_PER_PASS
    steps per pass, never more than the run needs."""
    if steps_per_epoch >= MIN_STEPS_PER_PASS:
        return 1
    return max(1, min(-(-total_steps // steps_per_epoch), -(-MIN_STEPS_PER_PASS // steps_per_epoch)))


def check_train_cpus(t: TrainConfig) -> None:
    """On a local Ray, workers that reserve every CPU leave none for the ingest actors: it would hang.
    Not on a cluster: an idle autoscaling cluster has 0 CPUs until the job's demand adds workers."""
    if not started_local_ray():
        return
    total = ray.cluster_resources().get("CPU", 0)
    reserved = max(1, t.num_workers) * t.cpus_per_worker + 0.5
    if not t.use_gpu and reserved > total:
        raise ConfigError(
            f"train.num_workers x train.cpus_per_worker ({max(1, t.num_workers)} x {t.cpus_per_worker}) plus 0.5 CPU "
            f"for data preprocessing exceeds the cluster's {total:g} CPUs; lower train.cpus_per_worker (e.g. 0.5)"
        )


def train_job(cfg: JobConfig, *, step_hook: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or resume) `train.name` under the train storage; returns metrics and checkpoint paths.

    `step_hook(state)`, if given, runs on every worker after every optimiser step (it is pickled to
    the workers): instrumentation, and the tests' fault injection."""
    from pairaug_ray.models.clip import PRESETS

    t = cfg.train
    _check_medcutmix(t, PRESETS)
    init_ray(cfg.ray)
    check_train_cpus(t)
    pairs, info = training_pairs(cfg)
    validation = validation_rows(cfg)
    info["validation"] = {"pairs": len(validation), "labels": t.validation_labels} if validation else None
    steps_per_epoch = info["pairs"] // t.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{info['pairs']} training pairs are fewer than one global batch (train.batch_size {t.batch_size})"
        )
    size = _vision_setting(t, PRESETS, "image_size")
    storage_path, fs = train_storage(cfg.train_dir())
    seed = cfg.run.seed
    pooled = info["real"]["pairs"] + info["synthetic"].get("pool", 0)
    info["cached"] = _should_cache(t, pooled, size)
    total_steps = t.steps or steps_per_epoch * t.epochs
    # A few pairs for many steps (a low-data run with train.steps): each pass over the data costs Ray
    # Train a fixed start-up of about a second, which would outweigh the steps themselves, so one pass
    # goes over the data `repeats` times (nothing is copied; each repeat draws its own synthetic sample).
    repeats = _repeats_per_pass(steps_per_epoch, total_steps) if t.steps else 1
    if info["cached"]:
        # Preprocessed once: every epoch then reads tensors instead of re-decoding images (the loader
        # stall in docs/benchmarks.md); Ray Train still shuffles locally per epoch. A synthetic_ratio
        # sample is drawn from the cached tensors, afresh each epoch.
        real = preprocessed(pairs.real, t, size, seed, cfg.models.cache_dir).materialize()
        syn = (
            preprocessed(pairs.synthetic, t, size, seed, cfg.models.cache_dir).materialize()
            if pairs.synthetic
            else None
        )
        passes = [pairs.one_epoch(real, syn, seed * 1009 + r) for r in range(repeats)]
        train_data = passes[0].union(*passes[1:]) if repeats > 1 else passes[0]
    else:
        # Sampled before decoding: only the drawn images are read.
        passes = [pairs.one_epoch(pairs.real, pairs.synthetic, seed * 1009 + r) for r in range(repeats)]
        rows = passes[0].union(*passes[1:]) if repeats > 1 else passes[0]
        train_data = preprocessed(rows, t, size, seed, cfg.models.cache_dir)
    steps_per_epoch *= repeats
    info["repeats_per_pass"] = repeats
    info["sampled_epochs"] = pairs.synthetic is not None and pairs.synthetic_fraction < 1.0
    meta = {
        "preset": t.preset,
        "init": t.init,
        "text": t.text,
        "image_size": size,
        "data": info,
        "batch_size": t.batch_size,
        "num_workers": t.num_workers,
        "optimizer": t.optimizer,
        "lr": t.lr,
    }
    meta["total_steps"] = total_steps
    what = f"{t.preset} CLIP on {info['pairs']} pairs, {t.num_workers} worker(s), {total_steps} steps"
    with (
        progress.stage("train", what) as shown,
        progress.bar("train", total=total_steps, unit="steps") as counter,
    ):
        result = _fit(
            cfg, train_data, meta, steps_per_epoch, validation, storage_path, fs, step_hook, counter
        )
        shown["line"] = (
            f"step {result.metrics.get('step')}, loss {result.metrics.get('loss', float('nan')):.4f}"
        )
    return _summary(cfg, result, meta)


def _fit(cfg, train_data, meta, steps_per_epoch, validation, storage_path, fs, step_hook, counter):
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    t = cfg.train
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": t.model_dump(mode="json"),
            "seed": cfg.run.seed,
            "steps_per_epoch": steps_per_epoch,
            "sampled_epochs": meta["data"]["sampled_epochs"],
            "models_cache_dir": cfg.models.cache_dir,
            "total_steps": meta["total_steps"],
            "meta": meta,
            "step_hook": step_hook,
            "progress": counter,
            "validation": validation,
            # Ray Train's local mode does not persist checkpoints; the loop writes them here itself.
            "local_dir": storage.join(cfg.train_dir(), t.name) if t.num_workers == 0 else None,
        },
        scaling_config=ScalingConfig(
            num_workers=t.num_workers,
            use_gpu=t.use_gpu,
            resources_per_worker={"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})},
            # CPU workers keep off GPU-labelled nodes, GPU workers off CPU-labelled ones.
            label_selector=work_selector(1 if t.use_gpu else 0) if t.num_workers else None,
        ),
        run_config=RunConfig(
            name=t.name,
            storage_path=storage_path,
            storage_filesystem=fs,
            # With val_auc, the kept checkpoints are the best by it (the ensemble's top-k); Ray Train
            # always keeps the latest too, which a restart resumes from.
            checkpoint_config=CheckpointConfig(
                num_to_keep=t.keep_checkpoints,
                checkpoint_score_attribute="val_auc" if validation else None,
                checkpoint_score_order="max",
            ),
            failure_config=FailureConfig(max_failures=t.max_failures),
        ),
        datasets={"train": train_data},
    )
    log.info("training %s: %s", t.preset, json.dumps(meta["data"], default=str))
    result = trainer.fit()
    if result.error:
        raise result.error
    return result


def _summary(cfg: JobConfig, result: Any, meta: dict[str, Any]) -> dict[str, Any]:
    t = cfg.train
    run_dir = storage.join(cfg.train_dir(), t.name)
    fs = train_storage(run_dir)[1]  # None on local disk: checkpoint paths are then plain paths
    if t.num_workers == 0:  # local mode: the loop wrote its checkpoints to storage itself
        steps = sorted(p for p in storage.list_files(run_dir, META_FILE) if "/checkpoint_step" in p)
        checkpoint = steps[-1].rsplit("/", 1)[0].removeprefix("s3://") if steps else None
    else:
        checkpoint = result.checkpoint.path if result.checkpoint else None
    final = json.loads(storage.read_text(f"{_uri(checkpoint, fs)}/{META_FILE}")) if checkpoint else {}
    state = final.get("state", {})
    summary = {
        "run": run_dir,
        "metrics": result.metrics,
        "checkpoint": _uri(checkpoint, fs),
        "model": _uri(f"{checkpoint}/{MODEL_DIR}", fs) if checkpoint else None,
        "history": state.get("history", []),
        "restored_from": state.get("restored_from", []),
        "val_history": state.get("val_history", []),
        "stopped_early": state.get("stopped_early"),
        **meta,
    }
    if t.early_stopping_patience:
        # Trained until validation stopped improving: the run's model is its best checkpoint by
        # val_auc (chosen on the validation split, never on a test set).
        best = _best_checkpoint(run_dir)
        if best is not None:
            summary["best"] = best
            summary["checkpoint"], summary["model"] = best["checkpoint"], best["model"]
    storage.write_json(storage.join(run_dir, "train_summary.json"), summary)
    return summary


def _best_checkpoint(run_dir: str) -> dict[str, Any] | None:
    """The kept checkpoint with the highest val_auc (Ray Train keeps the best few by it, and the latest)."""
    found = []
    for meta_file in storage.list_files(run_dir, META_FILE):
        meta = json.loads(storage.read_text(meta_file))
        if meta.get("val_auc") is not None:
            folder = meta_file.rsplit("/", 1)[0]
            found.append((meta["val_auc"], -meta.get("step", 0), folder, meta.get("step")))
    if not found:
        return None
    val_auc, _, folder, step = max(found)
    return {"checkpoint": folder, "model": f"{folder}/{MODEL_DIR}", "step": step, "val_auc": val_auc}


def _check_medcutmix(t: TrainConfig, presets: dict) -> None:
    if not t.medcutmix.enabled:
        return
    layers = _vision_setting(t, presets, "num_hidden_layers")
    if t.medcutmix.layer >= layers:
        raise ConfigError(
            f"train.medcutmix.layer {t.medcutmix.layer}: the image encoder has layers 0..{layers - 1}"
        )


def _uri(path: str | None, fs) -> str | None:
    return None if path is None else (f"s3://{path}" if fs is not None else path)


def _vision_setting(t: TrainConfig, presets: dict, key: str) -> int:
    """A vision-tower setting of the model to train: from the init checkpoint's config, else the preset."""
    if t.init:
        from transformers import CLIPConfig

        return int(getattr(CLIPConfig.from_pretrained(t.init).vision_config, key))
    return int(presets[t.preset]["vision_config"][key])


def format_train(summary: dict[str, Any]) -> str:
    m = summary.get("metrics") or {}
    d = summary["data"]
    syn = d.get("synthetic") or {}
    return "\n".join(
        [
            f"trained {summary['preset']} on {d['pairs']} pairs ({d['real']['pairs']} real, {syn.get('pairs', 0)} synthetic "
            f"{'+'.join(syn.get('origins', [])) or ''}) with {summary['num_workers']} worker(s)",
            f"  step {m.get('step')}, epoch {m.get('epoch')}, loss {m.get('loss', float('nan')):.4f}, "
            f"{m.get('samples_per_s', 0):.1f} samples/s",
            *(
                [
                    f"  validation zero-shot AUC {scored[-1]['val_auc']:.4f} at step "
                    f"{scored[-1]['step']} (best {max(v['val_auc'] for v in scored):.4f})"
                ]
                if (scored := [v for v in summary.get("val_history") or [] if v.get("val_auc") is not None])
                else []
            ),
            *(
                [f"  stopped early at step {summary['stopped_early']['step']}: validation stopped improving"]
                if summary.get("stopped_early")
                else []
            ),
            *(
                [
                    f"  best by validation: step {summary['best']['step']}, AUC {summary['best']['val_auc']:.4f}"
                ]
                if summary.get("best")
                else []
            ),
            f"  checkpoint  {summary['checkpoint']}",
            f"  model       {summary['model']}   (a transformers CLIP folder: use it as score.model)",
            f"  summary     {summary['run']}/train_summary.json",
        ]
    )
