"""Text-to-image training batches: image decoding and tokenisation in the Ray Data pipeline.

`PreprocessT2I` (an actor per CPU share) turns pair rows into what the fine-tuning loop consumes:
the image as a Stable Diffusion VAE expects it (RGB in [-1, 1], square, `size` pixels) and the
report's CLIP token ids. Which text is RoentGen's choice (the impression) or findings + impression
(text/train_text.py), as in the CLIP training.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from pairaug_ray import images, schema
from pairaug_ray.models.tokenizer import load_tokenizer
from pairaug_ray.text.train_text import training_text

log = logging.getLogger(__name__)


def vae_pixels(grey: np.ndarray, size: int) -> np.ndarray:
    """A grey radiograph (H, W) as a VAE input: resized to size x size (the phantom and MIMIC-CXR-JPG
    are near-square; RoentGen resizes too), three equal channels, scaled to [-1, 1]. (3, size, size)."""
    img = Image.fromarray(images.to_uint8(grey)).resize((size, size), Image.Resampling.BICUBIC)
    x = np.asarray(img, dtype=np.float32) / 127.5 - 1.0
    return np.repeat(x[None], 3, axis=0)


class PreprocessT2I:
    """Ray Data actor: pair rows -> pixel_values (N, 3, size, size) and input_ids (N, 77)."""

    def __init__(self, size: int, text: str, tokenizer_source: str | None):
        self.size, self.text = size, text
        self.tokenizer = load_tokenizer(tokenizer_source)

    def __call__(self, batch: pa.Table) -> dict[str, Any]:
        pixels, texts = [], []
        for row in batch.to_pylist():
            try:
                pixels.append(vae_pixels(images.read_image(row[schema.IMAGE_URI]), self.size))
            except images.ImageReadError as e:  # validated corpora have none; never stop training for one
                log.warning("generator training skips pair %s: %s", row.get(schema.PAIR_ID), e)
                continue
            texts.append(training_text(row, self.text))
        ids = (
            self.tokenizer(
                texts, padding="max_length", max_length=77, truncation=True, return_tensors="np"
            ).input_ids
            if texts
            else np.zeros((0, 77), np.int64)
        )
        return {
            "pixel_values": np.stack(pixels)
            if pixels
            else np.zeros((0, 3, self.size, self.size), np.float32),
            "input_ids": ids.astype(np.int64),
        }
