"""Hooking a controller into a UNet through diffusers' attention-processor API.

`register_attention_control` installs a `P2PAttnProcessor` on exactly the layers the controller
wants (decided from each layer's name: self or cross attention, and its number of queries at the
given latent size) with `unet.set_attn_processor`, keeps every other layer's processor as it was,
and returns how many layers it hooked. It refuses to hook zero layers: that is the silent failure
of the original prompt-to-prompt code on modern diffusers, which patched modules by the class name
`CrossAttention` and so edited nothing.

A hooked layer computes attention probabilities explicitly only on the calls where the controller
needs them (`controller.active`); on the others it counts the call and runs the fused attention of
the processor it replaced (SDPA on torch 2), so control costs little outside its windows.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pairaug_ray.p2p.controllers import AttentionControl, AttentionControlEdit

_PLACES = {"down_blocks": "down", "mid_block": "mid", "up_blocks": "up"}


class ZeroLayersHookedError(RuntimeError):
    pass


class P2PAttnProcessor:
    """The classic attention computation with the probabilities handed to a controller."""

    def __init__(self, controller: AttentionControl, place: str, fallback):
        self.controller = controller
        self.place = place
        self.fallback = fallback

    def __call__(
        self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs
    ):
        is_cross = encoder_hidden_states is not None
        ndim = hidden_states.ndim
        num_queries = hidden_states.shape[1] if ndim == 3 else hidden_states.shape[2] * hidden_states.shape[3]
        if not self.controller.active(is_cross, self.place, num_queries):
            self.controller.skip()
            return self.fallback(
                attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs
            )

        residual = hidden_states
        if getattr(attn, "spatial_norm", None) is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        if ndim == 4:
            b, c, h, w = hidden_states.shape
            hidden_states = hidden_states.view(b, c, h * w).transpose(1, 2)
        batch, seq, _ = hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq, batch)
        if getattr(attn, "group_norm", None) is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (batch * heads, Q, K)
        probs = self.controller(probs, is_cross, self.place)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if ndim == 4:
            out = out.transpose(-1, -2).reshape(b, c, h, w)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


def layer_levels(unet) -> dict[str, int]:
    """Resolution level of every attention processor: 0 = the latent's size, each level halves."""
    n_down = len(unet.down_blocks)
    levels = {}
    for name in unet.attn_processors:
        if name.startswith("down_blocks."):
            level = int(name.split(".")[1])
        elif name.startswith("up_blocks."):
            level = n_down - 1 - int(name.split(".")[1])
        elif name.startswith("mid_block."):
            level = n_down - 1
        else:
            raise ValueError(f"cannot place attention layer {name!r} in the UNet")
        levels[name] = level
    return levels


def _place(name: str) -> str:
    return _PLACES[name.split(".")[0]]


def _is_cross(name: str) -> bool:
    return bool(re.search(r"\.attn2\.processor$", name))


def layer_queries(unet, latent_size: tuple[int, int]) -> dict[str, int]:
    """Number of query tokens of every attention layer for a latent of `latent_size`."""
    h, w = latent_size
    return {name: (-(-h // 2**lvl)) * (-(-w // 2**lvl)) for name, lvl in layer_levels(unet).items()}


def register_attention_control(
    unet, controller: AttentionControl, latent_size: tuple[int, int]
) -> tuple[int, dict]:
    """Hook `controller` into the layers it wants; returns (hooked layer count, original processors)."""
    originals = dict(unet.attn_processors)
    queries = layer_queries(unet, latent_size)
    if isinstance(controller, AttentionControlEdit) and controller.local_blend is not None:
        controller.blend_side = max(1, latent_size[0] // 4)
    procs, hooked = {}, 0
    for name, proc in originals.items():
        if controller.wants_layer(_is_cross(name), _place(name), queries[name]):
            procs[name] = P2PAttnProcessor(controller, _place(name), proc)
            hooked += 1
        else:
            procs[name] = proc
    if hooked == 0:
        raise ZeroLayersHookedError(
            f"prompt-to-prompt hooked 0 of {len(originals)} attention layers: the controller wants none at latent "
            f"size {latent_size} (cross-replace and self-replace both off?), so the edit would be a plain regeneration"
        )
    controller.num_att_layers = hooked
    controller.reset()
    unet.set_attn_processor(procs)
    return hooked, originals


@contextmanager
def attention_control(unet, controller: AttentionControl, latent_size: tuple[int, int]) -> Iterator[int]:
    """Hook `controller` for the duration of the block and restore the original processors after."""
    hooked, originals = register_attention_control(unet, controller, latent_size)
    try:
        yield hooked
    finally:
        unet.set_attn_processor(originals)
