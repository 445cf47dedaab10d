"""Ray Data actor: image rows -> features of the report card's image encoder (eval/encoders.py).

The encoder loads once per actor (a GPU actor on a cluster: RAD-DINO over a training set of 300k
images is real work). An unreadable image is recorded in its row, not fatal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pairaug_ray import images
from pairaug_ray.schema import EMBED_ERROR, FEATURES, IMAGE_ID, IMAGE_URI
from pairaug_ray.stages.base import Resources, StagePlan


class EncodeImages:
    @classmethod
    def plan(
        cls, *, kind: str, path: str, batch_size: int, cpus: float, gpus: float, max_actors: int
    ) -> StagePlan:
        return StagePlan(
            "encode",
            cls,
            {"kind": kind, "path": path, "use_gpu": gpus > 0},
            batch_size=batch_size,
            resources=Resources(cpus=cpus, gpus=gpus),
            actors=(1, max_actors),
            batch_format="pandas",
        )

    def __init__(self, kind: str, path: str, use_gpu: bool = False):
        import torch

        from pairaug_ray.eval.encoders import load_encoder

        if not use_gpu:
            torch.set_num_threads(1)  # one CPU per actor: threads beyond it only contend
        self.encoder = load_encoder(kind, path, use_gpu=use_gpu)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        pictures, errors = images.read_images(batch[IMAGE_URI])
        ok = [i for i, e in enumerate(errors) if e is None]
        feats: list[np.ndarray | None] = [None] * len(batch)
        if ok:
            for i, f in zip(ok, self.encoder.embed([pictures[i] for i in ok]), strict=True):
                feats[i] = np.asarray(f, np.float32)
        return pd.DataFrame({IMAGE_ID: batch[IMAGE_ID].to_numpy(), EMBED_ERROR: errors, FEATURES: feats})
