"""Tiny random-weight models, built from config dicts and saved like real checkpoints.

They exercise the exact code paths of real weights (`StableDiffusionPipeline.from_pretrained`,
`CLIPModel.from_pretrained`) at a cost a laptop CPU and the test suite can afford. Shapes keep the
structure that matters downstream:

- The tiny Stable Diffusion has a factor-8 VAE (like SD), a 256 px default size (32x32 latents) and
  cross-attention at 32x32, 16x16 and 8x8 latent resolutions, so prompt-to-prompt's "self-attention
  only at maps of 16x16 or smaller" rule has layers on both sides of it. Its text encoder uses the
  real 49,408-token CLIP vocabulary and 77-token context, so prompt truncation behaves as in RoentGen.
- The tiny CLIP is a ViT dual encoder with the same tokenizer, usable as a pair scorer and as the
  pretraining model.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
)

from pairaug_ray.models.tokenizer import BOS_ID, CONTEXT_LENGTH, EOS_ID, VOCAB_SIZE, build_clip_tokenizer

TINY_SD_DIR = "tiny-sd"
TINY_CLIP_DIR = "tiny-clip"

TINY_UNET: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (32, 64, 64),
    "layers_per_block": 1,
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
    "norm_num_groups": 16,
}
TINY_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (16, 16, 32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "sample_size": 256,
}
TINY_SD_TEXT: dict[str, Any] = {
    "vocab_size": VOCAB_SIZE,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": CONTEXT_LENGTH,
    "bos_token_id": BOS_ID,
    "eos_token_id": EOS_ID,
    "pad_token_id": EOS_ID,
}
# Stable Diffusion 1.x's scheduler config (RoentGen is fine-tuned from SD 1.x).
SD1_PNDM: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "set_alpha_to_one": False,
}
TINY_CLIP: dict[str, Any] = {
    "projection_dim": 32,
    "text_config": {**TINY_SD_TEXT, "hidden_size": 64, "intermediate_size": 128},
    "vision_config": {
        "image_size": 64,
        "patch_size": 8,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_channels": 3,
    },
}
# Stable Diffusion 1.5's architecture (the size of RoentGen), for benchmarks with random weights.
SD15_UNET: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "down_block_types": (
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "CrossAttnDownBlock2D",
        "DownBlock2D",
    ),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "sample_size": 512,
}
SD15_TEXT: dict[str, Any] = {
    **TINY_SD_TEXT,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
}
SD_ARCHITECTURES = {"tiny": (TINY_UNET, TINY_VAE, TINY_SD_TEXT), "sd15": (SD15_UNET, SD15_VAE, SD15_TEXT)}

# CheXzero normalises grey radiographs with its dataset statistics (0-255 scale), not ImageNet's.
CHEXZERO_MEAN = 101.48761 / 255
CHEXZERO_STD = 83.43944 / 255


def build_tiny_sd(
    seed: int = 0, tokenizer_dir: str | Path | None = None, arch: str = "tiny"
) -> StableDiffusionPipeline:
    """A random-weight Stable Diffusion pipeline: `tiny` for tests, `sd15` (SD 1.5 / RoentGen sized)
    for benchmarks."""
    unet_cfg, vae_cfg, text_cfg = SD_ARCHITECTURES[arch]
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_clip_tokenizer(tokenizer_dir or tmp)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**vae_cfg)
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_cfg))
    return StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=PNDMScheduler(**SD1_PNDM),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def build_tiny_clip(seed: int = 0) -> tuple[CLIPModel, CLIPProcessor]:
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = build_clip_tokenizer(tmp)
    torch.manual_seed(seed)
    model = CLIPModel(CLIPConfig(**TINY_CLIP))
    size = TINY_CLIP["vision_config"]["image_size"]
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": size},
        crop_size={"height": size, "width": size},
        image_mean=[CHEXZERO_MEAN] * 3,
        image_std=[CHEXZERO_STD] * 3,
    )
    return model, CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def make_tiny_models(out_dir: str | Path, seed: int = 0) -> dict[str, str]:
    """Save the tiny Stable Diffusion pipeline and tiny CLIP under `out_dir`; returns their paths."""
    out = Path(out_dir)
    sd_dir, clip_dir = out / TINY_SD_DIR, out / TINY_CLIP_DIR
    build_tiny_sd(seed).save_pretrained(sd_dir, safe_serialization=True)
    model, processor = build_tiny_clip(seed)
    model.save_pretrained(clip_dir, safe_serialization=True)
    processor.save_pretrained(clip_dir)
    info = {"seed": seed, "note": "random weights, for tests and the demo; not a trained model"}
    for d in (sd_dir, clip_dir):
        (d / "pairaug_tiny.json").write_text(json.dumps(info, indent=2))
    return {"diffusion": str(sd_dir), "scorer": str(clip_dir)}


# A word list for the tiny MedCLIP's WordPiece vocabulary (the real one uses Bio_ClinicalBERT's).
_REPORT_WORDS = [
    "no",
    "there",
    "is",
    "a",
    "an",
    "the",
    "of",
    "and",
    "or",
    "with",
    "without",
    "small",
    "moderate",
    "large",
    "mild",
    "severe",
    "left",
    "right",
    "bilateral",
    "pleural",
    "effusion",
    "effusions",
    "pneumothorax",
    "consolidation",
    "edema",
    "pulmonary",
    "atelectasis",
    "cardiomegaly",
    "heart",
    "size",
    "normal",
    "enlarged",
    "lung",
    "lungs",
    "base",
    "bases",
    "lobe",
    "upper",
    "lower",
    "middle",
    "focal",
    "opacity",
    "nodule",
    "clear",
    "unchanged",
    "new",
    "increased",
    "decreased",
    "resolved",
    "stable",
    "silhouette",
    "cardiac",
    "mediastinal",
    "contours",
    "are",
    "tube",
    "catheter",
    "line",
    "acute",
    "process",
    "cardiopulmonary",
    "findings",
    "impression",
    "interval",
]


def make_tiny_medclip(out_dir: str | Path, seed: int = 0) -> str:
    """A random-weight MedCLIP-ViT in its released checkpoint layout (see models.scorers.MedCLIPScorer):
    pytorch_model.bin with MedCLIP's key names, swin/config.json and bert/ (config + tokenizer)."""
    from transformers import BertConfig, BertModel, BertTokenizer, SwinConfig, SwinModel

    out = Path(out_dir)
    (out / "swin").mkdir(parents=True, exist_ok=True)
    (out / "bert").mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", *_REPORT_WORDS]
    (out / "bert" / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(out / "bert" / "vocab.txt"), do_lower_case=True, model_max_length=512).save_pretrained(
        out / "bert"
    )
    swin_cfg = SwinConfig(
        image_size=224, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=7
    )
    bert_cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    swin_cfg.save_pretrained(out / "swin")
    bert_cfg.save_pretrained(out / "bert")
    torch.manual_seed(seed)
    swin, bert = SwinModel(swin_cfg), BertModel(bert_cfg)
    state = {f"vision_model.model.{k}": v for k, v in swin.state_dict().items()}
    state |= {f"text_model.model.{k}": v for k, v in bert.state_dict().items()}
    state["vision_model.projection_head.weight"] = torch.nn.Linear(
        swin_cfg.hidden_size, 16, bias=False
    ).weight.detach()
    state["text_model.projection_head.weight"] = torch.nn.Linear(
        bert_cfg.hidden_size, 16, bias=False
    ).weight.detach()
    state["logit_scale"] = torch.tensor(float(np.log(1 / 0.07)))
    torch.save(state, out / "pytorch_model.bin")
    return str(out)
