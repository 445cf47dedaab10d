"""Image encoders for the generator report card: grey radiographs -> feature vectors (no Ray).

* `clip`: the image tower of a CLIP (a folder `CLIPModel.from_pretrained` loads: a `pairaug train`
  checkpoint's model, or any CheXzero-style CLIP), through CheXzero's resize-and-pad; the normalised
  projected embedding. On the phantom, a CLIP trained on its real pairs is the encoder.
* `rad-dino`: RAD-DINO (`microsoft/rad-dino`, a DINOv2 ViT-B/14 trained on chest radiographs) or any
  checkpoint `AutoModel` and `AutoImageProcessor` load; the last layer's CLS token, the feature
  CheXGenBench computes its Fréchet distance on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from pairaug_ray import images

ENCODER_KINDS = ("clip", "rad-dino")
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


def load_encoder(kind: str, path: str, *, pad_size: int = 320, use_gpu: bool = False) -> ImageEncoder:
    if kind == "clip":
        return ClipImageEncoder(path, pad_size=pad_size, use_gpu=use_gpu)
    if kind == "rad-dino":
        return RadDinoEncoder(path, use_gpu=use_gpu)
    raise ValueError(f"unknown encoder kind {kind!r}; expected one of {', '.join(ENCODER_KINDS)}")
