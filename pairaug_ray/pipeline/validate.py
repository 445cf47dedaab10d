"""The `validate` step of the augment job: every real row checked on its own, bad rows recorded.

    read_manifest(corpus) -> validate_pairs (stateless tasks) -> <out>/validated (overwrite)
      -> finalize (identical duplicate rows collapse to one) -> outcome counts

Report-only rows (corpus.reports) take the same path into <out>/validated_reports, without images,
after one pass that finds reports repeating another's text (validate_reports_job).

Duplicate `pair_id`s need a look at every row's content; the ids alone are read first (a column
read, no Ray execution), and only a corpus that repeats an id pays for the fingerprint pass.
A validated corpus that records the same parameters is complete and is reused.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from pairaug_ray import progress, schema, storage
from pairaug_ray.config import JobConfig
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pairs import read_columns, read_info, write_info
from pairaug_ray.pipeline.common import outcome_line
from pairaug_ray.resume import finalize, outcome_summary
from pairaug_ray.stages.base import StagePlan
from pairaug_ray.stages.validate import (
    duplicates_to_drop,
    id_fingerprints,
    repeated_reports,
    report_hashes,
    validate_pairs,
)

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


def repeated_report_ids(root: str) -> dict[str, str]:
    """pair_id -> the row whose report text it repeats, over the whole dataset at `root` (the hashes
    are made by Ray tasks; only (id, hash) pairs reach this process)."""
    hashes = read_manifest(root, columns=[schema.PAIR_ID, schema.REPORT], resolve_images=False).map_batches(
        report_hashes, batch_format="pyarrow"
    )
    refs = hashes.to_arrow_refs()
    return repeated_reports(pa.concat_tables(ray.get(refs))) if refs else {}


def other_split_patients(pairs_root: str | None) -> dict[str, str]:
    """patient -> split, for the patients of the pair corpus outside the train split."""
    if pairs_root is None:
        return {}
    table = read_columns(
        pairs_root, [schema.PATIENT_ID, schema.SPLIT], where=pc.field(schema.SPLIT) != "train"
    )
    return {
        str(p): s
        for p, s in zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
        if p is not None and s
    }


def validate_reports_job(cfg: JobConfig, reports_root: str, pairs_root: str | None) -> dict[str, Any]:
    """Check every report-only row (no image), as validate_job checks pairs, into validated_reports."""
    out = storage.absolute(cfg.validated_reports_dir())
    a, rc = cfg.augment, cfg.corpus.reports
    assert rc is not None
    params = {
        "input": storage.absolute(reports_root),
        "pairs": storage.absolute(pairs_root) if pairs_root else None,
        "max_report_chars": a.max_report_chars,
        "duplicates": rc.duplicates,
    }
    info = read_info(out)
    if info.get("validate") == params and info.get("complete", True):
        summary = info.get("outcomes") or outcome_summary(out)
        progress.say(
            f"{'validate':<{progress.WIDTH}} done: {outcome_line(summary, 'reports')} (complete; reused)"
        )
        return summary
    with progress.stage("validate", f"every report of {progress.shown(reports_root)}") as shown:
        keep_ids, rows = duplicate_ids(reports_root)
        repeats = repeated_report_ids(reports_root) if rc.duplicates != "keep" else {}
        plan = StagePlan(
            "validate",
            validate_pairs,
            {
                "max_report_chars": a.max_report_chars,
                "check_images": False,
                "keep_ids": keep_ids,
                "require_image": False,
                "repeats": repeats,
                "duplicates": rc.duplicates,
                "patient_splits": other_split_patients(pairs_root),
            },
            batch_size=256,
            actors=None,
        )
        with progress.bar("validate", total=rows, unit="reports") as counter:
            write_manifest(
                plan.apply(read_manifest(reports_root)),
                out,
                mode="overwrite",
                info={"validate": params, "complete": False},
                counter=counter,
            )
        report = finalize(out)
        summary = report.summary
        # Reports identified by their text (no id_field) that repeat one are one row, kept once.
        collapsed = rows - report.rows if rows else 0
        if collapsed:
            summary["identical_reports_collapsed"] = collapsed
        write_info(out, {"validate": params, "complete": True, "outcomes": summary})
        shown["line"] = outcome_line(summary, "reports") + (
            f"; {collapsed} identical reports without ids collapsed into one" if collapsed else ""
        )
    return summary


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
