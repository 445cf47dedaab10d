"""Validating a real corpus before anything is generated from it.

Every row is checked on its own, so that one bad row is recorded as an error (with a message that
names the row and the field) and every good row proceeds:

- `report`: present, text (bytes must decode as UTF-8), not empty, at most `max_report_chars`;
- labels: 1, 0, -1 or empty (numbers in strings are accepted); `split`: train, validate or test;
- `image_uri`: present and, with `check_images`, a decodable PNG/JPEG/DICOM;
- `pair_id`: present and unique. Rows that repeat an id already used get an id of their own
  (derived from the old id and their content) and an error, so the manifest stays keyed by pair.

Report-only rows (corpus.reports) are checked the same way without an image (`require_image`
off), and a report whose text another row already has is skipped, an error or kept, as
`corpus.reports.duplicates` says; a report of a patient whose pairs are in another split takes
that split (`patient_splits`), so that no validation or test patient's report becomes training data.

The output is a conformed pair manifest; rows that were already errors stay errors.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

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


def normalised_text(report: Any) -> str:
    """What two reports share when they are the same report: the words, case and spacing aside."""
    return " ".join(str(report).lower().split()) if report is not None else ""


def report_hashes(batch: pa.Table) -> pa.Table:
    """(pair_id, text_hash) of each row, for finding reports that repeat another's text."""
    ids = batch.column(schema.PAIR_ID).to_pylist()
    reports = batch.column(schema.REPORT).to_pylist()
    # Typed: a batch of empty reports must not become a null column that its neighbours refuse.
    return pa.table(
        {
            "pair_id": pa.array([str(i) for i in ids], pa.string()),
            "text_hash": pa.array(
                [
                    hashlib.sha256(normalised_text(r).encode()).hexdigest()[:16] if r else None
                    for r in reports
                ],
                pa.string(),
            ),
        }
    )


def repeated_reports(hashes: pa.Table) -> dict[str, str]:
    """pair_id -> the pair_id whose text it repeats (the smallest id of each text keeps it)."""
    hashes = hashes.filter(hashes.column("text_hash").is_valid())
    groups = hashes.group_by("text_hash").aggregate([("pair_id", "min"), ("pair_id", "count_distinct")])
    groups = groups.filter(pc.greater(groups.column("pair_id_count_distinct"), 1))
    if groups.num_rows == 0:
        return {}
    first = dict(
        zip(groups.column("text_hash").to_pylist(), groups.column("pair_id_min").to_pylist(), strict=True)
    )
    repeated = hashes.filter(pc.is_in(hashes.column("text_hash"), value_set=groups.column("text_hash")))
    return {
        pid: first[h]
        for pid, h in zip(
            repeated.column("pair_id").to_pylist(), repeated.column("text_hash").to_pylist(), strict=True
        )
        if pid != first[h]
    }


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
    batch: pa.Table,
    *,
    max_report_chars: int,
    check_images: bool,
    keep_ids: dict[str, str] | None = None,
    require_image: bool = True,
    repeats: dict[str, str] | None = None,
    duplicates: str = "skip",
    patient_splits: dict[str, str] | None = None,
) -> pa.Table:
    keep_ids = keep_ids or {}
    repeats = repeats if duplicates != "keep" else None
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
        if require_image and not uri:
            problems.append("image_uri is missing")
        elif uri and check_images and not problems and status != schema.STATUS_ERROR:
            try:
                images.read_image(uri)
            except images.ImageReadError as e:
                problems.append(str(e))

        repeated = None
        if repeats and pid in repeats:
            repeated = f"duplicate report: the same text as row {repeats[pid]}"
            if duplicates == "error":
                problems.append(repeated)
        patient = r.get(schema.PATIENT_ID)
        if patient_splits and patient is not None and str(patient) in patient_splits:
            r[schema.SPLIT] = patient_splits[str(patient)]  # the patient's pairs decide where it belongs

        if problems:
            r[schema.STATUS] = schema.STATUS_ERROR
            r[schema.ERROR] = f"{name}: " + "; ".join(problems)
        elif repeated and status != schema.STATUS_ERROR:
            r[schema.STATUS], r[schema.ERROR] = schema.STATUS_SKIPPED, f"skipped: {repeated}"
        elif status not in schema.STATUSES:
            r[schema.STATUS] = schema.STATUS_OK
        r[schema.ORIGIN] = r.get(schema.ORIGIN) or schema.ORIGIN_REAL
        out.append({k: v for k, v in r.items() if k in schema.CORE_COLUMNS or k in schema.OPTIONAL_FIELDS})
    return schema.rows_to_table(out)
