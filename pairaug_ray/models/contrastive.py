"""Symmetric InfoNCE over the global batch (CLIP's loss), with negatives gathered from every worker.

Each worker embeds its share of the batch; the features of all workers are all-gathered *with
gradient* (`torch.distributed.nn.functional.all_gather`), and every worker computes the loss over
the full global similarity matrix. The all-gather's backward sums the gradients that the W
identical losses send to each worker's features (W x dL/df_r), and DDP then averages parameter
gradients over the W workers, so every parameter receives exactly dL/dtheta of the global-batch
loss: the same gradient one process computes over the whole batch (tested).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

MAX_LOGIT_SCALE = math.log(100.0)  # CLIP clamps the learned temperature at 100


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return x
    if torch.distributed.get_world_size() == 1:
        return x
    import warnings

    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        # Deprecated in favour of a private API (_functional_collectives); still the public,
        # differentiable all-gather in torch 2.x.
        warnings.simplefilter("ignore", FutureWarning)
        return torch.cat(all_gather(x), dim=0)


def clip_loss(
    image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """Mean of image->text and text->image cross-entropy over exp(logit_scale) x cosine similarities.

    `logit_scale` is the learned log-temperature (CLIP's parameter); row i of the gathered image
    features is the positive of row i of the gathered text features.
    """
    img = gather_with_grad(F.normalize(image_features.float(), dim=-1))
    txt = gather_with_grad(F.normalize(text_features.float(), dim=-1))
    logits = logit_scale.float().exp() * img @ txt.T
    labels = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def clamp_logit_scale(logit_scale: torch.nn.Parameter) -> None:
    """After each optimiser step, as CLIP and CheXzero do."""
    with torch.no_grad():
        logit_scale.clamp_(0, MAX_LOGIT_SCALE)


class DualEncoder(torch.nn.Module):
    """CLIPModel behind one forward() returning (image features, text features, logit scale), so that
    DDP's forward runs (its gradient sync is armed in forward; calling get_*_features directly on
    the wrapped model would bypass it)."""

    def __init__(self, clip: torch.nn.Module):
        super().__init__()
        self.clip = clip

    @staticmethod
    def _pooled(x) -> torch.Tensor:
        # transformers < 5 returns the projected features; 5.x a ModelOutput carrying them as pooler_output
        return x if isinstance(x, torch.Tensor) else x.pooler_output

    def forward(
        self,
        pixel_values: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        mix: dict[str, torch.Tensor] | None = None,
    ):
        """`mix` (MedCutMix; input_ids then already hold the mixed reports): partner, lam, active,
        sentence_ids, sentence_mask (the inserted sentences) and layer. Mixing runs inside forward so
        DDP sees every parameter it uses."""
        txt = self._pooled(self.clip.get_text_features(input_ids=input_ids, attention_mask=attention_mask))
        if mix is None:
            img = self._pooled(self.clip.get_image_features(pixel_values=pixel_values))
            return img, txt, self.clip.logit_scale
        from pairaug_ray.models.medcutmix import medcutmix_image_features

        with torch.no_grad():
            query = self._pooled(
                self.clip.get_text_features(
                    input_ids=mix["sentence_ids"], attention_mask=mix["sentence_mask"]
                )
            )
        img, _ = medcutmix_image_features(
            self.clip, pixel_values, mix["partner"], mix["lam"], mix["active"], query, int(mix["layer"])
        )
        return img, txt, self.clip.logit_scale
