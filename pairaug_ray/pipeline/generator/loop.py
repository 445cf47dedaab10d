"""What each Ray Train worker runs to train the generator (pairaug_ray/models/t2i.py for the maths).

Two phases, one step counter each: from scratch, the VAE first (`vae_steps`; its latent scale is
measured when it ends), then the UNet and, with `train_text_encoder`, the text encoder. Each worker
wraps what it trains for DDP (`prepare_model`), streams its shard of preprocessed pairs, and steps
AdamW with gradient clipping; rank 0 keeps an EMA of the UNet's weights and, every
`checkpoint_every_steps`, saves a checkpoint: the pipeline with the EMA UNet (a folder
`StableDiffusionPipeline.from_pretrained` loads), the training state to resume from, and a grid of
samples for the fixed reports. A `step_hook` in the config runs after every step (the tests' faults).
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from pairaug_ray import storage
from pairaug_ray.config import FinetuneT2IConfig

log = logging.getLogger(__name__)

STATE_FILE, PIPELINE_DIR, SAMPLES_FILE, META_FILE = "t2i_state.pt", "pipeline", "samples.png", "t2i_meta.json"


def autocast_dtype(f: FinetuneT2IConfig, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or f.mixed_precision == "no":
        return None
    if f.mixed_precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[f.mixed_precision]


def _batches(shard, per_worker: int):
    """Batches forever: a pass over the shard per epoch, as many epochs as the steps need."""
    while True:
        empty = True
        for batch in shard.iter_torch_batches(
            batch_size=per_worker, drop_last=True, local_shuffle_buffer_size=256
        ):
            empty = False
            yield batch
        if empty:
            raise ValueError(f"no full batch of {per_worker} pairs per worker in the training data")


def t2i_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch
    from diffusers.training_utils import EMAModel

    from pairaug_ray.models import t2i

    f = FinetuneT2IConfig(**config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = ray.train.torch.get_device()
    seed = config["seed"]
    torch.manual_seed(seed)
    parts = (
        t2i.load_parts(config["base_path"])
        if config.get("base_path")
        else t2i.scratch_parts(f.image_size, seed)
    )
    scratch = not config.get("base_path")
    state: dict[str, Any] = {
        "phase": "vae" if scratch and f.vae_steps else "unet",
        "vae_step": 0,
        "step": 0,
        "history": [],
        "restored_from": [],
    }
    saved: dict[str, Any] | None = None
    if checkpoint := ray.train.get_checkpoint():
        with checkpoint.as_directory() as d:
            saved = torch.load(Path(d) / STATE_FILE, map_location="cpu", weights_only=False)
        state = saved["state"]
        state["restored_from"] = [*state["restored_from"], [state["phase"], state["vae_step"], state["step"]]]
        for name in ("vae", "unet", "text_encoder"):
            getattr(parts, name).load_state_dict(saved[name])
        if saved.get("scaling_factor"):
            parts.vae.register_to_config(scaling_factor=saved["scaling_factor"])
        log.info(
            "resuming the generator at %s step %d",
            state["phase"],
            state["vae_step"] if state["phase"] == "vae" else state["step"],
        )
    for module in (parts.vae, parts.unet, parts.text_encoder):
        module.to(device)
    per_worker = f.batch_size // world
    batches = _batches(ray.train.get_dataset_shard("train"), per_worker)
    counter = config.get("progress") if rank == 0 else None
    step_hook = config.get("step_hook")
    generator = torch.Generator().manual_seed(seed + 1000 * rank + state["step"] + state["vae_step"])
    amp = autocast_dtype(f, device)

    def checkpoint_now(metrics: dict[str, Any], modules: dict[str, Any], ema: Any = None) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                out = Path(tmp)
                payload = {
                    "state": dict(state),
                    "vae": parts.vae.state_dict(),
                    "unet": parts.unet.state_dict(),
                    "text_encoder": parts.text_encoder.state_dict(),
                    "scaling_factor": parts.vae.config.scaling_factor,
                    **{k: v.state_dict() for k, v in modules.items()},
                }
                torch.save(payload, out / STATE_FILE)
                if state["phase"] == "unet":
                    unet = parts.unet
                    if ema is not None:
                        unet = type(parts.unet).from_config(parts.unet.config)
                        ema.copy_to(unet.parameters())
                    t2i.save_pipeline(parts, out / PIPELINE_DIR, unet=unet)
                    grid = t2i.sample_grid(
                        t2i.to_pipeline(parts, unet),
                        config["sample_reports"],
                        steps=f.sample_steps,
                        guidance=f.guidance_scale,
                        seed=seed,
                    )
                    grid.save(out / SAMPLES_FILE)
                    metrics["samples"] = SAMPLES_FILE
                (out / META_FILE).write_text(storage.json_text({**config["meta"], **metrics, "state": state}))
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)

    # --- the VAE, from scratch --------------------------------------------------------------------------
    if state["phase"] == "vae":
        vae = ray.train.torch.prepare_model(t2i.VAEObjective(parts.vae.train()))
        optimizer = torch.optim.AdamW(parts.vae.parameters(), lr=f.vae_lr, weight_decay=f.weight_decay)
        if saved is not None and "vae_optimizer" in saved:
            optimizer.load_state_dict(saved["vae_optimizer"])
        started, losses, since = time.perf_counter(), [], 0
        while state["vae_step"] < f.vae_steps:
            pixels = next(batches)["pixel_values"].to(device)
            loss, recon, kl = t2i.vae_loss(vae, pixels, generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parts.vae.parameters(), f.max_grad_norm)
            optimizer.step()
            state["vae_step"] += 1
            since += 1
            losses.append(recon)
            if counter is not None:
                counter.set.remote(state["vae_step"], phase="vae", loss=recon)
            if step_hook is not None:
                step_hook(state)
            if state["vae_step"] % f.checkpoint_every_steps == 0 or state["vae_step"] == f.vae_steps:
                if state["vae_step"] == f.vae_steps:
                    parts.vae.eval()
                    sample_batches = [next(batches)["pixel_values"].to(device) for _ in range(4)]
                    factor = torch.tensor(t2i.latent_scaling_factor(parts.vae, sample_batches), device=device)
                    if world > 1:  # one factor for every rank: the mean over their batches
                        torch.distributed.all_reduce(factor)
                        factor /= world
                    parts.vae.register_to_config(scaling_factor=float(factor))
                    state["history"].append(
                        {"phase": "vae", "step": state["vae_step"], "recon": _mean(losses)}
                    )
                    state["phase"] = "unet"
                metrics = {
                    "phase": "vae",
                    "vae_step": state["vae_step"],
                    "recon_loss": _mean(losses[-20:]),
                    "samples_per_s": since * f.batch_size / max(1e-9, time.perf_counter() - started),
                }
                checkpoint_now(metrics, {"vae_optimizer": optimizer})
                started, losses, since = time.perf_counter(), losses[-20:], 0
        del vae, optimizer

    # --- the UNet and the text encoder ----------------------------------------------------------------
    parts.vae.requires_grad_(False).eval()
    parts.text_encoder.requires_grad_(f.train_text_encoder)
    if f.gradient_checkpointing and device.type == "cuda":
        parts.unet.enable_gradient_checkpointing()
    groups = [{"params": list(parts.unet.parameters()), "lr": f.lr}]
    if f.train_text_encoder:
        groups.append({"params": list(parts.text_encoder.parameters()), "lr": f.text_lr or f.lr})
    optimizer = torch.optim.AdamW(groups, weight_decay=f.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / f.warmup_steps) if f.warmup_steps else 1.0
    )
    ema = EMAModel(parts.unet.parameters(), decay=f.ema_decay) if f.ema_decay and rank == 0 else None
    if saved is not None and "optimizer" in saved:
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        if ema is not None and "ema" in saved:
            ema.load_state_dict(saved["ema"])
    unet = ray.train.torch.prepare_model(parts.unet.train())
    text_encoder = (
        ray.train.torch.prepare_model(parts.text_encoder.train())
        if f.train_text_encoder
        else parts.text_encoder.eval()
    )
    empty_ids = t2i.tokenize(parts.tokenizer, [""])[0]
    vae_offset = f.vae_steps if f.base is None else 0
    started, losses, since = time.perf_counter(), [], 0
    while state["step"] < f.steps:
        batch = next(batches)
        pixels = batch["pixel_values"].to(device)
        ids = t2i.drop_text(batch["input_ids"], empty_ids, f.text_dropout, generator)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = t2i.diffusion_loss(
                parts, pixels, ids, generator=generator, unet=unet, text_encoder=text_encoder
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], f.max_grad_norm)
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.step(parts.unet.parameters())
        state["step"] += 1
        since += 1
        losses.append(float(loss.detach()))
        if counter is not None:
            # The bar counts every optimiser step of the job: the VAE's first when from scratch.
            counter.set.remote(vae_offset + state["step"], phase="unet", loss=losses[-1])
        if step_hook is not None:
            step_hook(state)
        if state["step"] % f.checkpoint_every_steps == 0 or state["step"] == f.steps:
            if state["step"] == f.steps:
                state["history"].append({"phase": "unet", "step": state["step"], "loss": _mean(losses)})
            metrics = {
                "phase": "unet",
                "step": state["step"],
                "loss": _mean(losses[-20:]),
                "samples_per_s": since * f.batch_size / max(1e-9, time.perf_counter() - started),
            }
            modules = {
                "optimizer": optimizer,
                "scheduler": scheduler,
                **({"ema": ema} if ema is not None else {}),
            }
            checkpoint_now(metrics, modules, ema)
            started, losses, since = time.perf_counter(), losses[-20:], 0


def _mean(values: list[float]) -> float:
    return sum(values) / max(1, len(values))
