"""Scoring generated pairs and PairAug's two pruning rules.

`ScorePairs` (a Ray Data actor, one scorer per actor) embeds what each rule needs and writes the
scores beside the row; every score is kept, so pruning can be redone with other thresholds without
scoring again:

- InterAug: S_a = sim(new image, new report): the cosine, or the scorer's logit scale x cosine
  (`score.mode: scaled`, what PairAug's code thresholded).
- IntraAug (hybrid consistency), with x the original image (the real one by default, as PairAug's
  code, or the one drawn for the original report), t the original report, x' and t' the new ones,
  f and g the unit-norm image and text embeddings:
    S1 = cos(f(x'), g(t'))              semantic alignment
    S2 = cos(f(x') - f(x), g(t') - g(t)) the image changed the way the report changed
    S3 = cos(f(x'), f(x))               fidelity to the original patient

The pruning rules that read these scores are in stages/prune.py.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from pairaug_ray import images, schema
from pairaug_ray.config import ScoreConfig
from pairaug_ray.stages.base import Resources, StagePlan

INTRA_SCORES = schema.INTRA_SCORE_COLUMNS


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    return float(a @ b / (na * nb)) if na > 0 and nb > 0 else 0.0


def inter_score(img: np.ndarray, txt: np.ndarray, *, mode: str, logit_scale: float) -> float:
    cos = float(img @ txt)  # both unit-norm
    return cos * logit_scale if mode == "scaled" else cos


def intra_scores(
    new_img: np.ndarray, new_txt: np.ndarray, orig_img: np.ndarray, orig_txt: np.ndarray
) -> tuple[float, float, float]:
    s1 = float(new_img @ new_txt)
    s2 = _cos(new_img - orig_img, new_txt - orig_txt)
    s3 = float(new_img @ orig_img)
    return s1, s2, s3


class ScorePairs:
    """Ray Data actor: scores the generated pairs of a batch; unreadable images become row errors."""

    @classmethod
    def plan(cls, cfg: ScoreConfig, *, model_ref: str, cache_dir: str) -> StagePlan:
        return StagePlan(
            "score",
            cls,
            {"cfg": cfg, "model_ref": model_ref, "cache_dir": cache_dir},
            batch_size=cfg.batch_size,
            resources=Resources(cpus=cfg.num_cpus, gpus=cfg.num_gpus),
            actors=(cfg.min_actors, cfg.max_actors),
        )

    def __init__(self, cfg: ScoreConfig, model_ref: str, cache_dir: str):
        from pairaug_ray.models.refs import resolve_model
        from pairaug_ray.models.scorers import load_scorer

        self.cfg = cfg
        resolved = resolve_model(model_ref, cache_dir)
        self.scorer = load_scorer(
            resolved.path,
            kind=cfg.kind,
            revision=resolved.revision,
            use_gpu=cfg.num_gpus > 0,
            model_id=model_ref,
        )
        self.info = json.dumps(
            {
                "model": model_ref,
                "kind": type(self.scorer).__name__,
                "mode": cfg.mode,
                "logit_scale": round(self.scorer.logit_scale, 6),
                "original": cfg.original,
                # Which node scored the pair: the pool's spread over the cluster, read back per row.
                "node_id": _node_id(),
            },
            sort_keys=True,
        )

    def _original_uri(self, row: dict[str, Any]) -> str | None:
        return (
            row.get(schema.SOURCE_IMAGE_URI)
            if self.cfg.original == "real"
            else row.get(schema.GENERATED_SOURCE_URI)
        )

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [
            r
            for r in rows
            if r.get(schema.STATUS) == schema.STATUS_OK
            and r[schema.ORIGIN] in (*schema.TEXT_TO_IMAGE_ORIGINS, schema.ORIGIN_INTRA)
        ]
        texts: dict[str, None] = {}
        ready = []
        wanted = []
        for r in todo:
            needed = {"image": r[schema.IMAGE_URI]}
            if r[schema.ORIGIN] == schema.ORIGIN_INTRA:
                needed[f"original image ({self.cfg.original})"] = self._original_uri(r)
            r["_needed"] = needed
            wanted += [u for u in needed.values() if u]
        # Every image of the batch at once: concurrent GETs on S3 (one round trip, not one per image).
        unique = list(dict.fromkeys(wanted))
        read, reasons = images.read_images(unique)
        pixels = {u: x for u, x in zip(unique, read, strict=True) if x is not None}
        failed = {u: why for u, why in zip(unique, reasons, strict=True) if why is not None}
        for r in todo:
            needed = r.pop("_needed")
            problem = next(
                (
                    f"the row has no {name} to score" if not uri else failed[uri]
                    for name, uri in needed.items()
                    if not uri or uri in failed
                ),
                None,
            )
            if problem:
                r[schema.STATUS], r[schema.ERROR] = schema.STATUS_ERROR, f"scoring: {problem}"
                continue
            if r[schema.ORIGIN] == schema.ORIGIN_INTRA:
                texts[r.get(schema.SOURCE_REPORT) or ""] = None
            texts[r.get(schema.REPORT) or ""] = None
            ready.append(r)
        if ready:
            img_keys, txt_keys = list(pixels), list(texts)
            img_emb = dict(
                zip(
                    img_keys,
                    self._embed(self.scorer.embed_images, [pixels[k] for k in img_keys]),
                    strict=True,
                )
            )
            txt_emb = dict(zip(txt_keys, self._embed(self.scorer.embed_texts, txt_keys), strict=True))
            for r in ready:
                new_img, new_txt = img_emb[r[schema.IMAGE_URI]], txt_emb[r.get(schema.REPORT) or ""]
                if r[schema.ORIGIN] in schema.TEXT_TO_IMAGE_ORIGINS:
                    r[schema.SCORE_A] = inter_score(
                        new_img, new_txt, mode=self.cfg.mode, logit_scale=self.scorer.logit_scale
                    )
                else:
                    s = intra_scores(
                        new_img,
                        new_txt,
                        img_emb[self._original_uri(r)],
                        txt_emb[r.get(schema.SOURCE_REPORT) or ""],
                    )
                    r.update(dict(zip(INTRA_SCORES, s, strict=True)))
                r[schema.SCORING] = self.info
        return schema.rows_to_table(rows)

    def _embed(self, fn, items: list) -> np.ndarray:
        parts = [fn(items[i : i + self.cfg.batch_size]) for i in range(0, len(items), self.cfg.batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _node_id() -> str | None:
    # Outside Ray (a notebook, a plain loop) there is no node, and asking would start a Ray.
    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
