"""What one GPU does per second for each stage, at the real model sizes, without Ray.

The capacity plan (docs/operations.md) turns a corpus size into GPU-hours from three rates: InterAug
images/s, IntraAug edits/s and scored pairs/s per GPU. They depend on the architectures, sizes,
steps and dtypes, not on the weight values, so they are measured on random weights of the real
architectures built from config dicts (the same builders the tests use):

- InterAug: the SD 1.5 / RoentGen-sized pipeline (860M UNet, KL-VAE, CLIP ViT-L/14 text encoder),
  fp16, 512 px, 50 PNDM steps, guidance 4, over batch sizes; the pipeline the stage loads
  (`load_sd_pipeline`, fused SDPA attention).
- IntraAug: one prompt-to-prompt edit (two prompts, 75 steps, PairAug's refine controller) per call,
  as the stage runs it, and the same two-prompt call without attention control (the overhead).
- Scoring: CheXzero's ViT-B/32 CLIP (224 px) embedding images and texts, fp16.
- Pretraining: the same CLIP's forward and backward with the contrastive loss (fp16 autocast).
- The CPU side per image: PNG encoding of a 512 px grey image on one core.

The plain-loop rates here are the ceiling a Ray actor per GPU approaches (bench/generate.py
measures the stage against the loop, which needs Ray on the machine).

    python bench/gpu_throughput.py --out gpu.json          # on a GPU machine (about 4 minutes)
    .venv/bin/python bench/gpu_throughput.py --cpu --quick  # the same code on CPU, tiny models
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

SOURCE = "there is a small left pleural effusion. heart size is normal. no pneumothorax."
TARGET = "there is a large left pleural effusion. the heart is enlarged. no pneumothorax."

# CheXzero's CLIP: OpenAI ViT-B/32 (224 px, 12 + 12 layers, 512-d joint space).
VIT_B_32 = {
    "text_config": {
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_attention_heads": 8,
        "num_hidden_layers": 12,
    },
    "vision_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_attention_heads": 12,
        "num_hidden_layers": 12,
        "image_size": 224,
        "patch_size": 32,
    },
    "projection_dim": 512,
}


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Seconds per call of fn (after one untimed warm-up call), with the GPU synchronised."""
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - t0) / repeats


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def peak_gib() -> float | None:
    if not torch.cuda.is_available():
        return None
    peak = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return round(peak, 2)


def interaug(pipe, size: int, steps: int, batches: list[int]) -> list[dict]:
    out = []
    for bs in batches:
        gens = [torch.Generator("cpu").manual_seed(i) for i in range(bs)]

        def call(bs=bs, gens=gens):
            pipe(
                [TARGET] * bs,
                num_inference_steps=steps,
                guidance_scale=4.0,
                height=size,
                width=size,
                generator=gens,
                output_type="np",
            )

        s = timed(call)
        out.append(
            {"batch": bs, "s_per_call": round(s, 3), "images_per_s": round(bs / s, 3), "peak_gib": peak_gib()}
        )
        print(f"  InterAug batch {bs:>3}: {bs / s:7.2f} images/s ({s:.2f} s per call)", flush=True)
    return out


def intraaug(pipe, size: int, steps: int, repeats: int) -> dict:
    from pairaug_ray import p2p

    prompts = [SOURCE, TARGET]
    latent = p2p.initial_latent(pipe, size, size, torch.Generator("cpu").manual_seed(0))

    def controlled():
        ctrl = p2p.make_controller(pipe, prompts, steps, kind="refine", cross_replace=0.5, self_replace=0.2)
        p2p.run_with_controller(
            pipe,
            prompts,
            ctrl,
            num_inference_steps=steps,
            guidance_scale=4.0,
            height=size,
            width=size,
            latents=latent,
            output_type="np",
        )

    def plain():
        pipe(
            prompts,
            num_inference_steps=steps,
            guidance_scale=4.0,
            height=size,
            width=size,
            latents=latent.expand(2, *latent.shape[1:]).clone(),
            output_type="np",
        )

    with_control, without = timed(controlled, repeats), timed(plain, repeats)
    print(
        f"  IntraAug: {1 / with_control:.3f} edits/s ({with_control:.2f} s per edit; "
        f"{with_control / without:.2f}x the same call without attention control)",
        flush=True,
    )
    return {
        "edits_per_s": round(1 / with_control, 4),
        "s_per_edit": round(with_control, 3),
        "s_without_control": round(without, 3),
        "control_overhead": round(with_control / without, 3),
        "peak_gib": peak_gib(),
    }


