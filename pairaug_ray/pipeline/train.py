"""The `train` job: a CheXzero-style CLIP on real plus synthetic pairs with Ray Train.

    pairs    real training pairs (+ kept synthetic pairs of the chosen origins, at a chosen ratio)
    ingest   Ray Data: decode, CheXzero preprocessing, AugImg, tokenise   (PreprocessPairs actors)
    train    TorchTrainer: DDP over workers (NCCL on GPU, gloo on CPU); each worker streams its
             shard with iter_torch_batches; symmetric InfoNCE over the global batch (negatives
             all-gathered with gradient)
    save     checkpoints every N steps and at each epoch end to storage_path (local or S3), each a
             transformers CLIP folder (usable as a pair scorer) plus the optimiser state

A rerun with the same `train.name` and storage resumes from the latest checkpoint with the same
step count; `FailureConfig(max_failures)` restarts a failed worker group the same way.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import ray
import torch
from ray.data import ActorPoolStrategy
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, JobConfig, TrainConfig
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pipeline.common import real_pairs_root
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.train_data import PreprocessPairs

log = logging.getLogger(__name__)

PAIR_COLUMNS = [
    schema.PAIR_ID,
    schema.IMAGE_URI,
    schema.REPORT,
    schema.FINDINGS,
    schema.IMPRESSION,
    schema.ORIGIN,
]
STATE_FILE, MODEL_DIR, META_FILE = "train_state.pt", "model", "train_meta.json"


# --- data -----------------------------------------------------------------------------------------------------


def _select(ds: ray.data.Dataset) -> ray.data.Dataset:
    return ds.map_batches(
        lambda t: schema.conform(t, all_optional=True).select(PAIR_COLUMNS), batch_format="pyarrow"
    )


def training_pairs(cfg: JobConfig) -> tuple[ray.data.Dataset, dict[str, Any]]:
    """The real training pairs and the synthetic ones the config asks for, and how many of each."""
    t = cfg.train
    real_root = t.real or real_pairs_root(cfg)
    real = read_manifest(real_root).filter(
        expr=(col(schema.STATUS) == schema.STATUS_OK) & (col(schema.SPLIT) == "train")
    )
    n_real = real.count()
    if n_real == 0:
        raise ConfigError(f"no real training pairs in {real_root} (status ok, split train)")
    info: dict[str, Any] = {"real": {"root": real_root, "pairs": n_real}, "synthetic": {}}
    ds = _select(real)
    if t.synthetic_origins:
        syn_root = t.synthetic or cfg.synthetic_dir()
        syn = read_manifest(syn_root).filter(
            expr=(col(schema.KEPT) == True)  # noqa: E712 (an expression, not a comparison)
            & (col(schema.STATUS) == schema.STATUS_OK)
            & col(schema.ORIGIN).is_in(list(t.synthetic_origins))
        )
        n_syn = syn.count()
        if t.synthetic_ratio is not None and n_syn:
            fraction = min(1.0, t.synthetic_ratio * n_real / n_syn)
            syn = syn.random_sample(fraction, seed=cfg.run.seed)
            n_syn = syn.count()
        info["synthetic"] = {
            "root": syn_root,
            "origins": list(t.synthetic_origins),
            "ratio": t.synthetic_ratio,
            "pairs": n_syn,
        }
        if n_syn:
            ds = ds.union(_select(syn))
    info["pairs"] = n_real + info["synthetic"].get("pairs", 0)
    # Materialised before the trainer starts: only the manifest rows (ids, paths, text; images are
    # decoded later, per batch), a few hundred MB for MIMIC-CXR. Reading them while the training
    # workers already hold their CPUs would leave the read tasks nothing to run on, on small clusters.
    return ds.materialize(), info


def validation_rows(cfg: JobConfig) -> list[dict[str, Any]]:
    """Real validation pairs with at least one label that has both classes (else none: val_auc is off)."""
    t = cfg.train
    if not t.validation:
        return []
    root = t.real or real_pairs_root(cfg)
    label_cols = [schema.label_column(lb) for lb in t.validation_labels]
    ds = read_manifest(root)
    if any(c not in ds.columns() for c in label_cols):
        log.warning("validation AUC off: %s has no label columns %s", root, label_cols)
        return []
    rows = (
        ds.filter(expr=(col(schema.STATUS) == schema.STATUS_OK) & (col(schema.SPLIT) == t.validation_split))
        .select_columns([schema.IMAGE_URI, *label_cols])
        .limit(t.validation_max_images)
        .take_all()
    )
    # Not mentioned counts as negative, uncertain is left out (as the evaluation does by default).
    for r in rows:
        r["labels"] = [None if r[c] == -1 else float(r[c] == 1) for c in label_cols]
    usable = [j for j in range(len(label_cols)) if len({r["labels"][j] for r in rows} - {None}) == 2]
    if not usable:
        log.warning(
            "validation AUC off: no label has both classes in %d %s rows", len(rows), t.validation_split
        )
        return []
    return [{"uri": r[schema.IMAGE_URI], "labels": r["labels"]} for r in rows]


def preprocessed(ds: ray.data.Dataset, t: TrainConfig, size: int, seed: int) -> ray.data.Dataset:
    return ds.randomize_block_order(seed=seed).map_batches(
        PreprocessPairs,
        fn_constructor_kwargs={"cfg": t, "size": size, "tokenizer_source": t.init, "seed": seed},
        compute=ActorPoolStrategy(min_size=1, max_size=max(1, t.num_workers)),
        num_cpus=0.5,
        batch_size=16,
        batch_format="pyarrow",
    )


# --- the loop on each worker ----------------------------------------------------------------------------------


def _optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)


def _lr_lambda(t: TrainConfig, total_steps: int):
    def factor(step: int) -> float:
        if t.warmup_steps and step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "cosine":
            progress = (step - t.warmup_steps) / max(1, total_steps - t.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return factor


def _autocast_dtype(t: TrainConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or t.mixed_precision == "no":
        return None
    if t.mixed_precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[t.mixed_precision]


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from pairaug_ray.models.clip import build_clip, image_size, make_processor, save_clip
    from pairaug_ray.models.contrastive import DualEncoder, clamp_logit_scale, clip_loss

    t = TrainConfig(**config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    steps_per_epoch, total_steps = config["steps_per_epoch"], config["steps_per_epoch"] * t.epochs
    torch.manual_seed(config["seed"])
    model = build_clip(t.preset, t.init, seed=config["seed"])
    processor = make_processor(image_size(model)) if rank == 0 else None
    optimizer = _optimizer(model, t)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(t, total_steps))
    state: dict[str, Any] = {"step": 0, "epoch": 0, "step_in_epoch": 0, "history": [], "restored_from": []}
    if checkpoint := ray.train.get_checkpoint():
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = saved["state"]
        state["restored_from"] = [*state.get("restored_from", []), state["step"]]
        log.info("resuming from step %d (epoch %d)", state["step"], state["epoch"])
    core = model
    model = ray.train.torch.prepare_model(DualEncoder(core))
    amp = _autocast_dtype(t, device)
    fail_at = config.get("fail_at_step")  # fault injection for the resume test
    per_worker = t.batch_size // max(1, world)
    tokenizer = None
    if t.medcutmix.enabled:
        from pairaug_ray.stages.train_data import load_tokenizer

        tokenizer = load_tokenizer(t.init)
    shard = ray.train.get_dataset_shard("train")
    val = _validation_tensors(config.get("validation") or [], t, image_size(core)) if rank == 0 else None

    def report(metrics: dict[str, Any], with_checkpoint: bool) -> None:
        if not with_checkpoint:
            ray.train.report(metrics)
            return
        if val is not None:
            from pairaug_ray.eval.zeroshot import validation_auc

            metrics["val_auc"] = validation_auc(
                core, val["tokenizer"], val["pixels"], val["y"], t.validation_labels
            )
            state.setdefault("val_history", []).append({"step": state["step"], "val_auc": metrics["val_auc"]})
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_clip(core, processor, Path(tmp) / MODEL_DIR)
                torch.save({"model": core.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "state": dict(state)}, Path(tmp) / STATE_FILE)  # fmt: skip
                (Path(tmp) / META_FILE).write_text(
                    json.dumps({**config["meta"], **metrics, "state": state}, indent=2, default=str)
                )
                ckpt = ray.train.Checkpoint.from_directory(tmp)
                if config.get("local_dir"):
                    # Ray Train's local mode (num_workers 0) keeps a reference to the folder instead
                    # of copying it to storage: put it there ourselves.
                    storage.upload_tree(
                        tmp, storage.join(config["local_dir"], f"checkpoint_step{state['step']:08d}")
                    )
                    ckpt = None
            ray.train.report(metrics, checkpoint=ckpt)

    model.train()
    for epoch in range(state["epoch"], t.epochs):
        remaining = steps_per_epoch - state["step_in_epoch"]
        started, waited, seen, losses = time.perf_counter(), 0.0, 0, []
        collate = None
        if t.medcutmix.enabled:
            from pairaug_ray.stages.train_data import MedCutMixCollate

            # Seeded by the epoch and the resume step, so a restarted run draws fresh mixes.
            collate = MedCutMixCollate(
                t.medcutmix, tokenizer, config["seed"] + 7919 * state["step"] + epoch, rank
            )
        # prefetch_batches 1: Ray runs collate functions in min(4, prefetch) threads; one thread keeps the
        # per-batch MedCutMix coin in batch order, identical on every rank.
        batches = iter(shard.iter_torch_batches(batch_size=per_worker, drop_last=True, collate_fn=collate, prefetch_batches=1,
                                                local_shuffle_buffer_size=t.shuffle_buffer or None))  # fmt: skip
        for _ in range(remaining):
            t0 = time.perf_counter()
            try:
                batch = next(batches)
            except StopIteration:
                break
            waited += time.perf_counter() - t0
            pixels = batch["pixel_values"].to(device)
            ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
            mix = _to_device(batch.get("mix"), device)
            with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
                img, txt, scale = model(pixels, ids, mask, mix)
            loss = clip_loss(img, txt, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            clamp_logit_scale(core.logit_scale)
            state["step"] += 1
            state["step_in_epoch"] += 1
            seen += pixels.shape[0] * world
            losses.append(float(loss.detach()))
            if t.medcutmix.enabled:
                # Every rank joins the reduction on every step, mixed or not, so that the collectives
                # stay paired even if ranks ever disagree about a batch.
                rows = (
                    mix["active"].sum()
                    if mix is not None
                    else torch.zeros((), dtype=torch.int64, device=device)
                )
                if world > 1:
                    torch.distributed.all_reduce(rows)
                state["mixed_batches"] = state.get("mixed_batches", 0) + int(mix is not None)
                state["mixed_rows"] = state.get("mixed_rows", 0) + int(rows)
            if fail_at is not None and state["step"] == fail_at and not Path(config["fail_marker"]).exists():
                Path(config["fail_marker"]).touch()
                raise RuntimeError(f"injected failure at step {fail_at}")
            if state["step"] % t.checkpoint_every_steps == 0 and state["step_in_epoch"] < steps_per_epoch:
                report(_metrics(state, losses, scheduler, seen, started, waited), with_checkpoint=True)
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        state["history"].append(
            {"epoch": epoch + 1, "step": state["step"], "loss": sum(losses) / max(1, len(losses))}
        )
        report(_metrics(state, losses, scheduler, seen, started, waited), with_checkpoint=True)


def _validation_tensors(rows: list[dict[str, Any]], t: TrainConfig, size: int) -> dict[str, Any] | None:
    """Rank 0's validation images, preprocessed once (CheXzero's preprocessing, no AugImg)."""
    if not rows:
        return None
    import numpy as np

    from pairaug_ray import images
    from pairaug_ray.models.clip import chexzero_pixels
    from pairaug_ray.stages.train_data import load_tokenizer

    pixels, ys = [], []
    for r in rows:
        try:
            pixels.append(chexzero_pixels(images.read_image(r["uri"]), size, t.pad_size))
            ys.append([np.nan if v is None else v for v in r["labels"]])
        except images.ImageReadError as e:
            log.warning("validation skips %s: %s", r["uri"], e)
    if not pixels:
        return None
    return {
        "pixels": torch.from_numpy(np.stack(pixels)),
        "y": np.asarray(ys, float),
        "tokenizer": load_tokenizer(t.init),
    }


def _to_device(mix: dict[str, Any] | None, device: torch.device) -> dict[str, Any] | None:
    if mix is None:
        return None
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in mix.items()}


def _metrics(
    state: dict, losses: list[float], scheduler, seen: int, started: float, waited: float
) -> dict[str, Any]:
    elapsed = max(1e-9, time.perf_counter() - started)
    return {
        "step": state["step"],
        "epoch": state["epoch"],
        "loss": sum(losses[-20:]) / max(1, len(losses[-20:])),
        "lr": scheduler.get_last_lr()[0],
        "samples_per_s": seen / elapsed,
        "data_wait_s": waited,
        **({"medcutmix_batches": state["mixed_batches"], "medcutmix_rows": state["mixed_rows"]}
           if "mixed_batches" in state else {}),
    }  # fmt: skip


# --- the job --------------------------------------------------------------------------------------------------


def _storage(uri: str):
    """Ray Train's storage_path and filesystem: S3 through s3fs (which honours AWS_ENDPOINT_URL)."""
    if storage.is_s3(uri):
        import pyarrow.fs
        import s3fs

        return uri.removeprefix("s3://"), pyarrow.fs.PyFileSystem(
            pyarrow.fs.FSSpecHandler(s3fs.S3FileSystem())
        )
    return storage.absolute(uri), None


