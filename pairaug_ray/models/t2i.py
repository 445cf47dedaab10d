"""Text-to-image fine-tuning of a Stable Diffusion pipeline's parts: RoentGen's recipe as functions.

RoentGen (Chambon et al., 2022) fine-tunes Stable Diffusion 1.x on MIMIC-CXR image-report pairs:
the UNet, and in its best variant the CLIP text encoder too, with the latent-diffusion noise-prediction
loss under the DDPM schedule; a fraction of the reports is replaced by the empty prompt so that
classifier-free guidance works at sampling time. This module holds that loss, the VAE's loss for a
pipeline trained from scratch (no pretrained weights offline), the latent scale such a VAE needs,
and saving the parts as a pipeline folder `StableDiffusionPipeline.from_pretrained` loads. The Ray
Train job that runs it is pairaug_ray/pipeline/finetune_t2i.py; docs/generator.md the recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers import (
    AutoencoderKL,
    DDPMScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from pairaug_ray.models.tiny import SD1_PNDM, TINY_SD_TEXT
from pairaug_ray.models.tokenizer import CONTEXT_LENGTH, default_tokenizer

# A pipeline trained from scratch on 2 CPU cores (docs/generator.md): a factor-4 VAE (a 64 px image
# is 16x16 latents), a UNet with cross-attention at 16, 8 and 4 latent pixels, and the tiny CLIP text
# encoder with the real vocabulary. Small enough to learn the phantom's findings in minutes.
SCRATCH_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (32, 64, 64),
    "down_block_types": ("DownEncoderBlock2D",) * 3,
    "up_block_types": ("UpDecoderBlock2D",) * 3,
    "layers_per_block": 1,
    "norm_num_groups": 16,
}
SCRATCH_UNET: dict[str, Any] = {
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (64, 128, 128),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 64,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
SCRATCH_TEXT: dict[str, Any] = {**TINY_SD_TEXT, "hidden_size": 64, "intermediate_size": 128}


@dataclass
class T2IParts:
    """The parts of a Stable Diffusion pipeline that training touches, and the noise schedule."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoder: CLIPTextModel
    tokenizer: CLIPTokenizer
    noise_scheduler: DDPMScheduler
    sampling_scheduler_config: dict[str, Any]

    @property
    def image_size(self) -> int:
        return self.unet.config.sample_size * vae_scale(self.vae)


def vae_scale(vae: AutoencoderKL) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def load_parts(path: str) -> T2IParts:
    """A diffusers Stable Diffusion folder's parts in fp32 (training keeps fp32 master weights)."""
    pipe = StableDiffusionPipeline.from_pretrained(path, safety_checker=None, requires_safety_checker=False)
    return T2IParts(
        unet=pipe.unet,
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        # Training noise under DDPM with the checkpoint's own betas (SD 1.x: scaled_linear).
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
        sampling_scheduler_config=dict(pipe.scheduler.config),
    )


