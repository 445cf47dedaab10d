"""CheXzero's zero-shot classifier on a transformers CLIP checkpoint.

The method and its sources: docs/method.md, CheXzero zero-shot evaluation.

For each label, the positive templates ("{}") and negative templates ("no {}") are embedded,
L2-normalised, averaged over templates and normalised again; an image's probability for the label is
the softmax over its two *raw* cosine similarities (no logit scale): exp(s+) / (exp(s+) + exp(s-)).
Images get CheXzero's preprocessing (aspect-kept resize, zero pad, its mean/std, bicubic resize).

No Ray here: the evaluation job maps `ZeroShotModel.embed_images` over Ray Data batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

DEFAULT_TEMPLATES = (("{}",), ("no {}",))


def _features(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out.pooler_output


class ZeroShotModel:
    def __init__(self, path: str, *, pad_size: int = 320, use_gpu: bool = False, dtype: str = "float32"):
        from transformers import CLIPModel, CLIPTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # one bar per checkpoint load is noise in job logs

        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.model = CLIPModel.from_pretrained(path, torch_dtype=getattr(torch, dtype)).to(self.device).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(path)
        self.size = int(self.model.config.vision_config.image_size)
        self.pad_size = pad_size

    def pixels(self, images: Sequence[np.ndarray]) -> np.ndarray:
        from pairaug_ray.models.clip import chexzero_pixels

        return np.stack([chexzero_pixels(im, self.size, self.pad_size) for im in images])

    @torch.no_grad()
    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(pixels).to(self.device, self.model.dtype)
        f = _features(self.model.get_image_features(pixel_values=x)).float()
        return torch.nn.functional.normalize(f, dim=-1).cpu().numpy()

    def embed_images(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.embed_pixels(self.pixels(images))

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        from pairaug_ray.models.clip import tokenize

        ids, mask = tokenize(self.tokenizer, list(texts))
        f = _features(
            self.model.get_text_features(
                input_ids=torch.from_numpy(ids).to(self.device),
                attention_mask=torch.from_numpy(mask).to(self.device),
            )
        ).float()
        return torch.nn.functional.normalize(f, dim=-1).cpu().numpy()

    def class_embeddings(self, labels: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """(L, D): per label, the normalised mean of its normalised template embeddings."""
        out = []
        for label in labels:
            e = self.embed_texts([t.format(label) for t in templates]).mean(axis=0)
            out.append(e / np.linalg.norm(e))
        return np.stack(out)


def zero_shot_probabilities(
    image_embeddings: np.ndarray, positive: np.ndarray, negative: np.ndarray
) -> np.ndarray:
    """(n, L): softmax over the raw cosines with the positive and the negative class embeddings."""
    s_pos, s_neg = image_embeddings @ positive.T, image_embeddings @ negative.T
    return 1.0 / (1.0 + np.exp(s_neg - s_pos))  # = exp(s+) / (exp(s+) + exp(s-)), without overflow


def ensemble(probabilities: Sequence[np.ndarray]) -> np.ndarray:
    """CheXzero's ensemble: the arithmetic mean of the checkpoints' probabilities."""
    return np.mean(np.stack(list(probabilities)), axis=0)


@torch.no_grad()
def validation_auc(
    clip: torch.nn.Module,
    tokenizer,
    pixels: torch.Tensor,
    y: np.ndarray,
    labels: Sequence[str],
    batch_size: int = 64,
) -> float:
    """Macro zero-shot AUC with CheXzero's ("{}", "no {}") prompts of a CLIP being trained (no
    bootstrap): the val_auc that ranks checkpoints for the ensemble. NaN labels are left out."""
    from pairaug_ray.eval.metrics import auc_from_counts
    from pairaug_ray.models.clip import tokenize

    was_training = clip.training
    clip.eval()
    device = next(clip.parameters()).device

    def text(prompts: list[str]) -> np.ndarray:
        ids, mask = tokenize(tokenizer, prompts)
        f = _features(
            clip.get_text_features(
                input_ids=torch.from_numpy(ids).to(device), attention_mask=torch.from_numpy(mask).to(device)
            )
        )
        return torch.nn.functional.normalize(f.float(), dim=-1).cpu().numpy()

    img = np.concatenate(
        [
            torch.nn.functional.normalize(
                _features(
                    clip.get_image_features(pixel_values=pixels[i : i + batch_size].to(device))
                ).float(),
                dim=-1,
            )
            .cpu()
            .numpy()
            for i in range(0, len(pixels), batch_size)
        ]
    )
    probs = zero_shot_probabilities(img, text(list(labels)), text([f"no {lb}" for lb in labels]))
    clip.train(was_training)
    ones = np.ones((1, len(y)))
    aucs = [auc_from_counts(y[:, j], probs[:, j], ones)[0] for j in range(len(labels))]
    finite = [a for a in aucs if np.isfinite(a)]
    return float(np.mean(finite)) if finite else float("nan")
