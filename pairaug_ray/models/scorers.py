"""Pair scorers: dual encoders that embed radiographs and reports into one space.

Every scorer returns L2-normalised float32 embeddings, so a similarity is a dot product (cosine),
and exposes the model's temperature as `logit_scale` (exp of the learned log-scale) for the
`scaled` score mode. Images arrive as decoded grey radiographs (uint8 or uint16 arrays) and are
preprocessed exactly as each model expects.

Back-ends (`load_scorer` picks one from the folder's files, or `kind` forces it):
- `hf-clip`: transformers `CLIPModel` and compatible checkpoints, with their own processor. This
  project's CheXzero-style model is saved in this format, so it scores pairs through this path.
- `open-clip`: OpenCLIP-format folders (`open_clip_config.json` + weights, e.g. BiomedCLIP), through
  the `open_clip` package, imported only when used (it needs torchvision).
- `medclip`: MedCLIP-ViT (Wang et al. 2022), the scorer PairAug used, rebuilt from its released
  checkpoint layout: Swin-tiny vision encoder with `pooler_output -> Linear(768, 512, no bias)`,
  Bio_ClinicalBERT text encoder averaging the hidden states of layers 1, 2 and the last over the
  report's tokens (as PairAug's one-report-at-a-time calls did) -> `Linear(768, 512, no bias)`, `logit_scale` clamped
  to [0, ln 100]; images resized to 224 x 224 *without* keeping the aspect ratio, as PairAug's
  pruning scripts did before calling MedCLIP's processor (whose pad-to-square and centre crop are
  then no-ops), normalised with MedCLIP's mean 0.5863 and std 0.2795, the grey channel repeated
  three times.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import torch
from PIL import Image

from pairaug_ray.errors import UserError
from pairaug_ray.images import to_uint8

ScorerKind = Literal["auto", "hf-clip", "open-clip", "medclip"]


class ScorerUnavailableError(UserError, RuntimeError):
    """The scorer kind cannot be loaded here (a missing package or checkpoint file)."""


class Scorer(Protocol):
    model_id: str

    @property
    def logit_scale(self) -> float: ...

    def embed_images(self, images: list[np.ndarray]) -> np.ndarray: ...

    def embed_texts(self, texts: list[str]) -> np.ndarray: ...


def _normalise(x: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.normalize(x.float(), dim=-1).cpu().numpy().astype(np.float32)


def _features(out) -> torch.Tensor:
    """transformers < 5 returns the projected features; 5.x a ModelOutput carrying them as pooler_output."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def _device(use_gpu: bool) -> torch.device:
    return torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")


def _rgb(image: np.ndarray) -> Image.Image:
    return Image.fromarray(to_uint8(image)).convert("RGB")


class HFClipScorer:
    """A transformers CLIP-family dual encoder with its processor (tokenizer + image processor)."""

    def __init__(
        self, path: str, *, revision: str | None = None, use_gpu: bool = False, model_id: str | None = None
    ):
        from transformers import AutoProcessor, CLIPModel

        self.model_id = model_id or path
        self.device = _device(use_gpu)
        self.model = CLIPModel.from_pretrained(path, revision=revision).to(self.device).eval()
        self.processor = AutoProcessor.from_pretrained(path, revision=revision)
        self.max_length = min(77, getattr(self.model.config.text_config, "max_position_embeddings", 77))

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @torch.inference_mode()
    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        pixels = self.processor(images=[_rgb(i) for i in images], return_tensors="pt")["pixel_values"]
        return _normalise(_features(self.model.get_image_features(pixel_values=pixels.to(self.device))))

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tok = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        out = self.model.get_text_features(
            input_ids=tok["input_ids"].to(self.device), attention_mask=tok["attention_mask"].to(self.device)
        )
        return _normalise(_features(out))


class OpenClipScorer:
    """An OpenCLIP-format folder (open_clip_config.json + open_clip_pytorch_model.bin or .safetensors)."""

    def __init__(self, path: str, *, use_gpu: bool = False, model_id: str | None = None):
        try:
            import open_clip
        except ImportError as e:
            raise ScorerUnavailableError(
                "OpenCLIP-format scorers need the open_clip package with torchvision "
                "(pip install open_clip_torch torchvision); or convert the model to transformers' CLIP format"
            ) from e
        self.model_id = model_id or path
        self.device = _device(use_gpu)
        model, preprocess = open_clip.create_model_from_pretrained(f"local-dir:{path}")
        self.model = model.to(self.device).eval()
        self.preprocess = preprocess
        self.tokenizer = open_clip.get_tokenizer(f"local-dir:{path}")

    @property
    def logit_scale(self) -> float:
        return float(self.model.logit_scale.detach().exp())

    @torch.inference_mode()
    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        batch = torch.stack([self.preprocess(_rgb(i)) for i in images]).to(self.device)
        return _normalise(self.model.encode_image(batch))

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        return _normalise(self.model.encode_text(self.tokenizer(texts).to(self.device)))


MEDCLIP_MEAN, MEDCLIP_STD, MEDCLIP_SIZE = 0.5862785803043838, 0.27950088968644304, 224
MEDCLIP_WEIGHTS = "pytorch_model.bin"


