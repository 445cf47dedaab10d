"""What each Ray Train worker runs: the CheXzero-style CLIP training loop.

Each worker builds the model, wraps it for DDP (`prepare_model`), streams its shard of the
preprocessed pairs with `iter_torch_batches` (MedCutMix mixes batches as they are taken), and
minimises the symmetric InfoNCE over the global batch. Rank 0 saves checkpoints (a transformers
CLIP folder plus the optimiser state) with the validation zero-shot AUC, and reports the step to the
driver's progress bar. A `step_hook` in the config, if any, is called after every optimiser step
with the loop's state (instrumentation; the tests install one that injects a failure).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pairaug_ray import storage
from pairaug_ray.config import TrainConfig

log = logging.getLogger(__name__)

STATE_FILE, MODEL_DIR, META_FILE = "train_state.pt", "model", "train_meta.json"


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


def checkpoints_since_best(history: list[float | None], min_delta: float) -> int | None:
    """Checkpoints since the first one whose val_auc came within min_delta of the best (0: the last
    one did); None before any scored checkpoint. Unscored checkpoints (None, NaN) count as not improving."""
    scored = [(i, v) for i, v in enumerate(history) if v is not None and math.isfinite(v)]
    if not scored:
        return None
    best = max(v for _, v in scored)
    first = min(i for i, v in scored if v >= best - min_delta)
    return len(history) - 1 - first


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from pairaug_ray.models.clip import build_clip, image_size, make_processor, save_clip
    from pairaug_ray.models.contrastive import DualEncoder, clamp_logit_scale, clip_loss

    t = TrainConfig(**config["train"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    steps_per_epoch, total_steps = config["steps_per_epoch"], config["total_steps"]
    # A synthetic_ratio sample makes each epoch's length vary around steps_per_epoch: such an epoch
    # runs until its data ends, and train.steps runs as many epochs as the steps take.
    sampled = bool(config.get("sampled_epochs"))
    epochs = t.epochs if not t.steps else None
    torch.manual_seed(config["seed"])
    model = build_clip(t.preset, t.init, seed=config["seed"], cache_dir=config.get("models_cache_dir"))
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
    step_hook = config.get("step_hook")
    counter = config.get("progress") if rank == 0 else None  # the driver's progress bar
    per_worker = t.batch_size // max(1, world)
    tokenizer = None
    if t.medcutmix.enabled:
        from pairaug_ray.models.tokenizer import load_tokenizer

        tokenizer = load_tokenizer(t.init, config.get("models_cache_dir"))
    shard = ray.train.get_dataset_shard("train")
    val = (
        _validation_tensors(
            config.get("validation") or [], t, image_size(core), config.get("models_cache_dir")
        )
        if rank == 0
        else None
    )

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
        # Decided before the checkpoint is saved, so that the checkpoint (and the run's summary) says so.
        should_stop()
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_clip(core, processor, Path(tmp) / MODEL_DIR)
                torch.save(
                    {
                        "model": core.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "state": dict(state),
                    },
                    Path(tmp) / STATE_FILE,
                )
                (Path(tmp) / META_FILE).write_text(
                    storage.json_text({**config["meta"], **metrics, "state": state})
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

    def should_stop() -> bool:
        """Early stopping, at each checkpoint: rank 0 judges val_auc's history, every rank gets its
        answer (they must stop at the same step, or the next collective would hang); a stop is
        recorded in state["stopped_early"], which ends the loop."""
        if not t.early_stopping_patience:
            return False
        stop = torch.zeros((), dtype=torch.int64, device=device)
        if rank == 0:
            history = [h["val_auc"] for h in state.get("val_history", [])]
            since = checkpoints_since_best(history, t.early_stopping_min_delta)
            stop.fill_(int(since is not None and since >= t.early_stopping_patience))
        if world > 1:
            torch.distributed.broadcast(stop, src=0)
        if stop.item():
            state["stopped_early"] = {"step": state["step"], "patience": t.early_stopping_patience}
            log.info(
                "early stop at step %d: val_auc has not improved for %d checkpoints",
                state["step"],
                t.early_stopping_patience,
            )
        return bool(stop.item())

    model.train()
    while (
        state["step"] < total_steps
        and (epochs is None or state["epoch"] < epochs)
        and not state.get("stopped_early")
    ):
        epoch = state["epoch"]
        remaining = total_steps - state["step"]
        if not sampled:
            remaining = min(remaining, steps_per_epoch - state["step_in_epoch"])
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
        batches = iter(
            shard.iter_torch_batches(
                batch_size=per_worker,
                drop_last=True,
                collate_fn=collate,
                prefetch_batches=1,
                local_shuffle_buffer_size=t.shuffle_buffer or None,
            )
        )
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
            if counter is not None:
                counter.set.remote(state["step"], loss=losses[-1], epoch=epoch + 1)
            if step_hook is not None:
                step_hook(state)
            if (
                state["step"] % t.checkpoint_every_steps == 0
                and state["step_in_epoch"] < steps_per_epoch
                and state["step"] < total_steps
            ):
                report(_metrics(state, losses, scheduler, seen, started, waited), with_checkpoint=True)
                if state.get("stopped_early"):
                    break
        if not losses:  # an epoch with no batch (every rank agrees: the splits are equal)
            raise RuntimeError(f"epoch {epoch + 1} yielded no batch of {per_worker} pairs per worker")
        if state.get("stopped_early"):
            break  # stopped mid-epoch: the checkpoint at the stop was the last report
        state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        state["history"].append(
            {"epoch": epoch + 1, "step": state["step"], "loss": sum(losses) / max(1, len(losses))}
        )
        report(_metrics(state, losses, scheduler, seen, started, waited), with_checkpoint=True)


def _validation_tensors(
    rows: list[dict[str, Any]], t: TrainConfig, size: int, models_cache_dir: str | None
) -> dict[str, Any] | None:
    """Rank 0's validation images, preprocessed once (CheXzero's preprocessing, no AugImg)."""
    if not rows:
        return None
    import numpy as np

    from pairaug_ray import images
    from pairaug_ray.models.clip import chexzero_pixels
    from pairaug_ray.models.tokenizer import load_tokenizer

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
        "tokenizer": load_tokenizer(t.init, models_cache_dir),
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
        **(
            {"medcutmix_batches": state["mixed_batches"], "medcutmix_rows": state["mixed_rows"]}
            if "mixed_batches" in state
            else {}
        ),
    }
