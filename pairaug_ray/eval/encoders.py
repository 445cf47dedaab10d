"""Image encoders for the generator report card: grey radiographs -> feature vectors (no Ray).

* `clip`: the image tower of a CLIP (a folder `CLIPModel.from_pretrained` loads: a `pairaug train`
  checkpoint's model, or any CheXzero-style CLIP), through CheXzero's resize-and-pad; the normalised
  projected embedding. On the phantom, a CLIP trained on its real pairs is the encoder.
* `rad-dino`: RAD-DINO (`microsoft/rad-dino`, a DINOv2 ViT-B/14 trained on chest radiographs) or any
  checkpoint `AutoModel` and `AutoImageProcessor` load; the last layer's CLS token, the feature
  CheXGenBench computes its Fréchet distance on.
* `pixels`: the grey image itself, area-averaged to a small square (the path names its side, e.g. "32").
  It shares nothing with any model the pipeline trains, so a classifier on it is an independent
  grader of the findings an image shows (the report card's default; docs/generator.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from pairaug_ray import images

ENCODER_KINDS = ("clip", "rad-dino", "pixels")
RAD_DINO = "microsoft/rad-dino"


class ImageEncoder(Protocol):
    def embed(self, pictures: Sequence[np.ndarray]) -> np.ndarray:
        """(N, D) float32 features of N grey images."""
        ...


class ClipImageEncoder:
    def __init__(self, path: str, *, pad_size: int = 320, use_gpu: bool = False):
        from pairaug_ray.eval.zeroshot import ZeroShotModel

        self.model = ZeroShotModel(path, pad_size=pad_size, use_gpu=use_gpu)

    def embed(self, pictures: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.embed_images(pictures).astype(np.float32)


class RadDinoEncoder:
    def __init__(self, path: str = RAD_DINO, *, use_gpu: bool = False):
        from transformers import AutoImageProcessor, AutoModel
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()

    @torch.no_grad()
    def embed(self, pictures: Sequence[np.ndarray]) -> np.ndarray:
        rgb = [Image.fromarray(images.to_uint8(p)).convert("RGB") for p in pictures]
        inputs = self.processor(images=rgb, return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        # The CLS token before pooling heads: DINOv2's pooler_output is the layer-normed CLS token.
        cls = (
            out.pooler_output
            if getattr(out, "pooler_output", None) is not None
            else out.last_hidden_state[:, 0]
        )
        return cls.float().cpu().numpy()


class PixelEncoder:
    """Pixels as features: each image area-averaged (or, when smaller, bilinearly enlarged) to
    size x size, scaled to [0, 1] and flattened."""

    def __init__(self, size: int):
        if size < 4:
            raise ValueError(f"pixel encoder size must be at least 4, got {size}")
        self.size = size

    def embed(self, pictures: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(pictures), self.size * self.size), np.float32)
        for i, p in enumerate(pictures):
            grey = Image.fromarray(images.to_uint8(p))
            method = Image.Resampling.BOX if min(grey.size) >= self.size else Image.Resampling.BILINEAR
            small = grey.resize((self.size, self.size), method)
            out[i] = np.asarray(small, np.float32).reshape(-1) / 255.0
        return out


def load_encoder(kind: str, path: str, *, pad_size: int = 320, use_gpu: bool = False) -> ImageEncoder:
    if kind == "clip":
        return ClipImageEncoder(path, pad_size=pad_size, use_gpu=use_gpu)
    if kind == "rad-dino":
        return RadDinoEncoder(path, use_gpu=use_gpu)
    if kind == "pixels":
        try:
            return PixelEncoder(int(path))
        except ValueError:
            raise ValueError(
                f"pixels encoder: the path names the side in pixels (e.g. '32'), got {path!r}"
            ) from None
    raise ValueError(f"unknown encoder kind {kind!r}; expected one of {', '.join(ENCODER_KINDS)}")