class MedCLIPScorer:
    """MedCLIP-ViT from its released checkpoint (`pytorch_model.bin` with keys `vision_model.model.*`,
    `vision_model.projection_head.weight`, `text_model.model.*`, `text_model.projection_head.weight`,
    `logit_scale`), beside the configs it was built from: `swin/config.json` (microsoft/swin-tiny-
    patch4-window7-224) and `bert/` (emilyalsentzer/Bio_ClinicalBERT config and tokenizer)."""

    def __init__(self, path: str, *, use_gpu: bool = False, model_id: str | None = None):
        from transformers import AutoTokenizer, BertConfig, BertModel, SwinConfig, SwinModel

        root = Path(path)
        missing = [
            p for p in (MEDCLIP_WEIGHTS, "swin/config.json", "bert/config.json") if not (root / p).exists()
        ]
        if missing:
            raise FileNotFoundError(
                f"{path} is not a MedCLIP folder: missing {missing} (expected MedCLIP's pytorch_model.bin, "
                "swin/config.json from microsoft/swin-tiny-patch4-window7-224 and bert/ from emilyalsentzer/Bio_ClinicalBERT)"
            )
        self.model_id = model_id or path
        self.device = _device(use_gpu)
        state = torch.load(root / MEDCLIP_WEIGHTS, map_location="cpu", weights_only=True)
        self.vision = SwinModel(SwinConfig.from_pretrained(root / "swin"))
        self.text = BertModel(BertConfig.from_pretrained(root / "bert"), add_pooling_layer=False)
        self.vision_proj = torch.nn.Linear(
            self.vision.config.hidden_size, state["vision_model.projection_head.weight"].shape[0], bias=False
        )
        self.text_proj = torch.nn.Linear(
            self.text.config.hidden_size, state["text_model.projection_head.weight"].shape[0], bias=False
        )
        self._load(state)
        for m in (self.vision, self.text, self.vision_proj, self.text_proj):
            m.to(self.device).eval()
        # MedCLIP clamps the learned log-scale to [0, ln 100] when computing logits.
        self._logit_scale = math.exp(
            min(max(float(state.get("logit_scale", torch.tensor(math.log(1 / 0.07)))), 0.0), math.log(100))
        )
        self.tokenizer = AutoTokenizer.from_pretrained(root / "bert")

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        def part(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

        for module, prefix in ((self.vision, "vision_model.model."), (self.text, "text_model.model.")):
            # MedCLIP's BERT carries a pooler it never uses for embeddings; this text model has none.
            has_pooler = getattr(module, "pooler", None) is not None
            sub = {k: v for k, v in part(prefix).items() if has_pooler or not k.startswith("pooler.")}
            missing, unexpected = module.load_state_dict(sub, strict=False)
            missing = [m for m in missing if not m.endswith("position_ids")]
            if missing or unexpected:
                raise ValueError(
                    f"MedCLIP checkpoint does not match the {prefix[:-1]} architecture: missing {missing[:5]}, unexpected {unexpected[:5]}"
                )
        self.vision_proj.load_state_dict({"weight": state["vision_model.projection_head.weight"]})
        self.text_proj.load_state_dict({"weight": state["text_model.projection_head.weight"]})

    @property
    def logit_scale(self) -> float:
        return self._logit_scale

    @staticmethod
    def preprocess(image: np.ndarray) -> torch.Tensor:
        # PairAug squashes both images to 224 x 224 (`PIL.resize([224, 224])`, bicubic: Pillow's
        # default) before MedCLIP's processor. MedCLIP alone would pad to a square with black; for the
        # square generated images the two agree, for a real non-square radiograph they do not, and
        # the hybrid rule compares the real image with its edit.
        grey = Image.fromarray(to_uint8(image))  # mode L
        resized = grey.resize((MEDCLIP_SIZE, MEDCLIP_SIZE), Image.Resampling.BICUBIC)
        x = (torch.from_numpy(np.asarray(resized, dtype=np.float32) / 255.0) - MEDCLIP_MEAN) / MEDCLIP_STD
        return x.unsqueeze(0).repeat(3, 1, 1)

    @torch.inference_mode()
    def embed_images(self, images: list[np.ndarray]) -> np.ndarray:
        batch = torch.stack([self.preprocess(i) for i in images]).to(self.device)
        return _normalise(self.vision_proj(self.vision(pixel_values=batch).pooler_output))

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tok = self.tokenizer(texts, padding=True, truncation=True, max_length=512, return_tensors="pt").to(
            self.device
        )
        hidden = self.text(**tok, output_hidden_states=True).hidden_states
        layers = torch.stack([hidden[1], hidden[2], hidden[-1]]).mean(dim=0)  # (batch, tokens, 768)
        # MedCLIP averages over every token of its input, padding included; PairAug scored one report
        # at a time, so there was no padding. Averaging over the real tokens gives exactly that
        # per-report result while batching.
        mask = tok["attention_mask"].unsqueeze(-1).to(layers.dtype)
        return _normalise(self.text_proj((layers * mask).sum(dim=1) / mask.sum(dim=1)))


def detect_kind(path: str) -> str:
    root = Path(path)
    if (root / "open_clip_config.json").exists():
        return "open-clip"
    if (root / "swin").is_dir() and (root / "bert").is_dir():
        return "medclip"
    config = root / "config.json"
    if config.exists() and "clip" in json.loads(config.read_text()).get("model_type", ""):
        return "hf-clip"
    raise ValueError(
        f"cannot tell what kind of scorer {path} holds; set score.kind (hf-clip, open-clip, medclip)"
    )


def load_scorer(
    path: str,
    *,
    kind: ScorerKind = "auto",
    revision: str | None = None,
    use_gpu: bool = False,
    model_id: str | None = None,
) -> Scorer:
    kind = detect_kind(path) if kind == "auto" else kind
    if kind == "hf-clip":
        return HFClipScorer(path, revision=revision, use_gpu=use_gpu, model_id=model_id)
    if kind == "open-clip":
        return OpenClipScorer(path, use_gpu=use_gpu, model_id=model_id)
    if kind == "medclip":
        return MedCLIPScorer(path, use_gpu=use_gpu, model_id=model_id)
    raise ValueError(f"unknown scorer kind {kind!r}")
