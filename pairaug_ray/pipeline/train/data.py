"""The train job's data: which pairs (real training pairs plus kept synthetic ones), the validation
images, and the Ray Data pipeline that turns pairs into tensors (pairaug_ray/stages/train_data.py)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from ray.data import ActorPoolStrategy
from ray.data.expressions import col, random

from pairaug_ray import schema
from pairaug_ray.config import ConfigError, JobConfig, TrainConfig
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pairs import first_patients, patient_subset
from pairaug_ray.pipeline.common import real_pairs_root
from pairaug_ray.stages.train_data import PreprocessPairs

log = logging.getLogger(__name__)

PAIR_COLUMNS = [
    schema.PAIR_ID,
    schema.IMAGE_URI,
    schema.REPORT,
    schema.FINDINGS,
    schema.IMPRESSION,
    schema.ORIGIN,
]


def _select(ds: ray.data.Dataset) -> ray.data.Dataset:
    return ds.map_batches(
        lambda t: schema.conform(t, all_optional=True).select(PAIR_COLUMNS), batch_format="pyarrow"
    )


@dataclass
class TrainingPairs:
    """The pairs a run trains on: the real ones, and the pool of kept synthetic ones of which each
    epoch takes `synthetic_fraction` (1.0: all of them, every epoch)."""

    real: ray.data.Dataset
    synthetic: ray.data.Dataset | None
    synthetic_fraction: float = 1.0

    def one_epoch(self, real: ray.data.Dataset, synthetic: ray.data.Dataset | None, seed: int):
        """`real` and `synthetic` (these rows, or tensors made from them) as one epoch's data.

        With train.synthetic_ratio the synthetic part is a fresh seeded sample on every execution of
        the dataset, and Ray Train executes it once per epoch: every epoch sees a different subset
        and, over the run, the whole pool. (A random column, reseeded per execution, filtered: Ray
        Data's `random_sample(seed=RandomSeedConfig(...))` draws the same sample every epoch once the
        dataset is a union, as it is here; tests/test_train.py checks the per-epoch draw.)"""
        if synthetic is None:
            return real
        if self.synthetic_fraction < 1.0:
            draw = random(seed=seed, reseed_after_execution=True)
            # The draw runs while Ray Train executes the epoch, when the training workers and the
            # decoding actors already hold the node's CPUs (a worker of 1.5 of 2 CPUs in the study):
            # at Ray Data's default of 1 CPU a task its tasks never start and training waits forever.
            # A random column and a comparison need no CPU of their own.
            free = {"num_cpus": 0}
            synthetic = (
                synthetic.with_column(schema.EPOCH_DRAW, draw, **free)
                .filter(expr=col(schema.EPOCH_DRAW) < self.synthetic_fraction, **free)
                .drop_columns([schema.EPOCH_DRAW], **free)
            )
        return real.union(synthetic)


def training_pairs(cfg: JobConfig) -> tuple[TrainingPairs, dict[str, Any]]:
    """The real training pairs and the synthetic ones the config asks for, and how many of each
    (info["pairs"]: the pairs of one epoch).

    Both parts are materialised before the trainer starts: only the manifest rows (ids, paths,
    text; images are decoded later, per batch), a few hundred MB for MIMIC-CXR. Reading them while
    the training workers already hold their CPUs would leave the read tasks nothing to run on, on
    small clusters; and counting a materialised dataset costs no execution."""
    t = cfg.train
    real_root = t.real or real_pairs_root(cfg)
    real = read_manifest(real_root).filter(
        expr=(col(schema.STATUS) == schema.STATUS_OK) & (col(schema.SPLIT) == "train")
    )
    subset = t.real_fraction < 1.0
    if subset:
        fraction, seed = t.real_fraction, t.subset_seed
        real = real.map_batches(
            lambda t: t.filter(patient_subset(t[schema.PATIENT_ID].to_pylist(), fraction, seed)),
            batch_format="pyarrow",
        )
    real = _select(real).materialize()
    n_real = real.count()
    if n_real == 0:
        raise ConfigError(
            f"no real training pairs in {real_root} (status ok, split train"
            + (f", train.real_fraction {t.real_fraction})" if subset else ")")
        )
    info: dict[str, Any] = {"real": {"root": real_root, "pairs": n_real}, "synthetic": {}}
    if subset:
        info["real"].update(fraction=t.real_fraction, subset_seed=t.subset_seed)
    pairs = TrainingPairs(real=real, synthetic=None)
    if t.synthetic_origins:
        syn_root = t.synthetic or cfg.synthetic_dir()
        syn = read_manifest(syn_root).filter(
            expr=(col(schema.KEPT) == True)  # noqa: E712 (an expression, not a comparison)
            & (col(schema.STATUS) == schema.STATUS_OK)
            & col(schema.ORIGIN).is_in(list(t.synthetic_origins))
        )
        if set(t.synthetic_sources) != {schema.SOURCE_KIND_PAIR, schema.SOURCE_KIND_REPORT}:
            # Made from one kind of row only; outputs written before source kinds existed are pairs'.
            kind = col(schema.SOURCE_KIND)
            if t.synthetic_sources == [schema.SOURCE_KIND_REPORT]:
                syn = syn.filter(expr=kind == schema.SOURCE_KIND_REPORT)
            else:
                syn = syn.filter(expr=kind.is_null() | (kind == schema.SOURCE_KIND_PAIR))
        if subset:  # only pairs made from the real pairs this run trains on
            parents = [r[schema.PAIR_ID] for r in real.select_columns([schema.PAIR_ID]).take_all()]
            syn = syn.filter(expr=col(schema.PARENT_ID).is_in(parents))
        syn = _select(syn).materialize()
        n_pool = syn.count()
        fraction = 1.0
        if t.synthetic_ratio is not None and n_pool:
            fraction = min(1.0, t.synthetic_ratio * n_real / n_pool)
        per_epoch = round(fraction * n_pool)
        info["synthetic"] = {
            "root": syn_root,
            "origins": list(t.synthetic_origins),
            "sources": list(t.synthetic_sources),
            "ratio": t.synthetic_ratio,
            "pool": n_pool,
            "pairs": per_epoch,
        }
        if n_pool and per_epoch:
            pairs = TrainingPairs(real=real, synthetic=syn, synthetic_fraction=fraction)
    info["pairs"] = n_real + info["synthetic"].get("pairs", 0)
    return pairs, info


def validation_rows(cfg: JobConfig) -> list[dict[str, Any]]:
    """Real validation pairs with at least one label that has both classes (else none: val_auc is off)."""
    t = cfg.train
    if not t.validation:
        return []
    root = t.real or real_pairs_root(cfg)
    label_cols = [schema.label_column(lb) for lb in t.validation_labels]
    ds = read_manifest(root)
    if any(c not in ds.columns() for c in label_cols):
        log.warning("validation AUC off: %s has no label columns %s", root, label_cols)
        return []
    rows = (
        ds.filter(expr=(col(schema.STATUS) == schema.STATUS_OK) & (col(schema.SPLIT) == t.validation_split))
        .select_columns([schema.IMAGE_URI, schema.PATIENT_ID, *label_cols])
        .take_all()
    )
    # A seeded sample by patient, not the first rows in file order (one site, one period, or one
    # sort order of the manifest would otherwise rank the checkpoints).
    rows = first_patients(rows, t.validation_max_images, t.subset_seed)
    # Not mentioned counts as negative, uncertain is left out (as the evaluation does by default).
    for r in rows:
        r["labels"] = [None if r[c] == -1 else float(r[c] == 1) for c in label_cols]
    usable = [j for j in range(len(label_cols)) if len({r["labels"][j] for r in rows} - {None}) == 2]
    if not usable:
        log.warning(
            "validation AUC off: no label has both classes in %d %s rows", len(rows), t.validation_split
        )
        return []
    return [{"uri": r[schema.IMAGE_URI], "labels": r["labels"]} for r in rows]


def preprocessed(
    ds: ray.data.Dataset, t: TrainConfig, size: int, seed: int, models_cache_dir: str | None = None
) -> ray.data.Dataset:
    return ds.randomize_block_order(seed=seed).map_batches(
        PreprocessPairs,
        fn_constructor_kwargs={
            "cfg": t,
            "size": size,
            "tokenizer_source": t.init,
            "seed": seed,
            "cache_dir": models_cache_dir,
        },
        compute=ActorPoolStrategy(min_size=1, max_size=max(1, t.num_workers)),
        num_cpus=0.5,
        batch_size=16,
        batch_format="pyarrow",
    )
