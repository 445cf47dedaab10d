"""The `validate` step of the augment job: every real row checked on its own, bad rows recorded.

    read_manifest(corpus) -> validate_pairs (stateless tasks) -> <out>/validated (overwrite)
      -> finalize (identical duplicate rows collapse to one) -> outcome counts

Duplicate `pair_id`s need a look at every row's content; the ids alone are read first (a column
read, no Ray execution), and only a corpus that repeats an id pays for the fingerprint pass.
A validated corpus that records the same parameters is complete and is reused.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pyarrow as pa
import ray

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pairs import read_columns, read_info, write_info
from pairaug_ray.pipeline.common import outcome_line
from pairaug_ray.resume import finalize, outcome_summary
from pairaug_ray.stages.base import StagePlan
from pairaug_ray.stages.validate import duplicates_to_drop, id_fingerprints, validate_pairs

log = logging.getLogger(__name__)


def duplicate_ids(corpus_root: str) -> tuple[dict[str, str], int | None]:
    """pair_id -> the fingerprint of the row that keeps it, for ids used by more than one row; and
    the number of rows when the id column could be read on its own."""
    try:
        ids = read_columns(corpus_root, [schema.PAIR_ID]).column(0).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        ids = None  # ids of an unusual type: the fingerprint pass below decides
    if ids is not None and all(n == 1 for n in Counter(map(str, ids)).values()):
        return {}, len(ids)
    fingerprints = read_manifest(corpus_root).map_batches(id_fingerprints, batch_format="pyarrow")
    refs = fingerprints.to_arrow_refs()
    table = pa.concat_tables(ray.get(refs)) if refs else pa.table({"pair_id": [], "fingerprint": []})
    return duplicates_to_drop(table), None if ids is None else len(ids)


def validate_job(cfg: JobConfig, corpus_root: str) -> dict[str, Any]:
    """Check every real row; write the conformed, validated corpus (bad rows as errors)."""
    out = storage.absolute(cfg.validated_dir())
    a = cfg.augment
    params = {
        "input": storage.absolute(corpus_root),
        "max_report_chars": a.max_report_chars,
        "check_images": a.check_images,
    }
    info = read_info(out)
    if info.get("validate") == params and info.get("complete", True):
        summary = info.get("outcomes") or outcome_summary(out)
        progress.say(f"{'validate':<{progress.WIDTH}} done: {outcome_line(summary)} (complete; reused)")
        return summary
    with progress.stage("validate", f"every row of {corpus_root}") as shown:
        keep_ids, rows = duplicate_ids(corpus_root)
        if keep_ids:
            log.warning(
                "%d pair_id(s) are used by more than one row; the extra rows become errors", len(keep_ids)
            )
        plan = StagePlan(
            "validate",
            validate_pairs,
            {"max_report_chars": a.max_report_chars, "check_images": a.check_images, "keep_ids": keep_ids},
            batch_size=256,
            actors=None,
        )
        with progress.bar("validate", total=rows) as counter:
            write_manifest(
                plan.apply(read_manifest(corpus_root)),
                out,
                mode="overwrite",
                info={"validate": params, "complete": False},
                counter=counter,
            )
        summary = finalize(out).summary  # identical duplicate rows collapse to one
        write_info(out, {"validate": params, "complete": True, "outcomes": summary})
        shown["line"] = outcome_line(summary)
    return summary
