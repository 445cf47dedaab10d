"""Tiny models through the real from_pretrained paths, the CLIP tokenizer, and model references."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from pairaug_ray import storage
from pairaug_ray.models.refs import ModelNotFoundError, resolve_model
from pairaug_ray.models.tokenizer import BOS_ID, EOS_ID, VOCAB_SIZE, build_clip_tokenizer


def test_clip_tokenizer_matches_openai_ids(tmp_path):
    tok = build_clip_tokenizer(tmp_path)
    assert len(tok) == VOCAB_SIZE and tok.bos_token_id == BOS_ID and tok.eos_token_id == EOS_ID
    # Ids of OpenAI CLIP's tokenizer for these words.
    ids = tok("a photo of a cat").input_ids
    assert ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    long = tok("effusion " * 200, truncation=True, max_length=77).input_ids
    assert len(long) == 77 and long[-1] == EOS_ID


def test_tiny_stable_diffusion_loads_and_generates(tiny_models):
    from diffusers import PNDMScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(tiny_models["diffusion"])
    assert isinstance(pipe.scheduler, PNDMScheduler) and pipe.scheduler.config.skip_prk_steps
    assert pipe.vae_scale_factor == 8 and pipe.unet.config.sample_size == 32
    assert pipe.tokenizer.model_max_length == 77 and len(pipe.tokenizer) == 49408
    # Cross-attention at 32x32, 16x16 and 8x8 latent maps (so P2P's "<= 16x16" rule splits them).
    assert len(pipe.unet.attn_processors) == 20
    out = pipe(
        "moderate left pleural effusion",
        num_inference_steps=2,
        guidance_scale=4.0,
        height=64,
        width=64,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert out.shape == (1, 64, 64, 3) and np.isfinite(out).all()


def test_tiny_clip_loads_as_a_scorer(tiny_models):
    from PIL import Image
    from transformers import CLIPModel, CLIPProcessor

    model = CLIPModel.from_pretrained(tiny_models["scorer"]).eval()
    proc = CLIPProcessor.from_pretrained(tiny_models["scorer"])
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 80), dtype=np.uint8)).convert("RGB")
    batch = proc(
        text=["no pleural effusion", "large effusion"], images=[img], return_tensors="pt", padding=True
    )
    assert batch["pixel_values"].shape == (1, 3, 64, 64)
    with torch.no_grad():
        out = model(**batch)
    assert out.logits_per_image.shape == (1, 2)
    emb = out.image_embeds
    assert torch.allclose(emb.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_resolve_local_hub_and_missing(tmp_path, tiny_models):
    r = resolve_model(tiny_models["scorer"])
    assert r.source == "local" and os.path.isdir(r.path)
    hub = resolve_model("StanfordAIMI/RoentGen@v1")
    assert (hub.source, hub.path, hub.revision) == ("hub", "StanfordAIMI/RoentGen", "v1")
    with pytest.raises(ModelNotFoundError, match="no such local folder"):
        resolve_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(ModelNotFoundError, match="no such local folder"):
        resolve_model("./models/roentgen")
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match="is a file"):
        resolve_model(str(f))


@pytest.mark.s3
def test_resolve_s3_downloads_once_per_node(s3_bucket, tiny_models, tmp_path):
    from transformers import CLIPModel

    uri = f"{s3_bucket}/models/tiny-clip"
    storage.upload_tree(tiny_models["scorer"], uri)
    cache = str(tmp_path / "cache")
    first = resolve_model(uri, cache)
    assert first.source == "s3" and os.path.isfile(os.path.join(first.path, "config.json"))
    CLIPModel.from_pretrained(first.path)  # the downloaded copy is a complete checkpoint
    marker = os.path.join(first.path, "config.json")
    mtime = os.path.getmtime(marker)
    second = resolve_model(uri, cache)
    assert second.path == first.path and os.path.getmtime(marker) == mtime  # served from the cache
    with pytest.raises(ModelNotFoundError, match="no objects under that S3 prefix"):
        resolve_model(f"{s3_bucket}/models/absent", cache)
    # train.init takes the same references: a CLIP to fine-tune from S3 (as the MIMIC template's
    # OpenAI CLIP synced to a bucket), with its tokenizer.
    from pairaug_ray.models.clip import build_clip
    from pairaug_ray.models.tokenizer import load_tokenizer

    model = build_clip("vit-b-32", uri, cache_dir=cache)
    want = CLIPModel.from_pretrained(tiny_models["scorer"])
    assert torch.equal(model.logit_scale, want.logit_scale)
    assert (
        model.config.projection_dim == want.config.projection_dim
    )  # the checkpoint's shape, not the preset's
    assert load_tokenizer(uri, cache)("no effusion")["input_ids"][0] == 49406
