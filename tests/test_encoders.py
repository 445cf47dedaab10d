"""The report card's image encoders, loaded through the same `from_pretrained` path as real weights:
RAD-DINO's classes (a DINOv2 model with a BiT image processor, as microsoft/rad-dino ships) built
here from a config, and the tiny CLIP."""

from __future__ import annotations

import numpy as np
import pytest

from pairaug_ray.eval.encoders import ClipImageEncoder, RadDinoEncoder, load_encoder


@pytest.fixture(scope="module")
def rad_dino_dir(tmp_path_factory) -> str:
    import torch
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    # rad-dino's layout at toy size: 518 px crops of 14 px patches there, 56 px here.
    config = Dinov2Config(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=56,
        patch_size=14,
    )
    out = tmp_path_factory.mktemp("rad-dino")
    Dinov2Model(config).eval().save_pretrained(out)
    BitImageProcessor(
        size={"shortest_edge": 56},
        crop_size={"height": 56, "width": 56},
        image_mean=[0.5307, 0.5307, 0.5307],
        image_std=[0.2583, 0.2583, 0.2583],
    ).save_pretrained(out)
    return str(out)


def _radiographs() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(80, 80), dtype=np.uint8)
    brighter = np.clip(base.astype(int) + 60, 0, 255).astype(np.uint8)
    return [base, base.copy(), brighter, rng.integers(0, 65535, size=(90, 70), dtype=np.uint16)]


def test_rad_dino_features_are_the_cls_token_of_grey_images(rad_dino_dir):
    enc = load_encoder("rad-dino", rad_dino_dir)
    assert isinstance(enc, RadDinoEncoder)
    feats = enc.embed(_radiographs())
    assert feats.shape == (4, 32) and feats.dtype == np.float32
    # The same image twice: the same features; another image: others. 16-bit input is accepted.
    assert np.allclose(feats[0], feats[1]) and not np.allclose(feats[0], feats[2])
    # The CLS token, layer-normed, is what AutoModel's output pools to.
    import torch
    from transformers import AutoImageProcessor, AutoModel

    model = AutoModel.from_pretrained(rad_dino_dir).eval()
    from PIL import Image

    inputs = AutoImageProcessor.from_pretrained(rad_dino_dir)(
        images=[Image.fromarray(_radiographs()[0]).convert("RGB")], return_tensors="pt"
    )
    with torch.no_grad():
        cls = model(**inputs).pooler_output[0].numpy()
    assert np.allclose(feats[0], cls, atol=1e-5)


def test_clip_features_are_normalised_embeddings(tiny_models):
    enc = load_encoder("clip", tiny_models["scorer"], pad_size=64)
    assert isinstance(enc, ClipImageEncoder)
    feats = enc.embed(_radiographs())
    assert np.allclose(np.linalg.norm(feats, axis=1), 1.0, atol=1e-5)
    assert np.allclose(feats[0], feats[1]) and not np.allclose(feats[0], feats[2])
    with pytest.raises(ValueError, match="unknown encoder kind"):
        load_encoder("inception", tiny_models["scorer"])


def test_pixel_features_are_the_image_area_averaged():
    from pairaug_ray.eval.encoders import load_encoder

    enc = load_encoder("pixels", "8")
    big = np.zeros((64, 64), np.uint8)
    big[:32, :32] = 255  # a bright upper-left quadrant
    small = np.zeros((4, 4), np.uint16)  # a 16-bit image smaller than the side is enlarged
    small[:2, :2] = 65535
    feats = enc.embed([big, small])
    assert feats.shape == (2, 64) and feats.dtype == np.float32
    grid = feats[0].reshape(8, 8)
    assert np.allclose(grid[:4, :4], 1.0) and np.allclose(grid[4:, :], 0.0) and np.allclose(grid[:, 4:], 0.0)
    assert feats[1].reshape(8, 8)[0, 0] > 0.9 and feats[1].reshape(8, 8)[7, 7] < 0.1
    with pytest.raises(ValueError, match="names the side in pixels"):
        load_encoder("pixels", "/models/clip")
