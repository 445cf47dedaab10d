"""Validating a real corpus before anything is generated from it.

Every row is checked on its own, so that one bad row is recorded as an error (with a message that
names the row and the field) and every good row proceeds:

- `report`: present, text (bytes must decode as UTF-8), not empty, at most `max_report_chars`;
- labels: 1, 0, -1 or empty (numbers in strings are accepted); `split`: train, validate or test;
- `image_uri`: present and, with `check_images`, a decodable PNG/JPEG/DICOM;
- `pair_id`: present and unique. Rows that repeat an id already used get an id of their own
  (derived from the old id and their content) and an error, so the manifest stays keyed by pair.

The output is a conformed pair manifest; rows that were already errors stay errors.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa

from pairaug_ray import images, schema

_LABEL_VALUES = {1, 0, -1}


def fingerprint(row: dict[str, Any]) -> str:
    """What identifies a row's content: its image and its report."""
    report = row.get(schema.REPORT)
    if isinstance(report, bytes):
        report = report.hex()
    return hashlib.sha256(f"{row.get(schema.IMAGE_URI)}\x1f{report}".encode()).hexdigest()[:16]


def id_fingerprints(batch: pa.Table) -> pa.Table:
    """(pair_id, fingerprint) of each row, for finding duplicate ids across the whole corpus."""
    rows = batch.to_pylist()
    return pa.table(
        {"pair_id": [str(r.get(schema.PAIR_ID)) for r in rows], "fingerprint": [fingerprint(r) for r in rows]}
    )


def duplicates_to_drop(ids: pa.Table) -> dict[str, str]:
    """pair_id -> the fingerprint of the one row that keeps the id, for ids used by several rows."""
    seen: dict[str, set[str]] = {}
    for pid, fp in zip(ids.column("pair_id").to_pylist(), ids.column("fingerprint").to_pylist(), strict=True):
        seen.setdefault(pid, set()).add(fp)
    return {pid: min(fps) for pid, fps in seen.items() if len(fps) > 1}


def _label(value: Any) -> int | None:
    """A CheXpert label from 1/0/-1/empty, as numbers or numeric strings; ValueError otherwise."""
    if value is None or (isinstance(value, float) and value != value):  # null or NaN
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    number = (
        float(value.strip())
        if isinstance(value, str) and value.strip()
        else (None if isinstance(value, str) else float(value))
    )
    if number is None:
        return None
    if number not in _LABEL_VALUES:
        raise ValueError(value)
    return int(number)


def validate_pairs(
    batch: pa.Table, *, max_report_chars: int, check_images: bool, keep_ids: dict[str, str] | None = None
) -> pa.Table:
    keep_ids = keep_ids or {}
    out = []
    for r in batch.to_pylist():
        problems: list[str] = []
        pid = r.get(schema.PAIR_ID)
        fp = fingerprint(r)
        if pid is None or str(pid).strip() == "":
            pid = schema.make_pair_id("row-without-id", fp)
            problems.append("pair_id is missing")
        pid = str(pid)
        if pid in keep_ids and keep_ids[pid] != fp:
            problems.append(f"duplicate pair_id {pid}: another row with other content already uses it")
            pid = schema.make_pair_id(pid, "duplicate", fp)
        r[schema.PAIR_ID] = pid
        name = f"row {pid}"

        report = r.get(schema.REPORT)
        if isinstance(report, bytes):
            try:
                report = report.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(
                    f"report is not valid UTF-8 (byte {report[e.start]:#04x} at position {e.start})"
                )
                report = None
        if report is not None and not isinstance(report, str):
            problems.append(f"report has type {type(report).__name__}, expected text")
            report = None
        elif isinstance(report, str):
            if not report.strip():
                problems.append("report is empty")
            elif len(report) > max_report_chars:
                problems.append(
                    f"report has {len(report):,} characters (> augment.max_report_chars {max_report_chars:,})"
                )
                report = report[:200] + " ..."  # keep the manifest small; the row is an error anyway
        elif r.get(schema.STATUS) != schema.STATUS_ERROR:
            problems.append("report is missing")
        r[schema.REPORT] = report

        for col in schema.LABEL_COLUMNS:
            try:
                r[col] = _label(r.get(col))
            except (ValueError, TypeError):
                problems.append(f"{col}: {r.get(col)!r} is not a label (1, 0, -1 or empty)")
                r[col] = None
        if r.get(schema.SPLIT) not in (None, *schema.SPLITS):
            problems.append(f"split {r.get(schema.SPLIT)!r} is not one of {', '.join(schema.SPLITS)}")
            r[schema.SPLIT] = None
        status = r.get(schema.STATUS)
        if status not in (None, *schema.STATUSES):
            problems.append(f"status {status!r} is not one of {', '.join(schema.STATUSES)}")

        uri = r.get(schema.IMAGE_URI)
        if not uri:
            problems.append("image_uri is missing")
        elif check_images and not problems and status != schema.STATUS_ERROR:
            try:
                images.read_image(uri)
            except images.ImageReadError as e:
                problems.append(str(e))

        if problems:
            r[schema.STATUS] = schema.STATUS_ERROR
            r[schema.ERROR] = f"{name}: " + "; ".join(problems)
        elif status not in schema.STATUSES:
            r[schema.STATUS] = schema.STATUS_OK
        r[schema.ORIGIN] = r.get(schema.ORIGIN) or schema.ORIGIN_REAL
        out.append({k: v for k, v in r.items() if k in schema.CORE_COLUMNS or k in schema.OPTIONAL_FIELDS})
    return schema.rows_to_table(out)
