"""Loading a Stable Diffusion pipeline the way the generation stages run it.

RoentGen or any SD 1.x/2.x checkpoint in the diffusers layout (local folder, or the folder that
`resolve_model` fetched from s3:// / the hub). fp16 with PyTorch's fused SDPA attention on CUDA,
fp32 on CPU; the scheduler is chosen in config (PNDM as RoentGen ships, DDIM, DPM-Solver++).
"""

from __future__ import annotations

import diffusers
import numpy as np
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, PNDMScheduler, StableDiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

CLIP_CONTEXT = 77


def make_scheduler(kind: str, config):
    if kind == "pndm":
        return PNDMScheduler.from_config(config, skip_prk_steps=True)
    if kind == "ddim":
        return DDIMScheduler.from_config(config)
    if kind == "dpmsolver++":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    raise ValueError(f"unknown scheduler {kind!r}: use pndm, ddim or dpmsolver++")


def load_sd_pipeline(
    path: str,
    *,
    revision: str | None = None,
    scheduler: str = "pndm",
    dtype: str = "auto",
    use_gpu: bool = False,
) -> StableDiffusionPipeline:
    cuda = use_gpu and torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    torch_dtype = {"float16": torch.float16, "float32": torch.float32}.get(
        dtype, torch.float16 if cuda else torch.float32
    )
    pipe = StableDiffusionPipeline.from_pretrained(
        path,
        revision=revision,
        safety_checker=None,
        requires_safety_checker=False,
        **_dtype_kwarg(torch_dtype),
    )
    pipe.scheduler = make_scheduler(scheduler, pipe.scheduler.config)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    if cuda:
        # Explicit, not left to defaults: fused scaled-dot-product attention on the GPU.
        pipe.unet.set_attn_processor(AttnProcessor2_0())
    return pipe


def _dtype_kwarg(dtype: torch.dtype) -> dict:
    # diffusers 0.42 renamed `torch_dtype` to `dtype` (the old name still works, with a warning).
    major, minor = (int(x) for x in diffusers.__version__.split(".")[:2])
    return {"dtype": dtype} if (major, minor) >= (0, 42) else {"torch_dtype": dtype}


def default_size(pipe: StableDiffusionPipeline) -> int:
    return pipe.unet.config.sample_size * pipe.vae_scale_factor


def prompt_tokens(pipe: StableDiffusionPipeline, prompt: str) -> int:
    """Tokens the prompt has before the text encoder's 77-token truncation (BOS and EOS included)."""
    return len(pipe.tokenizer(prompt, truncation=False).input_ids)


def to_grey_uint8(image: np.ndarray) -> np.ndarray:
    """A pipeline's float RGB output (H, W, 3) in [0, 1] as an 8-bit grey radiograph (luminance)."""
    rgb = np.clip(image, 0.0, 1.0)
    grey = rgb @ np.array([0.299, 0.587, 0.114], dtype=rgb.dtype) if rgb.ndim == 3 else rgb
    return np.round(grey * 255).astype(np.uint8)
