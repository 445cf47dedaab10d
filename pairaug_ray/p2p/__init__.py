"""Prompt-to-prompt editing for diffusers' Stable Diffusion, through the attention-processor API.

Public API (no Ray, usable from a notebook):

    from pairaug_ray import p2p
    source, edited = p2p.edit(pipe, source_prompt, target_prompt, cross_replace=0.5, self_replace=0.2,
                              num_inference_steps=50, guidance_scale=4.0, generator=g)

and, for other settings, the controllers (`AttentionStore`, `AttentionReplace`, `AttentionRefine`,
`AttentionReweight`, `LocalBlend`), `register_attention_control` / `attention_control` to hook one
into any UNet, `run_with_controller`, the token aligners in `p2p.align`, and DDIM inversion.
"""

from pairaug_ray.p2p.controllers import (
    AttentionControl,
    AttentionControlEdit,
    AttentionRefine,
    AttentionReplace,
    AttentionReweight,
    AttentionStore,
    LocalBlend,
    equalizer,
    time_word_alphas,
)
from pairaug_ray.p2p.edit import EditResult, edit, initial_latent, make_controller, run_with_controller
from pairaug_ray.p2p.inversion import ddim_invert, ddim_invert_latent, reconstruction_error
from pairaug_ray.p2p.processor import (
    P2PAttnProcessor,
    ZeroLayersHookedError,
    attention_control,
    layer_queries,
    register_attention_control,
)

__all__ = [
    "AttentionControl",
    "AttentionControlEdit",
    "AttentionRefine",
    "AttentionReplace",
    "AttentionReweight",
    "AttentionStore",
    "EditResult",
    "LocalBlend",
    "P2PAttnProcessor",
    "ZeroLayersHookedError",
    "attention_control",
    "ddim_invert",
    "ddim_invert_latent",
    "edit",
    "equalizer",
    "initial_latent",
    "layer_queries",
    "make_controller",
    "reconstruction_error",
    "register_attention_control",
    "run_with_controller",
    "time_word_alphas",
]
