"""The `ingest` job: decode every image of a pair dataset, record unreadable ones, optionally
convert them to PNG.

    read_manifest(input) -> ingest_images (stateless tasks) -> <out> (overwrite) -> counts

Rows whose image cannot be read become errors that name the file; every other row proceeds.
"""

from __future__ import annotations

from typing import Any

import pyarrow.compute as pc

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import RayConfig
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pairs import read_columns, summarize_root
from pairaug_ray.runtime import init_ray
from pairaug_ray.stages.base import StagePlan
from pairaug_ray.stages.ingest import ingest_images


def ingest_job(
    input_root: str, out_root: str, *, to_png: bool, ray_cfg: RayConfig, show_errors: int = 20
) -> dict[str, Any]:
    """Ingest `input_root` into `out_root`; returns the dataset summary and the first row errors."""
    init_ray(ray_cfg)
    with progress.stage("ingest", f"{input_root} -> {out_root}") as shown:
        plan = StagePlan(
            "ingest",
            ingest_images,
            {"out_root": storage.absolute(out_root) if to_png else None},
            batch_size=64,
            actors=None,
        )
        rows = len(read_columns(input_root, [schema.PAIR_ID]))
        with progress.bar("ingest", total=rows, unit="images") as counter:
            write_manifest(
                plan.apply(read_manifest(input_root)),
                out_root,
                info={"ingested_from": input_root},
                counter=counter,
            )
        summary = summarize_root(out_root)
        shown["line"] = f"{summary['rows']} rows: " + ", ".join(
            f"{k} {v}" for k, v in summary["status"].items()
        )
    errors = read_columns(
        out_root, [schema.PAIR_ID, schema.ERROR], where=pc.field(schema.STATUS) == schema.STATUS_ERROR
    ).slice(0, show_errors)
    return {"summary": summary, "errors": errors.to_pylist()}
