"""The CheXzero-style CLIP: architecture presets, its preprocessing, save/load in transformers' format.

CheXzero fine-tunes OpenAI's ViT-B/32 CLIP at 224 px with a 12-layer, width-512, 8-head text
transformer over the CLIP BPE with context 77 (docs/method.md, CheXzero-style CLIP pretraining).
The model is a transformers `CLIPModel`, so a trained checkpoint is a folder that
`CLIPModel.from_pretrained` and this project's `hf-clip` scorer load as they are.

Preprocessing as CheXzero: the radiograph is resized with its aspect kept so the long side is
`pad_size` (320), zero-padded to a centred square, normalised with CheXzero's dataset mean and std
(101.48761 / 83.43944 on the 0-255 scale), resized (bicubic) to the model's input size and
repeated to three channels. Text: CLIP BPE, context 77; longer reports are truncated with the end
token kept (CheXzero sets the last token to EOT).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from pairaug_ray.images import to_uint8
from pairaug_ray.models.refs import DEFAULT_CACHE_DIR, resolve_model
from pairaug_ray.models.tokenizer import BOS_ID, CONTEXT_LENGTH, EOS_ID, VOCAB_SIZE, default_tokenizer

CHEXZERO_MEAN_255, CHEXZERO_STD_255 = 101.48761, 83.43944

_TEXT_512 = {
    "vocab_size": VOCAB_SIZE,
    "max_position_embeddings": CONTEXT_LENGTH,
    "hidden_size": 512,
    "intermediate_size": 2048,
    "num_hidden_layers": 12,
    "num_attention_heads": 8,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "pad_token_id": EOS_ID,
}

# Architecture presets as data: CLIPConfig keyword arguments.
PRESETS: dict[str, dict[str, Any]] = {
    # OpenAI ViT-B/32, CheXzero's default (initialised from OpenAI's weights when train.init is set).
    "vit-b-32": {
        "projection_dim": 512,
        "text_config": _TEXT_512,
        "vision_config": {
            "image_size": 224,
            "patch_size": 32,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
        },
    },
    # CheXzero's random-init alternative: ViT-B/16 (at 224 px here; CheXzero used 320 px).
    "vit-b-16": {
        "projection_dim": 512,
        "text_config": _TEXT_512,
        "vision_config": {
            "image_size": 224,
            "patch_size": 16,
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
        },
    },
    # For tests and the laptop demo: the same shape of model, a few hundred thousand parameters.
    "tiny": {
        "projection_dim": 32,
        "text_config": {
            **_TEXT_512,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        "vision_config": {
            "image_size": 64,
            "patch_size": 16,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
    },
}


def build_clip(
    preset: str, init: str | None = None, seed: int = 0, cache_dir: str | None = None
) -> CLIPModel:
    """A CLIPModel: from `init` when given (a transformers CLIP folder, an s3:// prefix fetched once
    per node into `cache_dir`, or a hub id such as openai/clip-vit-base-patch32), else random in the
    preset's shape."""
    if init:
        model = resolve_model(init, cache_dir or DEFAULT_CACHE_DIR)
        return CLIPModel.from_pretrained(model.path, revision=model.revision)
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
    torch.manual_seed(seed)
    return CLIPModel(CLIPConfig(**PRESETS[preset]))


def image_size(model: CLIPModel) -> int:
    return int(model.config.vision_config.image_size)


def make_processor(size: int, tokenizer: CLIPTokenizer | None = None) -> CLIPProcessor:
    """The processor saved with a trained model, for scoring: CheXzero's statistics, the CLIP BPE.
    (Scoring resizes the short side and centre-crops, as CLIPImageProcessor does; training pads.)"""
    if tokenizer is None:
        tokenizer = default_tokenizer()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=[CHEXZERO_MEAN_255 / 255] * 3,
        image_std=[CHEXZERO_STD_255 / 255] * 3,
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def save_clip(model: CLIPModel, processor: CLIPProcessor, out_dir: str | Path) -> str:
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return str(out_dir)


def chexzero_pixels(image: np.ndarray, size: int, pad_size: int = 320) -> np.ndarray:
    """(3, size, size) float32: aspect-kept resize to pad_size, centred zero pad, normalise, bicubic resize."""
    grey = Image.fromarray(to_uint8(image))
    scale = pad_size / max(grey.size)
    new = (max(1, round(grey.width * scale)), max(1, round(grey.height * scale)))
    grey = grey.resize(new, Image.Resampling.LANCZOS)  # CheXzero: Image.ANTIALIAS (= LANCZOS)
    square = Image.new("L", (pad_size, pad_size), 0)
    square.paste(grey, ((pad_size - new[0]) // 2, (pad_size - new[1]) // 2))
    x = (torch.from_numpy(np.asarray(square, dtype=np.float32)) - CHEXZERO_MEAN_255) / CHEXZERO_STD_255
    if pad_size != size:
        x = torch.nn.functional.interpolate(
            x[None, None], size=(size, size), mode="bicubic", align_corners=False
        )[0, 0]
    return x.expand(3, size, size).numpy().copy()


def tokenize(tokenizer: CLIPTokenizer, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """input_ids and attention_mask, (n, 77) int64: truncated reports keep their end token."""
    enc = tokenizer(
        texts, padding="max_length", truncation=True, max_length=CONTEXT_LENGTH, return_tensors="np"
    )
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    full = mask.sum(axis=1) == CONTEXT_LENGTH
    ids[full, -1] = EOS_ID  # transformers already keeps it; CheXzero's rule, stated explicitly
    return ids, mask
