"""Ray Data actor: image rows -> normalised image embeddings from one or more CLIP checkpoints.

Decoding and CheXzero preprocessing happen once per image; every checkpoint of an ensemble embeds
the same pixels (column emb_<i> for model i). Unreadable images are recorded per row, not fatal.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from pairaug_ray import images
from pairaug_ray.config import EvaluateConfig
from pairaug_ray.schema import EMBED_ERROR, IMAGE_ID, IMAGE_URI, embedding_column
from pairaug_ray.stages.base import Resources, StagePlan

log = logging.getLogger(__name__)


class EmbedImages:
    @classmethod
    def plan(cls, cfg: EvaluateConfig, *, model_paths: list[str]) -> StagePlan:
        return StagePlan(
            "embed",
            cls,
            {"model_paths": model_paths, "pad_size": cfg.pad_size, "use_gpu": cfg.num_gpus > 0},
            batch_size=cfg.batch_size,
            resources=Resources(cpus=cfg.num_cpus, gpus=cfg.num_gpus),
            actors=(1, cfg.max_actors),
            batch_format="pandas",
        )

    def __init__(self, model_paths: list[str], pad_size: int, use_gpu: bool = False):
        from pairaug_ray.eval.zeroshot import ZeroShotModel

        self.models = [ZeroShotModel(p, pad_size=pad_size, use_gpu=use_gpu) for p in model_paths]

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        pictures, errors = images.read_images(batch[IMAGE_URI])
        ok = [i for i, e in enumerate(errors) if e is None]
        out = pd.DataFrame({IMAGE_ID: batch[IMAGE_ID].to_numpy(), EMBED_ERROR: errors})
        for m_index, model in enumerate(self.models):
            emb = np.full((len(batch), model.model.config.projection_dim), np.nan, np.float32)
            if ok:
                emb[ok] = model.embed_pixels(model.pixels([pictures[i] for i in ok]))
            out[embedding_column(m_index)] = list(emb)
        return out
