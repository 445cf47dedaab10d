"""Prompt-to-prompt editing on any loaded `StableDiffusionPipeline`.

The source prompt and the edited prompt(s) run as one batch from the same initial latent, through
the pipeline's own `__call__` (its encoding, classifier-free guidance, scheduler and decoding), with
the controller hooked into the UNet's attention processors for the duration of the call and the
original processors restored afterwards. Local blend runs in the pipeline's step-end callback.

    from pairaug_ray import p2p
    source, edited = p2p.edit(pipe, "small left pleural effusion", "large left pleural effusion",
                              num_inference_steps=50, guidance_scale=4.0, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers.utils.torch_utils import randn_tensor

from pairaug_ray.p2p.controllers import (
    AttentionControl,
    AttentionControlEdit,
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    LocalBlend,
    Window,
    equalizer,
)
from pairaug_ray.p2p.processor import attention_control

ControllerKind = Literal["refine", "replace", "reweight"]


@dataclass
class EditResult:
    images: Any  # PIL images, or an array for output_type="np"
    hooked_layers: int
    unet_calls: int  # steps the controller counted (PNDM: num_inference_steps + 1)
    latents: torch.Tensor  # the initial latent (1, C, h, w) both prompts started from


def make_controller(
    pipe,
    prompts: Sequence[str],
    num_inference_steps: int,
    *,
    kind: ControllerKind = "refine",
    cross_replace: Window | Mapping[str, Window] = 0.5,
    self_replace: Window = 0.2,
    self_replace_max_tokens: int = 16**2,
    local_blend_words: Sequence[str | Sequence[str]] | None = None,
    local_blend_threshold: float = 0.3,
    reweight: Mapping[str, float] | None = None,
    store: bool = False,
) -> AttentionControlEdit:
    """A controller for `prompts` (source first) with PairAug's defaults (refine, 0.5 / 0.2).
    `store=True` also accumulates the attention maps (for pictures of where words attend)."""
    tok = pipe.tokenizer
    blend = LocalBlend(prompts, local_blend_words, tok, local_blend_threshold) if local_blend_words else None
    common = {
        "cross_replace": cross_replace,
        "self_replace": self_replace,
        "self_replace_max_tokens": self_replace_max_tokens,
        "local_blend": blend,
        "store": store,
    }
    if kind == "refine":
        ctrl: AttentionControlEdit = AttentionRefine(prompts, num_inference_steps, tok, **common)
    elif kind == "replace":
        ctrl = AttentionReplace(prompts, num_inference_steps, tok, **common)
    elif kind == "reweight":
        if not reweight:
            raise ValueError("the reweight controller needs word weights, e.g. {'effusion': 2.0}")
        eq = equalizer(prompts[1], reweight, tok, edits=len(prompts) - 1)
        ctrl = AttentionReweight(prompts, num_inference_steps, tok, equalizer=eq, **common)
    else:
        raise ValueError(f"unknown controller {kind!r}: use refine, replace or reweight")
    if reweight and kind != "reweight":
        eq = equalizer(prompts[1], reweight, tok, edits=len(prompts) - 1)
        ctrl = AttentionReweight(prompts, num_inference_steps, tok, equalizer=eq, prev=ctrl, **common)
    return ctrl


def initial_latent(
    pipe, height: int, width: int, generator: torch.Generator | None, dtype=None
) -> torch.Tensor:
    shape = (1, pipe.unet.config.in_channels, height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    return randn_tensor(shape, generator=generator, device=pipe.device, dtype=dtype or pipe.unet.dtype)


def run_with_controller(
    pipe,
    prompts: Sequence[str],
    controller: AttentionControl,
    *,
    num_inference_steps: int,
    guidance_scale: float,
    height: int | None = None,
    width: int | None = None,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    output_type: str = "pil",
) -> EditResult:
    """Generate all `prompts` from one initial latent with `controller` hooked in."""
    height = height or pipe.unet.config.sample_size * pipe.vae_scale_factor
    width = width or pipe.unet.config.sample_size * pipe.vae_scale_factor
    if latents is None:
        latents = initial_latent(pipe, height, width, generator)
    if latents.shape[0] != 1:
        raise ValueError(f"pass one initial latent (1, C, h, w); got shape {tuple(latents.shape)}")
    batch_latents = latents.to(pipe.device, pipe.unet.dtype).expand(len(prompts), *latents.shape[1:]).clone()
    controller.uncond_in_batch = guidance_scale > 1.0  # the pipeline's classifier-free guidance rule

    def on_step_end(_pipe, _i, _t, kwargs):
        return {"latents": controller.step_callback(kwargs["latents"])}

    latent_size = (height // pipe.vae_scale_factor, width // pipe.vae_scale_factor)
    with attention_control(pipe.unet, controller, latent_size) as hooked:
        out = pipe(
            list(prompts),
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width,
            latents=batch_latents,
            output_type=output_type,
            callback_on_step_end=on_step_end,
            callback_on_step_end_tensor_inputs=["latents"],
        )
    return EditResult(out.images, hooked, controller.cur_step, latents)


def edit(
    pipe,
    source_prompt: str,
    target_prompt: str,
    *,
    cross_replace: Window | Mapping[str, Window] = 0.5,
    self_replace: Window = 0.2,
    num_inference_steps: int = 50,
    guidance_scale: float = 7.5,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    controller: ControllerKind = "refine",
    height: int | None = None,
    width: int | None = None,
    self_replace_max_tokens: int = 16**2,
    local_blend_words: Sequence[str | Sequence[str]] | None = None,
    reweight: Mapping[str, float] | None = None,
):
    """(source_image, edited_image) as PIL images: `target_prompt` drawn from the same latent as
    `source_prompt` with the source's attention injected (refine by default, as PairAug)."""
    ctrl = make_controller(
        pipe,
        [source_prompt, target_prompt],
        num_inference_steps,
        kind=controller,
        cross_replace=cross_replace,
        self_replace=self_replace,
        self_replace_max_tokens=self_replace_max_tokens,
        local_blend_words=local_blend_words,
        reweight=reweight,
    )
    result = run_with_controller(
        pipe,
        [source_prompt, target_prompt],
        ctrl,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        height=height,
        width=width,
        generator=generator,
        latents=latents,
    )
    return result.images[0], result.images[1]
