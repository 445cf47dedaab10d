"""The `prune` job: PairAug's pruning rules over the stored scores (`pairaug prune`, and the
augment job's last stage).

    means     the global means of S1, S2, S3 over the run's IntraAug pairs (a column read)
    nearest   with prune.near_duplicate: every InterAug image's nearest real training image by
              encoder cosine, and the threshold (set, or calibrated on real training images)
    prune     every scored pair, plus the AugText paraphrases, through prune_batch -> <out>/synthetic
    summary   kept / pruned per origin (a column read)

One Ray execution: the means and the summary are read with pyarrow in the driver. Cheap to redo
with other thresholds: nothing is generated or scored again.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from ray.data.expressions import col

from pairaug_ray import metrics, progress, schema, storage
from pairaug_ray.config import ConfigError, JobConfig
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pairs import read_columns
from pairaug_ray.pipeline.runner import write_empty_manifest
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.base import StagePlan
from pairaug_ray.stages.prune import INTRA_SCORES, prune_batch


def intra_means(scored_root: str) -> dict[str, float | None]:
    """The means of S1, S2, S3 over all IntraAug pairs of the run that were scored (global, not per
    batch); None where there are none."""
    table = read_columns(scored_root, [schema.ORIGIN, schema.STATUS, *INTRA_SCORES])
    scored = pc.and_(
        pc.and_(
            pc.equal(table.column(schema.ORIGIN), schema.ORIGIN_INTRA),
            pc.equal(table.column(schema.STATUS), schema.STATUS_OK),
        ),
        pc.is_valid(table.column(schema.SCORE_S1)),
    )
    intra = table.filter(pc.fill_null(scored, False))
    if intra.num_rows == 0:
        return dict.fromkeys(INTRA_SCORES)
    return {
        k: None
        if intra.column(k).null_count == intra.num_rows
        else float(np.nanmean(intra.column(k).to_numpy(zero_copy_only=False)))
        for k in INTRA_SCORES
    }


def prune_job(
    cfg: JobConfig,
    *,
    tau: float | None = None,
    epsilon: float | None = None,
    input_root: str | None = None,
    output_root: str | None = None,
) -> dict[str, Any]:
    """Apply PairAug's rules to the stored scores. Writes every pair with `kept` and the thresholds
    used; AugText paraphrases join unpruned, as in PairAug."""
    init_ray(cfg.ray)
    tau = cfg.prune.tau if tau is None else tau
    epsilon = cfg.prune.epsilon if epsilon is None else epsilon
    src = storage.absolute(input_root or cfg.score_dir())
    out = storage.absolute(output_root or cfg.synthetic_dir())
    with progress.stage("prune", f"tau {tau}, epsilon {epsilon}") as shown:
        means = intra_means(src)
        # Files written from batches without IntraAug rows lack the score columns: conform them, so
        # every block has one schema before the union.
        conform = StagePlan("conform", schema.conform, {"all_optional": True}, actors=None)
        pairs = conform.apply(read_manifest(src))
        rewrites = cfg.rewrite_dir()
        if "paraphrase" in cfg.rewrite.modes and storage.list_files(
            storage.join(rewrites, "manifest"), ".parquet"
        ):
            augtext = read_manifest(rewrites).filter(expr=col(schema.ORIGIN) == schema.ORIGIN_AUGTEXT)
            pairs = pairs.union(conform.apply(augtext))
        nearest, near_threshold = (
            near_duplicates(cfg, src) if cfg.prune.near_duplicate.enabled else (None, None)
        )
        vetoed = reader_vetoes(cfg)
        rules = StagePlan(
            "prune",
            prune_batch,
            {
                "tau": tau,
                "epsilon": epsilon,
                "means": means,
                "nearest": nearest,
                "near_threshold": near_threshold,
                "vetoed": vetoed,
            },
            actors=None,
        )
        write_manifest(
            rules.apply(pairs),
            out,
            mode="overwrite",
            info={
                "prune": {
                    "tau": tau,
                    "epsilon": epsilon,
                    "means": means,
                    "near_duplicate_threshold": near_threshold,
                    "reader_vetoes": None if vetoed is None else len(vetoed),
                    "input": src,
                }
            },
        )
        # Nothing drawn (no report was rewritten, or every row failed): an empty set, not an error.
        write_empty_manifest(out)
        summary = prune_summary(out)
        for origin, c in summary["by_origin"].items():  # for the cluster's dashboards
            for decision in ("kept", "pruned"):
                metrics.set_gauge(metrics.PRUNED_PAIRS, c[decision], {"origin": origin, "decision": decision})
        shown["line"] = (
            ", ".join(
                f"{o} kept {c['kept']}/{sum(c.values())}" for o, c in sorted(summary["by_origin"].items())
            )
            or "no synthetic pairs"
        ) + ("" if vetoed is None else f"; {len(vetoed)} vetoed by the reader study")
    return summary


def reader_vetoes(cfg: JobConfig) -> dict[str, str] | None:
    """pair id -> reason for every synthetic pair the configured reader study rejected (None
    without prune.reader_verdicts)."""
    import os

    from pairaug_ray.reader_study.verdicts import vetoed_pairs

    rv = cfg.prune.reader_verdicts
    if rv is None:
        return None
    url = None
    if rv.database_url_env:
        url = os.environ.get(rv.database_url_env)
        if not url:
            raise ConfigError(
                f"prune.reader_verdicts.database_url_env names {rv.database_url_env}, which is not set"
            )
    return vetoed_pairs(rv.study, db_url=url, rule=rv.rule, quorum=rv.quorum)


def near_duplicates(cfg: JobConfig, scored_root: str) -> tuple[dict[str, tuple[float, str]], float]:
    """InterAug pair id -> (cosine to its nearest real training image, that image's pair id), and the
    near-duplicate threshold (prune.near_duplicate.threshold, else calibrated on the training
    images: the nearest other-patient similarity's quantile)."""
    import pandas as pd

    from pairaug_ray.eval.generator import calibrate_threshold, nearest
    from pairaug_ray.pipeline.common import real_pairs_root
    from pairaug_ray.pipeline.encoding import encode, encoder_ref

    nd = cfg.prune.near_duplicate
    kind, path = encoder_ref(cfg, nd.encoder, "prune.near_duplicate.encoder")
    real = read_columns(
        real_pairs_root(cfg),
        [schema.PAIR_ID, schema.PATIENT_ID, schema.IMAGE_URI, schema.SPLIT, schema.STATUS],
    ).to_pandas()
    real = real[(real[schema.SPLIT] == schema.SPLITS[0]) & (real[schema.STATUS] == schema.STATUS_OK)]
    inter = read_columns(
        scored_root, [schema.PAIR_ID, schema.IMAGE_URI, schema.ORIGIN, schema.STATUS]
    ).to_pandas()
    inter = inter[
        inter[schema.ORIGIN].isin(schema.TEXT_TO_IMAGE_ORIGINS) & (inter[schema.STATUS] == schema.STATUS_OK)
    ]
    if real.empty or inter.empty:
        return {}, nd.threshold if nd.threshold is not None else float("inf")
    frame = pd.concat(
        [
            pd.DataFrame(
                {schema.IMAGE_ID: "real:" + real[schema.PAIR_ID], schema.IMAGE_URI: real[schema.IMAGE_URI]}
            ),
            pd.DataFrame(
                {schema.IMAGE_ID: "inter:" + inter[schema.PAIR_ID], schema.IMAGE_URI: inter[schema.IMAGE_URI]}
            ),
        ],
        ignore_index=True,
    )
    feats = encode(cfg, frame, kind, path, nd.encoder.batch_size).set_index(schema.IMAGE_ID)[schema.FEATURES]
    real = real[("real:" + real[schema.PAIR_ID]).isin(feats.index)]
    x_train = np.stack(feats.loc["real:" + real[schema.PAIR_ID]].to_numpy())
    if nd.threshold is not None:
        threshold = nd.threshold
    else:
        try:
            threshold = calibrate_threshold(x_train, real[schema.PATIENT_ID].tolist(), nd.quantile)
        except ValueError as e:
            raise ConfigError(f"prune.near_duplicate: {e}; set prune.near_duplicate.threshold") from None
    ids = [i for i in "inter:" + inter[schema.PAIR_ID] if i in feats.index]
    if not ids:
        return {}, threshold
    idx, sim = nearest(np.stack(feats.loc[ids].to_numpy()), x_train)
    train_ids = real[schema.PAIR_ID].to_numpy()
    return {
        pid.removeprefix("inter:"): (float(s), str(train_ids[i]))
        for pid, i, s in zip(ids, idx, sim, strict=True)
    }, float(threshold)


def prune_summary(root: str) -> dict[str, Any]:
    """Kept / pruned / skipped per origin, counted in Arrow (a few columns, however many rows), and the
    thresholds (the same on every row: read from one)."""
    table = read_columns(root, [schema.ORIGIN, schema.STATUS, schema.KEPT])
    kept = pc.fill_null(table.column(schema.KEPT), False)
    ok = pc.fill_null(pc.equal(table.column(schema.STATUS), schema.STATUS_OK), False)
    decision = pc.if_else(kept, "kept", pc.if_else(ok, "pruned", "skipped or errored"))
    grouped = (
        pa.table({"origin": table.column(schema.ORIGIN), "decision": decision})
        .group_by(["origin", "decision"])
        .aggregate([("decision", "count")])
    )
    counts: dict[str, dict[str, int]] = {}
    for o, d, n in zip(
        *(grouped.column(c).to_pylist() for c in ("origin", "decision", "decision_count")), strict=True
    ):
        counts.setdefault(o, {"kept": 0, "pruned": 0, "skipped or errored": 0})[d] = n
    return {
        "rows": table.num_rows,
        "by_origin": dict(sorted(counts.items(), key=lambda kv: str(kv[0]))),
        "pruning": first_pruning(root),
    }


def first_pruning(root: str) -> dict[str, Any]:
    """The thresholds a pruned output was made with (every row records the same), from its first row."""
    import pyarrow.parquet as pq

    from pairaug_ray.pairs import manifest_uri

    for uri in storage.list_files(manifest_uri(root), ".parquet"):
        fs, path = storage.filesystem(uri)
        if schema.PRUNING not in pq.read_schema(path, filesystem=fs).names:
            continue
        column = pq.ParquetFile(path, filesystem=fs).read_row_group(0, columns=[schema.PRUNING]).column(0)
        if len(column) and column[0].as_py():
            return json.loads(column[0].as_py())
    return {}


def format_prune(summary: dict[str, Any]) -> str:
    p = summary.get("pruning", {})
    lines = [f"{summary.get('rows', 0)} synthetic pairs (tau {p.get('tau')}, epsilon {p.get('epsilon')})"]
    means = p.get("means") or {}
    if any(v is not None for v in means.values()):
        lines.append(
            "  IntraAug means: " + ", ".join(f"{k} {v:.4f}" for k, v in means.items() if v is not None)
        )
    for origin, c in sorted(summary.get("by_origin", {}).items()):
        lines.append(f"  {origin:<9} " + ", ".join(f"{k} {v}" for k, v in c.items()))
    return "\n".join(lines)