def scratch_parts(image_size: int, seed: int = 0) -> T2IParts:
    """Random-weight parts for training from scratch at `image_size` pixels (SCRATCH_* shapes)."""
    tokenizer = default_tokenizer()
    torch.manual_seed(seed)
    vae = AutoencoderKL(**SCRATCH_VAE, sample_size=image_size)
    factor = vae_scale(vae)
    if image_size % (factor * 4):
        raise ValueError(
            f"image size {image_size} must be a multiple of {factor * 4} for the scratch pipeline"
        )
    torch.manual_seed(seed + 1)
    unet = UNet2DConditionModel(**SCRATCH_UNET, sample_size=image_size // factor)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**SCRATCH_TEXT))
    config = dict(SD1_PNDM)
    return T2IParts(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        noise_scheduler=DDPMScheduler.from_config(config),
        sampling_scheduler_config=config,
    )


def tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> torch.Tensor:
    """Report texts as CLIP token ids, padded and truncated to the 77-token context (as RoentGen)."""
    return tokenizer(
        texts, padding="max_length", max_length=CONTEXT_LENGTH, truncation=True, return_tensors="pt"
    ).input_ids


def drop_text(
    input_ids: torch.Tensor, empty_ids: torch.Tensor, fraction: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Replace a `fraction` of the rows by the empty prompt: the unconditional model that
    classifier-free guidance subtracts at sampling time is the same network, trained on these."""
    if fraction <= 0:
        return input_ids
    drop = torch.rand(input_ids.shape[0], generator=generator) < fraction
    out = input_ids.clone()
    out[drop] = empty_ids.to(out.dtype)
    return out


def diffusion_loss(
    parts: T2IParts,
    pixel_values: torch.Tensor,
    input_ids: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    unet: torch.nn.Module | None = None,
    text_encoder: torch.nn.Module | None = None,
    noise: torch.Tensor | None = None,
    timesteps: torch.Tensor | None = None,
    sample_posterior: bool = True,
) -> torch.Tensor:
    """Latent diffusion's loss on a batch: images in [-1, 1] (B, 3, H, W) to latents, noise at a
    random DDPM timestep, the UNet's prediction (epsilon or v, as the schedule says) against it.

    `unet`/`text_encoder` override the parts' modules (their DDP wrappers on a training worker).
    `noise`, `timesteps` and `sample_posterior=False` (the posterior's mean) fix what is otherwise
    drawn: a loss that can be compared across runs, and across a batch split over workers."""
    unet = unet or parts.unet
    text_encoder = text_encoder or parts.text_encoder
    scheduler = parts.noise_scheduler
    with torch.no_grad():
        posterior = parts.vae.encode(pixel_values).latent_dist
        latents = posterior.sample(generator) if sample_posterior else posterior.mode()
        latents = latents * parts.vae.config.scaling_factor
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator, dtype=latents.dtype)
    noise = noise.to(latents.device)
    if timesteps is None:
        timesteps = torch.randint(
            0, scheduler.config.num_train_timesteps, (latents.shape[0],), generator=generator
        )
    timesteps = timesteps.to(latents.device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    hidden = text_encoder(input_ids.to(latents.device))[0]
    prediction = unet(noisy, timesteps, hidden).sample
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(prediction.float(), target.float())


class VAEObjective(torch.nn.Module):
    """The VAE's training forward as one module, so that DDP can wrap it (DDP synchronises the
    gradients of what runs through its own forward): encode, sample the posterior with the given
    noise, decode. Returns (reconstruction, the posterior's KL to a unit Gaussian per image)."""

    def __init__(self, vae: AutoencoderKL):
        super().__init__()
        self.vae = vae

    def forward(self, pixel_values: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(pixel_values).latent_dist
        latents = posterior.mean + posterior.std * noise
        return self.vae.decode(latents).sample, posterior.kl()


def vae_loss(
    objective: torch.nn.Module,
    pixel_values: torch.Tensor,
    *,
    kl_weight: float = 1e-4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, float, float]:
    """The VAE's loss for training from scratch: L1 reconstruction plus a small KL term that keeps
    the latents near a unit Gaussian (Stable Diffusion's VAE adds perceptual and GAN terms, which a
    2-core run cannot afford). `objective` is a VAEObjective or its DDP wrapper. Returns (loss,
    reconstruction, kl)."""
    vae = getattr(objective, "module", objective).vae
    factor = vae_scale(vae)
    b, _, h, w = pixel_values.shape
    shape = (b, vae.config.latent_channels, h // factor, w // factor)
    noise = torch.randn(shape, generator=generator).to(pixel_values.device)
    reconstruction, kl = objective(pixel_values, noise)
    recon = F.l1_loss(reconstruction, pixel_values)
    kl = kl.mean() / pixel_values[0].numel()
    return recon + kl_weight * kl, float(recon.detach()), float(kl.detach())


@torch.no_grad()
def latent_scaling_factor(vae: AutoencoderKL, batches: list[torch.Tensor]) -> float:
    """1 / the standard deviation of the VAE's latents over some images: the factor that brings
    latents to unit variance, which the noise schedule assumes (SD 1.x's VAE: 0.18215)."""
    latents = torch.cat([vae.encode(b).latent_dist.mode() for b in batches])
    return float(1.0 / latents.flatten().std().clamp_min(1e-6))


def to_pipeline(parts: T2IParts, unet: UNet2DConditionModel | None = None) -> StableDiffusionPipeline:
    """The parts as a pipeline (with `unet` instead of the trained one: the EMA weights), sampling
    with PNDM on the training schedule's betas as Stable Diffusion 1.x ships."""
    return StableDiffusionPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoder,
        tokenizer=parts.tokenizer,
        unet=unet or parts.unet,
        scheduler=PNDMScheduler.from_config(parts.sampling_scheduler_config, skip_prk_steps=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def save_pipeline(parts: T2IParts, out_dir: str | Path, unet: UNet2DConditionModel | None = None) -> str:
    to_pipeline(parts, unet).save_pretrained(out_dir, safe_serialization=True)
    return str(out_dir)


@torch.no_grad()
def sample_images(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    *,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = 0,
) -> list[Any]:
    """One image per prompt (PIL), the same noise for every prompt: a grid shows the reports' effect."""
    pipe.set_progress_bar_config(disable=True)
    generator = [torch.Generator().manual_seed(seed) for _ in prompts]
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    return pipe(
        prompts,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
        height=size,
        width=size,
    ).images


def sample_grid(
    pipe: StableDiffusionPipeline,
    prompts: list[str],
    *,
    steps: int = 25,
    guidance: float = 3.0,
    seed: int = 0,
    tile: int = 128,
) -> Any:
    """The prompts' images side by side, each captioned with its report (PIL image): what a person
    looks at to see the findings appear as training goes on."""
    import textwrap

    from PIL import Image, ImageDraw, ImageFont

    tiles = sample_images(pipe, prompts, steps=steps, guidance=guidance, seed=seed)
    caption = 40
    grid = Image.new("L", (tile * len(tiles), tile + caption), 255)
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default(size=10)
    for i, (image, prompt) in enumerate(zip(tiles, prompts, strict=True)):
        # Grey, as the generation stages store radiographs (models/diffusion.py, to_grey_uint8).
        grid.paste(image.convert("L").resize((tile, tile), Image.Resampling.BICUBIC), (i * tile, 0))
        text = "\n".join(textwrap.wrap(prompt, width=max(8, tile // 6))[:3])
        draw.multiline_text((i * tile + 3, tile + 2), text, fill=0, font=font, spacing=1)
    return grid
