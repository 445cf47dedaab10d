"""Pretraining throughput: Ray Train with 1 and 2 workers against a plain PyTorch loop, same run.

The plain loop preprocesses every pair up front (CheXzero preprocessing, tokenisation) and then
trains the same model, loss and optimiser on in-memory tensors in one process: the speed of the
model alone. The Ray runs decode and preprocess in Ray Data while training (as `pairaug train`
does); `data_wait_s` is the time the workers spent waiting for a batch (the loader stall).

    .venv/bin/python bench/train.py --patients 40 --epochs 3
    python bench/train.py --preset vit-b-32 --gpu --workers 1 8        # on a GPU node
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from memory import PeakMemory  # noqa: E402

from pairaug_ray import images, schema  # noqa: E402
from pairaug_ray.config import PhantomCorpusConfig, RayConfig, parse_config  # noqa: E402
from pairaug_ray.corpora.phantom import build_phantom  # noqa: E402
from pairaug_ray.manifest import read_manifest  # noqa: E402
from pairaug_ray.models.clip import PRESETS, build_clip, chexzero_pixels, tokenize  # noqa: E402
from pairaug_ray.models.contrastive import DualEncoder, clamp_logit_scale, clip_loss  # noqa: E402
from pairaug_ray.models.tokenizer import build_clip_tokenizer  # noqa: E402
from pairaug_ray.pipeline.train import train_job  # noqa: E402
from pairaug_ray.runtime import init_ray  # noqa: E402
from pairaug_ray.text.train_text import training_text  # noqa: E402


def plain_loop(rows: list[dict], preset: str, batch: int, epochs: int, device: str) -> tuple[float, float]:
    """(samples/s of training alone, seconds spent preprocessing up front)."""
    size = PRESETS[preset]["vision_config"]["image_size"]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tok = build_clip_tokenizer(tmp)
    pixels = torch.stack(
        [torch.from_numpy(chexzero_pixels(images.read_image(r[schema.IMAGE_URI]), size)) for r in rows]
    )
    ids, mask = (
        torch.from_numpy(a) for a in tokenize(tok, [training_text(r, "findings+impression") for r in rows])
    )
    prep = time.perf_counter() - t0
    model = DualEncoder(build_clip(preset, seed=0)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    steps = len(rows) // batch
    seen, started = 0, None
    for epoch in range(epochs):
        order = torch.randperm(len(rows))
        for s in range(steps):
            if epoch == 0 and s == 1:
                started, seen = time.perf_counter(), 0  # the first step warms up
            idx = order[s * batch : (s + 1) * batch]
            img, txt, scale = model(pixels[idx].to(device), ids[idx].to(device), mask[idx].to(device))
            loss = clip_loss(img, txt, scale)
            opt.zero_grad()
            loss.backward()
            opt.step()
            clamp_logit_scale(model.clip.logit_scale)
            seen += len(idx)
    if device == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started), prep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--gpu", action="store_true")
    args = ap.parse_args()
    gpus = torch.cuda.device_count() if args.gpu else 0
    init_ray(
        RayConfig(num_cpus=os.cpu_count(), num_gpus=gpus, object_store_memory_mb=512, progress_bars=False)
    )
    with tempfile.TemporaryDirectory() as tmp:
        corpus = os.path.join(tmp, "corpus")
        build_phantom(PhantomCorpusConfig(patients=args.patients, size=256, seed=2), corpus)
        rows = [r for r in read_manifest(corpus).take_all() if r[schema.SPLIT] == "train"]
        device = "cuda" if args.gpu else "cpu"
        print(
            f"{args.preset} CLIP, {len(rows)} real pairs, global batch {args.batch}, {args.epochs} epochs, "
            f"on {'GPU' if args.gpu else f'CPU ({os.cpu_count()} cores)'}"
        )
        with PeakMemory() as mem:
            plain, prep = plain_loop(rows, args.preset, args.batch, args.epochs, device)
        print(
            f"  plain PyTorch loop: {plain:.1f} samples/s (preprocessing up front {prep:.1f} s, "
            f"{len(rows) / prep:.0f} pairs/s); peak RSS {mem.peak_mib:.0f} MiB"
        )
        for n in args.workers:
            cpus = 0.5 if not args.gpu else 4
            cfg = parse_config(
                {
                    "run": {"output_dir": os.path.join(tmp, f"run{n}"), "seed": 0},
                    "corpus": {"kind": "manifest", "manifest": corpus},
                    "train": {
                        "preset": args.preset,
                        "num_workers": n,
                        "cpus_per_worker": cpus,
                        "use_gpu": args.gpu,
                        "batch_size": args.batch,
                        "epochs": args.epochs,
                        "optimizer": "adamw",
                        "lr": 5e-4,
                        "synthetic_origins": [],
                        "text": "findings+impression",
                        "checkpoint_every_steps": 10_000,
                    },
                }
            )
            with PeakMemory() as mem:
                t0 = time.perf_counter()
                summary = train_job(cfg)
                wall = time.perf_counter() - t0
            m = summary["metrics"]  # the last epoch: steady state
            print(
                f"  Ray Train, {n} worker(s): {m['samples_per_s']:.1f} samples/s in the last epoch "
                f"(ratio {m['samples_per_s'] / plain:.2f} to the plain loop), data wait {m['data_wait_s']:.1f} s of "
                f"that epoch, job wall {wall:.0f} s; peak RSS {mem.peak_mib:.0f} MiB"
            )
            print("    " + json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in m.items()}))


if __name__ == "__main__":
    main()
