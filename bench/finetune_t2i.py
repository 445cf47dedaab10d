"""Generator training throughput: `pairaug finetune-t2i` on Ray Train against a plain diffusers loop.

Both train the same UNet and text encoder of the same Stable Diffusion-shaped pipeline (a saved
scratch pipeline, so the job skips the VAE phase) on the same phantom pairs, batch and optimiser
(AdamW, clipping, EMA of the UNet). The plain loop is the diffusers text-to-image example's inner
loop in one process over tensors decoded up front: VAE encode, DDPM noise, text encoder, UNet, MSE.
The job decodes in Ray Data, trains in a Ray Train worker and reports samples/s over the second half
of its steps (after its first checkpoint); the plain loop is timed over the same steps.

    .venv/bin/python bench/finetune_t2i.py --patients 40 --size 32 --steps 60
    python bench/finetune_t2i.py --gpu --size 512 --steps 200 --base /models/sd15   # on a GPU node
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers.training_utils import EMAModel  # noqa: E402
from memory import PeakMemory  # noqa: E402

from pairaug_ray import images, schema  # noqa: E402
from pairaug_ray.config import PhantomCorpusConfig, RayConfig, parse_config  # noqa: E402
from pairaug_ray.corpora.phantom import build_phantom  # noqa: E402
from pairaug_ray.manifest import read_manifest  # noqa: E402
from pairaug_ray.models import t2i  # noqa: E402
from pairaug_ray.pipeline.generator import finetune_t2i_job  # noqa: E402
from pairaug_ray.runtime import init_ray  # noqa: E402
from pairaug_ray.stages.t2i_data import vae_pixels  # noqa: E402
from pairaug_ray.text.train_text import training_text  # noqa: E402


def plain_loop(rows: list[dict], base: str, size: int, batch: int, steps: int, device: str) -> float:
    """samples/s of the diffusers-style loop over its second half of `steps`."""
    parts = t2i.load_parts(base)
    pixels = torch.from_numpy(
        np.stack([vae_pixels(images.read_image(r[schema.IMAGE_URI]), size) for r in rows])
    )
    ids = t2i.tokenize(parts.tokenizer, [training_text(r, "impression") for r in rows])
    vae, unet, text_encoder, scheduler = (
        parts.vae.to(device).requires_grad_(False),
        parts.unet.to(device).train(),
        parts.text_encoder.to(device).train(),
        parts.noise_scheduler,
    )
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-2)
    ema = EMAModel(unet.parameters(), decay=0.999)
    started = seen = 0
    for step in range(steps):
        if step == steps // 2:
            if device == "cuda":
                torch.cuda.synchronize()
            started, seen = time.perf_counter(), 0
        idx = torch.randint(0, len(rows), (batch,))
        with torch.no_grad():
            latents = vae.encode(pixels[idx].to(device)).latent_dist.sample() * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), device=device)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        hidden = text_encoder(ids[idx].to(device))[0]
        loss = F.mse_loss(unet(noisy, timesteps, hidden).sample.float(), noise.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema.step(unet.parameters())
        seen += batch
    if device == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--size", type=int, default=32, help="training resolution (pixels)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--base", default=None, help="a diffusers pipeline folder; default: a scratch pipeline")
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    gpus = torch.cuda.device_count() if args.gpu else 0
    device = "cuda" if args.gpu else "cpu"
    init_ray(
        RayConfig(num_cpus=os.cpu_count(), num_gpus=gpus, object_store_memory_mb=512, progress_bars=False)
    )
    with tempfile.TemporaryDirectory() as tmp:
        base = args.base or t2i.save_pipeline(t2i.scratch_parts(args.size, seed=0), os.path.join(tmp, "base"))
        corpus = os.path.join(tmp, "corpus")
        build_phantom(PhantomCorpusConfig(patients=args.patients, size=max(64, args.size), seed=2), corpus)
        rows = [
            r
            for r in read_manifest(corpus).take_all()
            if r[schema.SPLIT] == "train" and r[schema.STATUS] == "ok"
        ]
        print(
            f"UNet + text encoder at {args.size} px, {len(rows)} phantom pairs, batch {args.batch}, {args.steps} steps, "
            f"on {'GPU' if args.gpu else f'CPU ({os.cpu_count()} cores)'}"
        )
        with PeakMemory() as mem:
            plain = plain_loop(rows, base, args.size, args.batch, args.steps, device)
        print(f"  plain diffusers loop: {plain:.1f} samples/s; peak RSS {mem.peak_mib:.0f} MiB")
        cfg = parse_config(
            {
                "run": {"output_dir": os.path.join(tmp, "run"), "seed": 0},
                "ray": {"progress_bars": False},
                "corpus": {"kind": "manifest", "manifest": corpus},
                "finetune_t2i": {
                    "base": base,
                    "image_size": args.size,
                    "steps": args.steps,
                    "batch_size": args.batch,
                    "num_workers": 1,
                    "use_gpu": args.gpu,
                    "cpus_per_worker": float(os.cpu_count() if not args.gpu else 8),
                    "checkpoint_every_steps": args.steps // 2,
                    "sample_steps": 2,
                    "lr": 1e-4,
                    "ema_decay": 0.999,
                },
            },
            "bench",
        )
        with PeakMemory() as mem:
            t0 = time.perf_counter()
            summary = finetune_t2i_job(cfg)
            wall = time.perf_counter() - t0
        rate = summary["metrics"]["samples_per_s"]  # the second half: after the first checkpoint
        print(
            f"  Ray Train, 1 worker: {rate:.1f} samples/s (ratio {rate / plain:.2f} to the plain loop), "
            f"job wall {wall:.0f} s; peak RSS {mem.peak_mib:.0f} MiB"
        )


if __name__ == "__main__":
    main()
