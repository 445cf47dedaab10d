"""`pairaug label INPUT --out OUT`: label a file of reports, one output row per input report.

Input, by extension (a compression suffix such as `.gz` is looked through):
- `.jsonl` / `.ndjson`: one JSON object per line, the report in `report` (or `column`); blank
  lines are not records;
- `.csv` / `.tsv`: a header row, the report in `report` (or `column`);
- anything else (`.txt`): one report per line, every line a row.

Output, by extension: `.jsonl`/`.ndjson`, `.parquet`, otherwise CSV. Columns: the id (the value
of `id_column`, else the 0-based row number, under the name `id_column` or `id`), the 14 CheXpert
observations named exactly as in CheXpert's label files (`No Finding`, ...) holding 1, 0, -1 or
empty, and `error`. A row whose report is missing, empty or not a string keeps its place with
empty labels and an `error` naming the row and the field, so one bad record does not sink a run
of thousands. Paths go through fsspec, so `s3://` and other remote URIs work as well.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from pairaug_ray.errors import UserError
from pairaug_ray.schema import CHEXPERT_OBSERVATIONS, ERROR, LABEL_FILE_ID, REPORT
from pairaug_ray.text.labeler import label_report

DEFAULT_ID_COLUMN, DEFAULT_REPORT_FIELD, ERROR_COLUMN = LABEL_FILE_ID, REPORT, ERROR
_COMPRESSION_SUFFIXES = (".gz", ".bz2", ".xz", ".zst", ".zip", ".lz4")
_PARQUET_BATCH = 10_000


class LabelInputError(UserError, ValueError):
    """The input file as a whole cannot be read as asked (a missing column, columns for plain text)."""


@dataclass(frozen=True)
class _Record:
    id: Any
    report: str | None  # None when the row is unusable; `error` says why
    error: str | None


def _suffix(uri: str) -> str:
    name = uri.rsplit("/", 1)[-1].lower()
    for comp in _COMPRESSION_SUFFIXES:
        if name.endswith(comp):
            name = name[: -len(comp)]
            break
    return name.rsplit(".", 1)[-1] if "." in name else ""


MAX_REPORT_CHARS = 200_000  # MIMIC-CXR's longest report is ~10k characters: more is not one report


def _undecodable(text: str) -> int | None:
    """Where a byte that was not UTF-8 sits in `text` (read with errors="surrogateescape"), or None."""
    for i, ch in enumerate(text):
        if "\udc80" <= ch <= "\udcff":
            return i
    return None


def _check_report(row: int, field: str, value: Any) -> tuple[str | None, str | None]:
    """The report and no error, or None and an error naming the row and field."""
    if value is None:
        return None, f"row {row}: field {field!r} is missing"
    if not isinstance(value, str):
        return None, f"row {row}: field {field!r} is {type(value).__name__}, not a string"
    if not value.strip():
        return None, f"row {row}: field {field!r} is empty"
    if (at := _undecodable(value)) is not None:
        byte = ord(value[at]) - 0xDC00
        return None, f"row {row}: field {field!r} is not UTF-8 text (byte 0x{byte:02x} at character {at})"
    if len(value) > MAX_REPORT_CHARS:
        return (
            None,
            f"row {row}: field {field!r} has {len(value):,} characters, more than {MAX_REPORT_CHARS:,}: not one report",
        )
    return value, None


def _read_text(fh: Any, column: str | None, id_column: str | None) -> Iterator[_Record]:
    if column or id_column:
        raise LabelInputError(
            "a plain-text input has one report per line and no columns; drop column/id_column"
        )
    for row, line in enumerate(fh):
        report, error = _check_report(row, DEFAULT_REPORT_FIELD, line.rstrip("\r\n"))
        yield _Record(row, report, error)


def _read_jsonl(fh: Any, column: str, id_column: str | None) -> Iterator[_Record]:
    row = 0
    for line in fh:
        if not line.strip():
            continue
        # Without an id column the row number is the id; with one, an unreadable row has no id.
        unreadable_id = row if id_column is None else None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            yield _Record(unreadable_id, None, f"row {row}: invalid JSON ({e.msg} at column {e.colno})")
            row += 1
            continue
        if not isinstance(obj, dict):
            error = f"row {row}: expected a JSON object, got {type(obj).__name__}"
            yield _Record(unreadable_id, None, error)
            row += 1
            continue
        report, error = _check_report(row, column, obj.get(column))
        rid: Any = row
        if id_column is not None:
            rid = obj.get(id_column)
            if rid is None:
                error = "; ".join(filter(None, [error, f"row {row}: field {id_column!r} (id) is missing"]))
            else:
                rid = str(rid)
        yield _Record(rid, report, error)
        row += 1


def _read_csv(fh: Any, column: str, id_column: str | None, delimiter: str, uri: str) -> Iterator[_Record]:
    reader = csv.DictReader(fh, delimiter=delimiter)
    header = reader.fieldnames or []
    for needed in filter(None, (column, id_column)):
        if needed not in header:
            raise LabelInputError(
                f"{uri}: no column {needed!r} (columns: {', '.join(header) or 'none: the file is empty'}); "
                "name the report column with --column"
            )
    for row, rec in enumerate(reader):
        # An empty CSV cell is how a missing value is written, so it counts as missing.
        report, error = _check_report(row, column, rec.get(column) or None)
        rid: Any = row
        if id_column is not None:
            rid = rec.get(id_column) or None
            if rid is None:
                error = "; ".join(filter(None, [error, f"row {row}: field {id_column!r} (id) is missing"]))
        yield _Record(rid, report, error)


def read_reports(
    input_uri: str, *, column: str | None = None, id_column: str | None = None
) -> Iterator[_Record]:
    """Yield one record per report in `input_uri` (see the module docstring for formats)."""
    kind = _suffix(input_uri)
    # UTF-8 (with or without a BOM) or, when its BOM says so, UTF-16. Bytes that are not text stay
    # in the row as escapes and make that row's error (_check_report): one bad line never sinks a file.
    with fsspec.open(input_uri, "rb", compression="infer") as raw:
        head = raw.read(2)
    encoding = "utf-16" if head in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    with fsspec.open(
        input_uri, "rt", compression="infer", encoding=encoding, errors="surrogateescape", newline=""
    ) as fh:
        if kind in ("jsonl", "ndjson"):
            yield from _read_jsonl(fh, column or DEFAULT_REPORT_FIELD, id_column)
        elif kind in ("csv", "tsv"):
            delimiter = "\t" if kind == "tsv" else ","
            yield from _read_csv(fh, column or DEFAULT_REPORT_FIELD, id_column, delimiter, input_uri)
        else:
            yield from _read_text(fh, column, id_column)


def _output_rows(records: Iterator[_Record], id_name: str) -> Iterator[tuple[dict[str, Any], bool]]:
    for rec in records:
        labels: dict[str, int | None] = dict.fromkeys(CHEXPERT_OBSERVATIONS)
        if rec.report is not None:
            labels = label_report(rec.report).labels
        yield {id_name: rec.id, **labels, ERROR_COLUMN: rec.error}, rec.report is not None


@dataclass(frozen=True)
class LabelCounts:
    labelled: int  # rows whose report was labelled
    errors: int  # rows written with the reason in the error column instead


def label_file(
    input_uri: str, out_uri: str, *, column: str | None = None, id_column: str | None = None
) -> LabelCounts:
    """Label every report in `input_uri` and write the labels to `out_uri`.

    Returns how many reports were labelled and how many rows were unusable (written with their
    error). Raises LabelInputError when the input as a whole cannot be read as asked (a named column
    absent from a CSV header, columns given for a plain-text file).
    """
    id_name = id_column or DEFAULT_ID_COLUMN
    seen = [0]

    def counted(rows: Iterator[tuple[dict[str, Any], bool]]) -> Iterator[tuple[dict[str, Any], bool]]:
        for item in rows:
            seen[0] += 1
            yield item

    rows = counted(_output_rows(read_reports(input_uri, column=column, id_column=id_column), id_name))
    columns = [id_name, *CHEXPERT_OBSERVATIONS, ERROR_COLUMN]
    kind = _suffix(out_uri)
    fs, path = fsspec.core.url_to_fs(out_uri)
    if fs.isdir(path):
        raise LabelInputError(
            f"{out_uri} is a folder; give the output file's name (e.g. {out_uri}/labels.csv)"
        )
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    # Written beside the output and moved into place at the end: a run that fails part-way leaves an
    # earlier output as it was, and no half-written one.
    partial = f"{path}.partial-{uuid.uuid4().hex[:8]}"
    try:
        if kind == "parquet":
            id_type = pa.string() if id_column else pa.int64()
            with fs.open(partial, "wb") as fh:
                labelled = _write_parquet(fh, rows, columns, id_type)
        else:
            with fs.open(partial, "wt", encoding="utf-8", newline="") as fh:
                labelled = (
                    _write_jsonl(fh, rows) if kind in ("jsonl", "ndjson") else _write_csv(fh, rows, columns)
                )
        fs.mv(partial, path)
    finally:
        if fs.exists(partial):
            fs.rm(partial)
    return LabelCounts(labelled, seen[0] - labelled)


def _write_csv(fh: Any, rows: Iterator[tuple[dict[str, Any], bool]], columns: list[str]) -> int:
    writer = csv.DictWriter(fh, fieldnames=columns)
    writer.writeheader()
    labelled = 0
    for row, ok in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
        labelled += ok
    return labelled


def _write_jsonl(fh: Any, rows: Iterator[tuple[dict[str, Any], bool]]) -> int:
    labelled = 0
    for row, ok in rows:
        fh.write(json.dumps(row) + "\n")
        labelled += ok
    return labelled


def _write_parquet(
    fh: Any, rows: Iterator[tuple[dict[str, Any], bool]], columns: list[str], id_type: pa.DataType
) -> int:
    schema = pa.schema(
        [
            pa.field(columns[0], id_type),
            *(pa.field(o, pa.int8()) for o in CHEXPERT_OBSERVATIONS),
            pa.field(ERROR_COLUMN, pa.string()),
        ]
    )
    labelled = 0
    batch: list[dict[str, Any]] = []
    with pq.ParquetWriter(fh, schema) as writer:
        for row, ok in rows:
            batch.append(row)
            labelled += ok
            if len(batch) >= _PARQUET_BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                batch = []
        # Always write, so an empty input still gives a readable file with the schema.
        writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return labelled
