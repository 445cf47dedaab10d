"""The `prune` job: PairAug's pruning rules over the stored scores (`pairaug prune`, and the
augment job's last stage).

    means     the global means of S1, S2, S3 over the run's IntraAug pairs (a column read)
    prune     every scored pair, plus the AugText paraphrases, through prune_batch -> <out>/synthetic
    summary   kept / pruned per origin (a column read)

One Ray execution: the means and the summary are read with pyarrow in the driver. Cheap to redo
with other thresholds: nothing is generated or scored again.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow.compute as pc
from ray.data.expressions import col

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pairs import read_columns
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
        rules = StagePlan("prune", prune_batch, {"tau": tau, "epsilon": epsilon, "means": means}, actors=None)
        write_manifest(
            rules.apply(pairs),
            out,
            mode="overwrite",
            info={"prune": {"tau": tau, "epsilon": epsilon, "means": means, "input": src}},
        )
        summary = prune_summary(out)
        shown["line"] = ", ".join(
            f"{o} kept {c['kept']}/{sum(c.values())}" for o, c in sorted(summary["by_origin"].items())
        )
    return summary


def prune_summary(root: str) -> dict[str, Any]:
    table = read_columns(root, [schema.ORIGIN, schema.STATUS, schema.KEPT, schema.PRUNING])
    counts: dict[str, dict[str, int]] = {}
    for o, st, k in zip(
        *(table.column(c).to_pylist() for c in (schema.ORIGIN, schema.STATUS, schema.KEPT)), strict=True
    ):
        c = counts.setdefault(o, {"kept": 0, "pruned": 0, "skipped or errored": 0})
        c["kept" if k else ("pruned" if st == schema.STATUS_OK else "skipped or errored")] += 1
    pruning = json.loads(table.column(schema.PRUNING)[0].as_py()) if table.num_rows else {}
    return {"rows": table.num_rows, "by_origin": counts, "pruning": pruning}


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