def clip_rates(device: torch.device, dtype: torch.dtype, batch: int, config: dict) -> dict:
    from transformers import CLIPConfig, CLIPModel

    model = CLIPModel(CLIPConfig(**config)).to(device)
    size = config["vision_config"]["image_size"]
    pixels = torch.randn(batch, 3, size, size, device=device)
    ids = torch.randint(0, 49000, (batch, 77), device=device)
    model.eval()
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
        img_s = timed(lambda: model.get_image_features(pixel_values=pixels), 3)
        txt_s = timed(lambda: model.get_text_features(input_ids=ids), 3)
    scoring = {
        "batch": batch,
        "images_per_s": round(batch / img_s, 1),
        "texts_per_s": round(batch / txt_s, 1),
        # InterAug's score needs one image and one text embedding per pair.
        "pairs_per_s": round(batch / (img_s + txt_s), 1),
        "peak_gib": peak_gib(),
    }
    print(
        f"  scoring (CLIP {config['vision_config']['patch_size']}-px patches, {size} px): "
        f"{scoring['images_per_s']:.0f} images/s, {scoring['texts_per_s']:.0f} texts/s, {scoring['pairs_per_s']:.0f} pairs/s",
        flush=True,
    )
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda" and dtype == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
            out = model(input_ids=ids, pixel_values=pixels, return_loss=True)
        scaler.scale(out.loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    train_s = timed(step, 3)
    training = {"batch": batch, "samples_per_s": round(batch / train_s, 1), "peak_gib": peak_gib()}
    print(f"  pretraining step, batch {batch}: {training['samples_per_s']:.0f} samples/s", flush=True)
    return {"scoring": scoring, "training": training}


def png_encode_rate(size: int, n: int = 50) -> float:
    from PIL import Image

    rng = np.random.default_rng(0)
    # A smooth image compresses like a radiograph, not like noise.
    base = (np.add.outer(np.arange(size), np.arange(size)) % 256).astype(np.uint8)
    imgs = [
        np.clip(base.astype(int) + rng.integers(-8, 8, base.shape), 0, 255).astype(np.uint8) for _ in range(4)
    ]
    t0 = time.perf_counter()
    for i in range(n):
        buf = io.BytesIO()
        Image.fromarray(imgs[i % 4]).save(buf, "PNG")
    rate = n / (time.perf_counter() - t0)
    print(f"  PNG encoding of {size} px grey images: {rate:.0f} images/s on one CPU core", flush=True)
    return round(rate, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="run on the CPU with the tiny models (a smoke run)")
    ap.add_argument("--quick", action="store_true", help="fewer batch sizes and steps")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    gpu = torch.cuda.is_available() and not args.cpu
    device = torch.device("cuda" if gpu else "cpu")
    dtype = torch.float16 if gpu else torch.float32
    arch = "sd15" if gpu else "tiny"
    size = 512 if gpu else 64
    inter_steps, intra_steps = (50, 75) if not args.quick else (10, 10)
    batches = [1, 8, 16, 32] if not args.quick else [1, 4]
    name = torch.cuda.get_device_name(0) if gpu else f"CPU ({platform.processor() or platform.machine()})"
    print(f"{name}: torch {torch.__version__}, {arch} pipeline at {size} px, {dtype}", flush=True)

    import diffusers
    import transformers

    from pairaug_ray.models.diffusion import load_sd_pipeline
    from pairaug_ray.models.tiny import TINY_CLIP, build_tiny_sd

    results: dict = {
        "device": name,
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "pipeline": arch,
        "size": size,
        "dtype": str(dtype).removeprefix("torch."),
    }
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        build_tiny_sd(0, arch=arch).save_pretrained(tmp)
        pipe = load_sd_pipeline(tmp, scheduler="pndm", use_gpu=gpu)
        print(f"  built and loaded the pipeline in {time.perf_counter() - t0:.0f} s", flush=True)
        results["interaug"] = {"steps": inter_steps, "rates": interaug(pipe, size, inter_steps, batches)}
        results["intraaug"] = {"steps": intra_steps, **intraaug(pipe, size, intra_steps, repeats=2)}
        # The demo's and the scale bench's generator: the tiny pipeline at 32 px, 2 steps.
        if gpu:
            tiny = os.path.join(tmp, "tiny")
            build_tiny_sd(0, arch="tiny").save_pretrained(tiny)
            small = load_sd_pipeline(tiny, scheduler="pndm", use_gpu=True)
            print("  the tiny generator, 32 px, 2 steps:", flush=True)
            results["tiny_interaug"] = {"size": 32, "steps": 2, "rates": interaug(small, 32, 2, [256])}
        del pipe
    if gpu:
        torch.cuda.empty_cache()
    results["clip"] = clip_rates(device, dtype, 256 if gpu else 16, VIT_B_32 if gpu else TINY_CLIP)
    results["png_encode_per_cpu_core"] = {"size": size, "images_per_s": png_encode_rate(size)}
    text = json.dumps(results, indent=1)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
