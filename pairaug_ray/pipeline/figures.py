"""The augment job's pictures: score histograms with the thresholds drawn, and a grid of example
pairs (real | as written | InterAug | IntraAug from the same real pair or report). Everything is read with column reads
of the finished outputs, without a Ray execution."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from pairaug_ray import schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.pairs import read_columns

EXAMPLE_COLUMNS = [
    schema.PAIR_ID,
    schema.IMAGE_URI,
    schema.REPORT,
    schema.ORIGIN,
    schema.STUDY_ID,
    *schema.SCORE_COLUMNS,
    schema.KEPT,
]


def write_figures(cfg: JobConfig) -> dict[str, str]:
    """Score histograms with the thresholds marked, and a grid of example pairs."""
    from pairaug_ray.pipeline.prune import first_pruning
    from pairaug_ray.viz import example_grid, score_histograms

    out = {}
    # Numbers as numpy (not Python lists) and the thresholds from one row: what this holds stays a
    # few bytes per pair however large the run.
    table = read_columns(cfg.synthetic_dir(), list(schema.SCORE_COLUMNS))
    pruning = first_pruning(cfg.synthetic_dir())
    thresholds = {schema.SCORE_A: pruning.get("tau"), **(pruning.get("thresholds") or {})}
    scores = {c: table.column(c).drop_null().to_numpy() for c in schema.SCORE_COLUMNS}
    out["score_histograms"] = score_histograms(
        scores, thresholds, storage.join(cfg.run.output_dir, "scores.png")
    )
    if cfg.augment.examples:
        examples = pick_examples(cfg, cfg.augment.examples)
        if examples:
            out["examples"] = example_grid(examples, storage.join(cfg.run.output_dir, "examples.png"))
    return out


def pick_examples(cfg: JobConfig, n: int) -> list[dict[str, Any]]:
    """Real pairs (or reports) with the most kinds of synthetic pair drawn from them, kept ones first."""
    synthetic = cfg.synthetic_dir()
    drawn = [*schema.TEXT_TO_IMAGE_ORIGINS, schema.ORIGIN_INTRA]
    table = read_columns(
        synthetic,
        [schema.PAIR_ID, schema.PARENT_ID, schema.ORIGIN, schema.KEPT],
        where=pc.field(schema.ORIGIN).isin(drawn),
    )
    # Rank the parents in Arrow (kinds of pair drawn, then kept ones), and look at the rows of the
    # top few only: a large run has a parent per report.
    per_parent = (
        pa.table(
            {
                "parent": table.column(schema.PARENT_ID),
                "origin": table.column(schema.ORIGIN),
                "kept": pc.cast(pc.fill_null(table.column(schema.KEPT), False), pa.int64()),
            }
        )
        .group_by("parent")
        .aggregate([("origin", "count_distinct"), ("kept", "sum")])
        .sort_by(
            [("origin_count_distinct", "descending"), ("kept_sum", "descending"), ("parent", "ascending")]
        )
        .slice(0, n)
    )
    top = per_parent.column("parent")
    keys = table.filter(pc.is_in(table.column(schema.PARENT_ID), value_set=top)).to_pylist()
    by_parent: dict[str, dict[str, dict]] = {}
    for r in keys:
        slot = by_parent.setdefault(r[schema.PARENT_ID], {})
        if r[schema.ORIGIN] not in slot or (
            r.get(schema.KEPT) and not slot[r[schema.ORIGIN]].get(schema.KEPT)
        ):
            slot[r[schema.ORIGIN]] = r
    ranked = sorted(
        by_parent.items(),
        key=lambda kv: (-len(kv[1]), -sum(bool(v.get(schema.KEPT)) for v in kv[1].values()), kv[0]),
    )
    chosen = ranked[:n]
    if not chosen:
        return []
    wanted = sorted({r[schema.PAIR_ID] for _, slot in chosen for r in slot.values()})
    rows = _by_id(synthetic, wanted)
    real: dict[str, dict[str, Any]] = {}
    for root in (cfg.validated_dir(), cfg.validated_reports_dir()):
        if storage.exists(storage.join(root, "manifest")):
            real.update(_by_id(root, sorted(pid for pid, _ in chosen)))
    return [
        {
            "original": real.get(pid),
            **{o: rows.get(slot[o][schema.PAIR_ID]) if o in slot else None for o in drawn},
        }
        for pid, slot in chosen
    ]


def _by_id(root: str, ids: list[str]) -> dict[str, dict[str, Any]]:
    table = read_columns(root, EXAMPLE_COLUMNS, where=pc.field(schema.PAIR_ID).isin(ids))
    return {r[schema.PAIR_ID]: r for r in table.to_pylist()}
