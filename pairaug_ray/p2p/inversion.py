"""DDIM inversion: the initial latent from which DDIM sampling redraws a given (real) image.

Beyond the paper: PairAug's IntraAug draws the "original" from the original report, so the edited
image shows a generated patient. Inverting the real radiograph instead makes the edit start from
the actual patient. The image is encoded by the VAE and taken up the DDIM trajectory of the source
prompt (no guidance) for the same steps that sampling will take back down. With guidance > 1 the
way back drifts (null-text inversion would correct that; not implemented), so the reconstruction
error of the source branch is measured and recorded.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import DDIMScheduler
from PIL import Image


def image_to_tensor(image: np.ndarray | Image.Image, height: int, width: int) -> torch.Tensor:
    """A grey or RGB image as a (1, 3, H, W) tensor in [-1, 1], resized with bicubic filtering."""
    if isinstance(image, np.ndarray):
        if image.dtype == np.uint16:
            image = (image // 257).astype(np.uint8)
        image = Image.fromarray(image)
    rgb = image.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    arr = np.asarray(rgb, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(2, 0, 1).unsqueeze(0)


@torch.no_grad()
def ddim_invert(
    pipe, image: np.ndarray | Image.Image, prompt: str, *, num_inference_steps: int, height: int, width: int
) -> torch.Tensor:
    """The (1, C, h, w) latent x_T whose DDIM sampling with `prompt` approximately redraws `image`."""
    x = image_to_tensor(image, height, width).to(pipe.device, pipe.vae.dtype)
    latent = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
    return ddim_invert_latent(pipe, latent, prompt, num_inference_steps=num_inference_steps)


@torch.no_grad()
def ddim_invert_latent(pipe, latent: torch.Tensor, prompt: str, *, num_inference_steps: int) -> torch.Tensor:
    """DDIM inversion of a clean latent z_0 (already VAE-encoded and scaled) to x_T."""
    device, dtype = pipe.device, pipe.unet.dtype
    latent = latent.to(device, dtype)
    cond, _ = pipe.encode_prompt(prompt, device, 1, do_classifier_free_guidance=False)
    scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_inference_steps, device=device)
    alphas = scheduler.alphas_cumprod.to(device)
    alpha_prev = scheduler.final_alpha_cumprod.to(device)  # the clean image's end of the trajectory
    for t in scheduler.timesteps.flip(0):  # ascending noise levels
        eps = pipe.unet(latent, t, encoder_hidden_states=cond).sample
        alpha_t = alphas[t]
        x0 = (latent - (1 - alpha_prev).sqrt() * eps) / alpha_prev.sqrt()
        latent = alpha_t.sqrt() * x0 + (1 - alpha_t).sqrt() * eps
        alpha_prev = alpha_t
    return latent


def reconstruction_error(reference: np.ndarray | Image.Image, image: np.ndarray | Image.Image) -> float:
    """Mean absolute difference of two images as grey levels in [0, 1], at the second's size."""
    b = np.asarray(_grey(image), dtype=np.float32) / 255.0
    a = (
        np.asarray(
            _grey(reference).resize((b.shape[1], b.shape[0]), Image.Resampling.BICUBIC), dtype=np.float32
        )
        / 255.0
    )
    return float(np.abs(a - b).mean())


def _grey(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("L")
    if image.dtype == np.uint16:
        image = (image // 257).astype(np.uint8)
    if image.dtype != np.uint8:  # floats in [0, 1], e.g. a pipeline's np output
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(image).convert("L")
