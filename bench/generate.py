"""Generation throughput: the Ray stages against a plain loop over the same pipeline, same run.

1. InterAug and IntraAug images/s of the Ray Data stage (actor pool) versus a plain in-process loop
   over the same pipeline and settings (goal: at least 0.8).
2. The cost of attention control: IntraAug's prompt-to-prompt call over the same two-prompt batch
   run without control (goal: at most 1.3x).

On a machine without a GPU it runs the tiny pipeline on CPU. With `--gpu` it builds the SD 1.5
sized architecture (RoentGen's size) with random weights, fp16 at 512 px, one actor per GPU.

    .venv/bin/python bench/generate.py --images 48 --size 128 --steps 20
    python bench/generate.py --gpu --images 64 --size 512 --steps 50      # on a GPU machine
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

import ray  # noqa: E402
import torch  # noqa: E402
from memory import PeakMemory  # noqa: E402
from ray.data import ActorPoolStrategy  # noqa: E402

from pairaug_ray import p2p, schema  # noqa: E402
from pairaug_ray.config import RayConfig, parse_config  # noqa: E402
from pairaug_ray.models.diffusion import load_sd_pipeline  # noqa: E402
from pairaug_ray.models.tiny import build_tiny_sd  # noqa: E402
from pairaug_ray.runtime import init_ray  # noqa: E402
from pairaug_ray.stages.generate import GenerateInter, GenerateIntra  # noqa: E402

SOURCE = "there is a small left pleural effusion. heart size is normal. no pneumothorax."
TARGETS = [
    "there is a large left pleural effusion. heart size is normal. no pneumothorax.",
    "no pleural effusion. the heart is enlarged. no pneumothorax.",
    "there is a small right pneumothorax. heart size is normal. no pleural effusion.",
]


def tasks(n: int, origin: str) -> list[dict]:
    return [
        {
            schema.PAIR_ID: f"img{i:06d}",
            schema.ORIGIN: origin,
            schema.REPORT: TARGETS[i % 3],
            schema.SOURCE_REPORT: SOURCE,
        }
        for i in range(n)
    ]


def plain_loop(model_dir: str, rows: list[dict], cfg, branch: str) -> float:
    """Images per second of the same pipeline and settings, in this process, no Ray."""
    pipe = load_sd_pipeline(model_dir, scheduler=cfg.scheduler, use_gpu=cfg.num_gpus > 0)
    h = w = cfg.height
    g = cfg.inter if branch == "inter" else cfg.intra
    warm = 1
    t0 = None
    for i, r in enumerate(rows):
        if i == warm:
            t0 = time.perf_counter()
        if branch == "inter":
            pipe(
                [r[schema.REPORT]],
                num_inference_steps=g.num_inference_steps,
                guidance_scale=g.guidance_scale,
                height=h,
                width=w,
                generator=[torch.Generator().manual_seed(i)],
                output_type="np",
            )
        else:
            prompts = [r[schema.SOURCE_REPORT], r[schema.REPORT]]
            ctrl = p2p.make_controller(pipe, prompts, g.num_inference_steps)
            p2p.run_with_controller(
                pipe,
                prompts,
                ctrl,
                num_inference_steps=g.num_inference_steps,
                guidance_scale=g.guidance_scale,
                height=h,
                width=w,
                generator=torch.Generator().manual_seed(i),
                output_type="np",
            )
    return (len(rows) - warm) / (time.perf_counter() - t0)


def ray_stage(model_dir: str, rows: list[dict], cfg, branch: str, actors: int, out: str) -> float:
    cls = GenerateInter if branch == "inter" else GenerateIntra
    ds = ray.data.from_arrow(schema.rows_to_table(rows)).repartition(target_num_rows_per_block=4)
    ds = ds.map_batches(
        cls,
        fn_constructor_kwargs={
            "cfg": cfg,
            "model_ref": model_dir,
            "cache_dir": "/tmp",
            "run_seed": 0,
            "out_root": out,
        },
        compute=ActorPoolStrategy(size=actors),
        num_gpus=cfg.num_gpus or None,
        num_cpus=cfg.num_cpus,
        batch_size=cfg.inter.batch_size if branch == "inter" else 1,
        batch_format="pyarrow",
    )
    first, n_after = None, 0
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        if first is None:
            first = time.perf_counter()
        else:
            n_after += batch.num_rows
    return n_after / (time.perf_counter() - first)


def control_overhead(model_dir: str, cfg, repeats: int) -> tuple[float, float]:
    """Seconds per IntraAug call with prompt-to-prompt control and for the same batch without it."""
    pipe = load_sd_pipeline(model_dir, scheduler=cfg.scheduler, use_gpu=cfg.num_gpus > 0)
    g, h = cfg.intra, cfg.height
    prompts = [SOURCE, TARGETS[0]]
    latent = p2p.initial_latent(pipe, h, h, torch.Generator().manual_seed(0))
    batch = latent.expand(2, *latent.shape[1:]).clone()

    def plain():
        pipe(
            prompts,
            num_inference_steps=g.num_inference_steps,
            guidance_scale=g.guidance_scale,
            height=h,
            width=h,
            latents=batch.clone(),
            output_type="np",
        )

    def controlled():
        ctrl = p2p.make_controller(pipe, prompts, g.num_inference_steps)
        p2p.run_with_controller(
            pipe,
            prompts,
            ctrl,
            num_inference_steps=g.num_inference_steps,
            guidance_scale=g.guidance_scale,
            height=h,
            width=h,
            latents=latent,
            output_type="np",
        )

    times = {}
    for name, fn in (("plain", plain), ("controlled", controlled)):
        fn()  # warm-up
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times[name] = (time.perf_counter() - t0) / repeats
    return times["controlled"], times["plain"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--gpu", action="store_true", help="SD 1.5-sized random weights, fp16, on the GPUs")
    ap.add_argument("--num-cpus", type=int, default=2)
    args = ap.parse_args()
    gpus = torch.cuda.device_count() if args.gpu else 0
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = os.path.join(tmp, "sd")
        build_tiny_sd(0, arch="sd15" if args.gpu else "tiny").save_pretrained(model_dir)
        # On CPU: two actors of one thread each against the plain loop's two threads (each actor asks
        # Ray for half a CPU, so that one CPU stays free for Ray Data's read and write tasks).
        actors, per_actor_cpus = (gpus, 1.0) if args.gpu else (2, 0.5)
        cfg = parse_config(
            {
                "generate": {
                    "height": args.size,
                    "width": args.size,
                    "num_gpus": 1 if args.gpu else 0,
                    "num_cpus": per_actor_cpus,
                    "inter": {"num_inference_steps": args.steps, "batch_size": 1},
                    "intra": {"num_inference_steps": args.steps},
                }
            }
        ).generate
        init_ray(
            RayConfig(num_cpus=args.num_cpus, num_gpus=gpus, object_store_memory_mb=512, progress_bars=False)
        )
        device = f"{gpus} x {torch.cuda.get_device_name(0)}" if args.gpu else f"CPU ({args.num_cpus} cores)"
        print(
            f"{'SD 1.5-sized' if args.gpu else 'tiny'} pipeline, {args.size} px, {args.steps} steps, PNDM, on {device}"
        )
        for branch in ("inter", "intra"):
            rows = tasks(args.images, branch)
            with PeakMemory() as mem_plain:
                plain = plain_loop(model_dir, rows[: max(4, args.images // 4)], cfg, branch)
            with PeakMemory() as mem_ray:
                staged = ray_stage(model_dir, rows, cfg, branch, actors, os.path.join(tmp, branch))
            per = f" ({staged / gpus:.2f} per GPU)" if args.gpu else ""
            print(
                f"  {branch}: plain loop {plain:.2f} images/s (peak RSS {mem_plain.peak_mib:.0f} MiB); "
                f"Ray stage, {actors} actors {staged:.2f} images/s{per} (peak RSS {mem_ray.peak_mib:.0f} MiB); "
                f"ratio {staged / plain:.2f}"
            )
        controlled, plain_s = control_overhead(model_dir, cfg, repeats=3)
        print(
            f"  attention control: {controlled:.3f} s per IntraAug call vs {plain_s:.3f} s without control = {controlled / plain_s:.2f}x"
        )


if __name__ == "__main__":
    main()
