"""Image features for the report card and the near-duplicate prune rule: which encoder, and the
images through it on a Ray Data actor pool (stages/encode.py)."""

from __future__ import annotations

import logging

import pandas as pd
import ray

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import ConfigError, GeneratorEncoderConfig, JobConfig
from pairaug_ray.eval.encoders import RAD_DINO
from pairaug_ray.stages.encode import EncodeImages

log = logging.getLogger(__name__)
REAL_ONLY_RUN = "real-only"


def encoder_ref(
    cfg: JobConfig, enc: GeneratorEncoderConfig, setting: str = "eval_generator.encoder"
) -> tuple[str, str]:
    """(kind, local path or hub id) of an encoder; a `pairaug train` run means its latest checkpoint."""
    if enc.kind == "rad-dino":
        return enc.kind, enc.path or RAD_DINO
    from pairaug_ray.models.refs import resolve_model
    from pairaug_ray.pipeline.evaluate import run_checkpoints

    path = enc.path or storage.join(cfg.train_dir(), REAL_ONLY_RUN)
    if not storage.exists(storage.join(path, "config.json")):
        try:
            path = run_checkpoints(path)[-1]["path"]
        except ConfigError as e:
            raise ConfigError(
                f"{setting}: {e}. On the phantom, train the encoder on real pairs first: pairaug train "
                f"--config JOB.yaml --set train.synthetic_origins=[] --set train.name={REAL_ONLY_RUN}"
            ) from None
    return enc.kind, resolve_model(path, cfg.models.cache_dir).path


def encode(cfg: JobConfig, frame: pd.DataFrame, kind: str, path: str, batch_size: int) -> pd.DataFrame:
    """frame (image_id, image_uri) -> those rows with `features`; unreadable images are logged and
    left out. The actors take generate's resources (a GPU each on a GPU cluster)."""
    g = cfg.generate
    plan = EncodeImages.plan(
        kind=kind,
        path=path,
        batch_size=batch_size,
        cpus=max(1.0, g.num_cpus) if g.num_gpus == 0 else g.num_cpus,
        gpus=g.num_gpus,
        max_actors=g.max_actors,
    )
    ds = ray.data.from_pandas(frame[[schema.IMAGE_ID, schema.IMAGE_URI]])
    ds = ds.repartition(max(1, len(frame) // batch_size))
    with progress.bar("encode", total=len(frame), unit="images") as counter:
        out = progress.counted(plan.apply(ds), counter).to_pandas()
    bad = out[out[schema.EMBED_ERROR].notna()]
    for _, r in bad.head(5).iterrows():
        log.warning("image %s left out: %s", r[schema.IMAGE_ID], r[schema.EMBED_ERROR])
    ok = out[out[schema.EMBED_ERROR].isna()][[schema.IMAGE_ID, schema.FEATURES]]
    return frame.merge(ok, on=schema.IMAGE_ID, how="inner")
