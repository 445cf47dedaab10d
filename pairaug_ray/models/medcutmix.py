"""MedCutMix, image side: the inserted sentence picks the partner's patches; those hidden states are
mixed into the image at a ViT layer (docs/method.md, MedCutMix: the documented reading).

1. The sentence's text embedding q attends over the partner image's *final-layer* patch tokens,
   each taken through CLIP's post-layernorm and visual projection into the shared space:
   a = softmax(q . P^T / sqrt(D)), computed without gradient (one extra no-grad pass from layer l
   to the last layer).
2. The top ceil(lam x N) patches by attention form the mask m.
3. The image's forward pass continues from layer l with h = (1 - m) * h_image + m * h_partner on the
   patch tokens (the CLS token stays the image's), and the result pairs with the mixed report as a
   positive pair.

Why the final layer ranks: post_layernorm and visual_projection are trained only on the last
layer's CLS token. Patch tokens of the last layer live in (nearly) the space those maps were trained
for, so their projection can be compared with a text embedding; tokens of an early layer l are
mostly appearance and position, so ranking them ranks by those, not by the sentence (docs/method.md,
MedCutMix, and the localisation test in tests/test_medcutmix.py). The mix itself still happens at l.

Works on transformers' `CLIPModel`; never imports Ray.
"""

from __future__ import annotations

import math

import torch


def _run_layer(layer: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    out = layer(hidden, None, None) if _takes_causal_mask(layer) else layer(hidden, None)
    return out[0] if isinstance(out, tuple) else out


def _takes_causal_mask(layer: torch.nn.Module) -> bool:
    import inspect

    return "causal_attention_mask" in inspect.signature(layer.forward).parameters


def hidden_states_at(clip: torch.nn.Module, pixel_values: torch.Tensor, layer: int) -> torch.Tensor:
    """(B, 1 + N, hidden): the vision tokens after encoder layer `layer` (0 = the first layer's output)."""
    vm = clip.vision_model
    hidden = vm.pre_layrnorm(vm.embeddings(pixel_values))
    for layer_module in vm.encoder.layers[: layer + 1]:
        hidden = _run_layer(layer_module, hidden)
    return hidden


def last_hidden_from(clip: torch.nn.Module, hidden: torch.Tensor, layer: int) -> torch.Tensor:
    """(B, 1 + N, hidden): the last layer's tokens, from hidden states taken after layer `layer`."""
    for layer_module in clip.vision_model.encoder.layers[layer + 1 :]:
        hidden = _run_layer(layer_module, hidden)
    return hidden


def finish_from(clip: torch.nn.Module, hidden: torch.Tensor, layer: int) -> torch.Tensor:
    """Projected image features from hidden states taken after layer `layer`."""
    last = last_hidden_from(clip, hidden, layer)
    return clip.visual_projection(clip.vision_model.post_layernorm(last[:, 0, :]))


def patch_attention(
    clip: torch.nn.Module, text_features: torch.Tensor, partner_hidden: torch.Tensor
) -> torch.Tensor:
    """(B, N) attention of each sentence embedding over its partner's patch tokens (the last layer's:
    `last_hidden_from`), in the shared space."""
    patches = clip.visual_projection(clip.vision_model.post_layernorm(partner_hidden[:, 1:, :]))
    q = torch.nn.functional.normalize(text_features, dim=-1).unsqueeze(1)
    k = torch.nn.functional.normalize(patches, dim=-1)
    return torch.softmax((q * k).sum(-1) / math.sqrt(k.shape[-1]), dim=-1)


def top_patch_mask(attention: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """(B, N) bool: the ceil(lam x N) most attended patches of each row (lam per row, in [0, 1])."""
    n = attention.shape[1]
    k = torch.ceil(lam.clamp(0, 1) * n).long()
    ranks = attention.argsort(dim=1, descending=True).argsort(dim=1)
    return ranks < k.unsqueeze(1)


def _mix_patches(h: torch.Tensor, h_partner: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(1 - m) * h + m * h_partner over the patch tokens; the CLS token stays the image's."""
    m = torch.cat([torch.zeros_like(mask[:, :1]), mask], dim=1).unsqueeze(-1).to(h.dtype)
    return (1 - m) * h + m * h_partner


def mixed_image_features(
    clip: torch.nn.Module, pixels: torch.Tensor, partner_pixels: torch.Tensor, mask: torch.Tensor, layer: int
) -> torch.Tensor:
    """Image features with the masked patch states of `partner_pixels` mixed in after `layer`."""
    h = hidden_states_at(clip, pixels, layer)
    hp = hidden_states_at(clip, partner_pixels, layer)
    return finish_from(clip, _mix_patches(h, hp, mask), layer)


def sample_lam(
    n: int, lam_range: tuple[float, float], distribution: str, alpha: float, gen: torch.Generator
) -> torch.Tensor:
    """lambda per row: U[a, b], or Beta(alpha, alpha) (the two readings in docs/method.md, MedCutMix)."""
    if distribution == "beta":
        import numpy as np

        # torch's Beta sampler takes no generator; seed numpy's from ours so runs stay reproducible.
        rng = np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))
        return torch.from_numpy(rng.beta(alpha, alpha, n)).float()
    a, b = lam_range
    return a + (b - a) * torch.rand(n, generator=gen)


def medcutmix_image_features(
    clip: torch.nn.Module,
    pixels: torch.Tensor,
    partner: torch.Tensor,
    lam: torch.Tensor,
    active: torch.Tensor,
    sentence_features: torch.Tensor,
    layer: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image features of a batch in which row i takes the patch states of row partner[i] that the
    inserted sentence's embedding (sentence_features[i]) attends to most; inactive rows are unchanged.

    One forward pass to layer l serves both sides (the partner is another row of the same batch);
    gradients flow through both images' states; the patch choice is made without gradient, from
    the last layer's tokens of the same states.
    Returns (features, mask) with mask (B, N) the patches taken from the partner.
    """
    h = hidden_states_at(clip, pixels, layer)
    with torch.no_grad():
        last = last_hidden_from(clip, h.detach(), layer)  # the partner is a row of this batch
        attention = patch_attention(clip, sentence_features.to(h.dtype), last[partner])
        mask = top_patch_mask(attention, lam.to(attention.device)) & active.to(attention.device).unsqueeze(1)
    return finish_from(clip, _mix_patches(h, h[partner], mask), layer), mask