def _should_cache(t: TrainConfig, pairs: int, size: int) -> bool:
    if t.cache_preprocessed != "auto":
        return t.cache_preprocessed == "always"
    if t.augment_image.enabled:
        return False
    tensor_bytes = pairs * (3 * size * size * 4 + 2 * 77 * 8 + 64)
    store = ray.available_resources().get("object_store_memory", 0)
    return tensor_bytes < 0.25 * store


def check_train_cpus(t: TrainConfig) -> None:
    """On a local Ray, workers that reserve every CPU leave none for the ingest actors: it would hang."""
    total = ray.cluster_resources().get("CPU", 0)
    reserved = max(1, t.num_workers) * t.cpus_per_worker + 0.5
    if not t.use_gpu and reserved > total:
        raise ConfigError(
            f"train.num_workers x train.cpus_per_worker ({max(1, t.num_workers)} x {t.cpus_per_worker}) plus 0.5 CPU "
            f"for data preprocessing exceeds the cluster's {total:g} CPUs; lower train.cpus_per_worker (e.g. 0.5)"
        )


def train_job(cfg: JobConfig, *, fail_at_step: int | None = None) -> dict[str, Any]:
    """Train (or resume) `train.name` under the train storage; returns metrics and checkpoint paths."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

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
    storage_path, fs = _storage(cfg.train_dir())
    train_data = preprocessed(pairs, t, size, cfg.run.seed)
    info["cached"] = _should_cache(t, info["pairs"], size)
    if info["cached"]:
        # Materialised once: every epoch then reads tensors instead of re-decoding images (the loader
        # stall in docs/benchmarks.md); Ray Train still shuffles locally per epoch.
        train_data = train_data.materialize()
    meta = {"preset": t.preset, "init": t.init, "text": t.text, "image_size": size, "data": info,
            "batch_size": t.batch_size, "num_workers": t.num_workers, "optimizer": t.optimizer, "lr": t.lr}  # fmt: skip
    marker = tempfile.mktemp(prefix="pairaug-fail-")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "train": t.model_dump(mode="json"),
            "seed": cfg.run.seed,
            "steps_per_epoch": steps_per_epoch,
            "meta": meta,
            "fail_at_step": fail_at_step,
            "fail_marker": marker,
            "validation": validation,
            # Ray Train's local mode does not persist checkpoints; the loop writes them here itself.
            "local_dir": storage.join(cfg.train_dir(), t.name) if t.num_workers == 0 else None,
        },  # fmt: skip
        scaling_config=ScalingConfig(
            num_workers=t.num_workers,
            use_gpu=t.use_gpu,
            resources_per_worker={"CPU": t.cpus_per_worker, **({"GPU": 1} if t.use_gpu else {})},
        ),  # fmt: skip
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
    log.info(
        "training %s on %d pairs (%d steps per epoch, %d epochs)",
        t.preset,
        info["pairs"],
        steps_per_epoch,
        t.epochs,
    )
    result = trainer.fit()
    if os.path.exists(marker):
        os.remove(marker)
    if result.error:
        raise result.error
    run_dir = storage.join(cfg.train_dir(), t.name)
    if t.num_workers == 0:  # local mode: the loop wrote its checkpoints to storage itself
        steps = sorted(p for p in storage.list_files(run_dir, META_FILE) if "/checkpoint_step" in p)
        checkpoint, fs = (
            (steps[-1].rsplit("/", 1)[0].removeprefix("s3://") if steps else None),
            _storage(run_dir)[1],
        )
    else:
        checkpoint = result.checkpoint.path if result.checkpoint else None
    final = json.loads(storage.read_text(f"{_uri(checkpoint, fs)}/{META_FILE}")) if checkpoint else {}
    summary = {"run": run_dir, "metrics": result.metrics, "checkpoint": _uri(checkpoint, fs),
               "model": _uri(f"{checkpoint}/{MODEL_DIR}", fs) if checkpoint else None,
               "history": final.get("state", {}).get("history", []),
               "restored_from": final.get("state", {}).get("restored_from", []),
               "val_history": final.get("state", {}).get("val_history", []), **meta}  # fmt: skip
    storage.write_text(
        storage.join(run_dir, "train_summary.json"), json.dumps(summary, indent=2, default=str)
    )
    return summary


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
    return "\n".join([
        f"trained {summary['preset']} on {d['pairs']} pairs ({d['real']['pairs']} real, {syn.get('pairs', 0)} synthetic "
        f"{'+'.join(syn.get('origins', [])) or ''}) with {summary['num_workers']} worker(s)",
        f"  step {m.get('step')}, epoch {m.get('epoch')}, loss {m.get('loss', float('nan')):.4f}, "
        f"{m.get('samples_per_s', 0):.1f} samples/s",
        *([f"  validation zero-shot AUC {summary['val_history'][-1]['val_auc']:.4f} at step "
           f"{summary['val_history'][-1]['step']} (best {max(v['val_auc'] for v in summary['val_history']):.4f})"]
          if summary.get("val_history") else []),
        f"  checkpoint  {summary['checkpoint']}",
        f"  model       {summary['model']}   (a transformers CLIP folder: use it as score.model)",
        f"  summary     {summary['run']}/train_summary.json",
    ])  # fmt: skip
