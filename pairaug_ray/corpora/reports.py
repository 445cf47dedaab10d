"""Report-only corpora: reports without images, as rows that InterAug draws images for.

A hospital or a research group has far more reports than curated images (MIMIC-CXR: 227k reports).
`corpus.reports` reads them from

- a JSONL, CSV or Parquet file, or a folder of them, local or on S3, with the text, id, patient,
  study and split columns named in the config;
- MIMIC-CXR's report tree (`format: mimic`): files/pXX/pSUBJECT/sSTUDY.txt, with the MIMIC adapter's
  section extraction and text forms; the official split file beside it, when present, gives each
  study its split, so that no test patient's report is drawn into training data.

Each report becomes one row of a pair dataset without an image: origin real, `source_kind`
report, labels from the report labeler, provenance stage "corpus" naming the source. A row whose
report is missing, not text or empty is kept with the reason, and validation records it as a row
error; a source whose first file lacks a named column is refused before any work, naming the
column and the columns it has.
"""

from __future__ import annotations

import json
import posixpath
from typing import Any

import pyarrow as pa
import ray

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, ReportsCorpusConfig
from pairaug_ray.corpora.common import report_text
from pairaug_ray.manifest import write_manifest
from pairaug_ray.text.labeler import label_report
from pairaug_ray.text.sections import extract_sections

FORMAT_SUFFIXES = {
    "jsonl": (".jsonl", ".ndjson", ".json", ".jsonl.gz", ".ndjson.gz", ".json.gz"),
    "csv": (".csv", ".csv.gz"),
    "parquet": (".parquet",),
    "mimic": (".txt",),
}
MIMIC_SPLIT_CSV = "mimic-cxr-2.0.0-split.csv.gz"


class ReportSourceError(ConfigError):
    """The report source cannot be read as configured; the message names the file and the column."""


def source_files(cfg: ReportsCorpusConfig) -> tuple[str, list[str]]:
    """The format and the files of the report source (a file, or the files of a folder)."""
    root = storage.absolute(cfg.path)
    fs, path = storage.filesystem(root)
    if not fs.exists(path):
        raise ReportSourceError(f"corpus.reports.path {cfg.path}: no such file or folder")
    if fs.isfile(path):
        files = [root]
    else:
        where = storage.join(root, "files") if cfg.format == "mimic" else root
        files = storage.list_files(where)
    fmt = cfg.format
    if fmt == "auto":
        found = {
            f: next((k for k, sfx in FORMAT_SUFFIXES.items() if f.lower().endswith(sfx)), None) for f in files
        }
        kinds = {k for k in found.values() if k and k != "mimic"}
        if len(kinds) != 1:
            named = ", ".join(sorted(kinds)) or "none of .jsonl, .csv, .parquet"
            raise ReportSourceError(
                f"corpus.reports.path {cfg.path}: cannot tell the format from the file names ({named}); "
                "set corpus.reports.format"
            )
        fmt = kinds.pop()
    files = [f for f in files if f.lower().endswith(FORMAT_SUFFIXES[fmt])]
    if not files:
        raise ReportSourceError(
            f"corpus.reports.path {cfg.path}: no {fmt} files ({', '.join(FORMAT_SUFFIXES[fmt])}) found"
        )
    return fmt, files


def _first_record_fields(fmt: str, first: str) -> list[str] | None:
    """The column names of the first file, read cheaply in this process (None: not knowable)."""
    fs, path = storage.filesystem(first)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path, filesystem=fs).names)
    compression = "gzip" if path.endswith(".gz") else None
    with fs.open(path, "rt", encoding="utf-8", compression=compression) as f:
        if fmt == "csv":
            import csv

            return next(csv.reader([f.readline()]), None)
        for line in f:
            if line.strip():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    return None  # a bad line is that row's error, not the file's
                return list(record) if isinstance(record, dict) else None
    return None


def check_fields(cfg: ReportsCorpusConfig, fmt: str, files: list[str]) -> None:
    """Refuse a source whose first file lacks a column the config names, before any work."""
    if fmt == "mimic":
        return
    fields = _first_record_fields(fmt, files[0])
    if fields is None:
        return
    named = {
        "text_field": cfg.text_field,
        "id_field": cfg.id_field,
        "patient_field": cfg.patient_field,
        "study_field": cfg.study_field,
        "split_field": cfg.split_field,
    }
    for key, column in named.items():
        if column is not None and column not in fields:
            raise ReportSourceError(
                f"corpus.reports.{key} {column!r} is not a column of {files[0]}; its columns: "
                f"{', '.join(map(str, fields[:30]))}"
            )


def mimic_splits(cfg: ReportsCorpusConfig) -> dict[str, str]:
    """study id -> split for the studies MIMIC-CXR's split file does not put in train."""
    uri = storage.join(storage.absolute(cfg.path), MIMIC_SPLIT_CSV)
    if not storage.exists(uri):
        return {}
    import pandas as pd

    fs, path = storage.filesystem(uri)
    with fs.open(path, "rb") as f:
        df = pd.read_csv(f, compression="gzip", dtype={"study_id": str}, usecols=["study_id", "split"])
    df = df[df["split"] != "train"].drop_duplicates("study_id")
    return dict(zip(df["study_id"], df["split"], strict=True))


def read_source(cfg: ReportsCorpusConfig) -> tuple[ray.data.Dataset, str]:
    """The raw records of the source as a Ray Dataset (one row per report, with its file in
    `path`), and the source's format."""
    fmt, files = source_files(cfg)
    check_fields(cfg, fmt, files)
    if fmt == "parquet":
        wanted = [
            c
            for c in (cfg.text_field, cfg.id_field, cfg.patient_field, cfg.study_field, cfg.split_field)
            if c
        ]
        ds = ray.data.read_parquet(files, columns=list(dict.fromkeys(wanted)), include_paths=True)
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        text_columns = [
            c
            for c in (cfg.text_field, cfg.id_field, cfg.patient_field, cfg.study_field, cfg.split_field)
            if c
        ]
        ds = ray.data.read_csv(
            files,
            include_paths=True,
            # CSV is text: every named column is read as text, so a numeric id stays an id.
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(text_columns, pa.string())),
        )
    elif fmt == "jsonl":
        # Line by line, parsed per row: a line that is not JSON, or a report that is a number in one
        # line and text in the next, is that row's error (pyarrow's JSON reader would refuse the file).
        ds = ray.data.read_text(files, include_paths=True)
    else:
        ds = ray.data.read_binary_files(files, include_paths=True)
    if cfg.limit:
        ds = ds.limit(cfg.limit)
    return ds, fmt


def _text_of(value: Any) -> tuple[str | None, str | None]:
    """(text, problem) of a raw report value."""
    if value is None:
        return None, "report is missing"
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError as e:
            return None, f"report is not valid UTF-8 (byte {value[e.start]:#04x} at position {e.start})"
    if not isinstance(value, str):
        return None, f"report has type {type(value).__name__}, expected text"
    return value, None


def _form(text: str, mode: str) -> str | None:
    if mode == "as_given":
        return text.strip()
    sections = extract_sections(text)
    return report_text(mode, text, sections.findings, sections.impression)  # type: ignore[arg-type]


def _mimic_record(path: str, data: bytes) -> dict[str, Any]:
    """patient, study and text of one MIMIC-CXR report file files/pXX/pSUBJECT/sSTUDY.txt."""
    study = posixpath.basename(path).removesuffix(".txt").removeprefix("s")
    subject = posixpath.basename(posixpath.dirname(path)).removeprefix("p")
    return {"patient": subject, "study": study, "id": f"{subject}/{study}", "text": data}


def report_rows(
    batch: pa.Table, *, cfg: ReportsCorpusConfig, fmt: str, splits: dict[str, str] | None = None
) -> pa.Table:
    """Ray Data task: raw records of the source -> report-only pair rows (no image)."""
    mode = cfg.text_mode()
    params = {"source": cfg.path, "format": fmt, "text": mode}
    rows = []
    for raw in batch.to_pylist():
        source = raw.get("path")
        problems: list[str] = []
        if fmt == "jsonl":
            try:
                record = json.loads(raw["text"])
            except json.JSONDecodeError as e:
                record, problems = {}, [f"a line that is not JSON ({e.msg}): {raw['text'][:80]!r}"]
            if not isinstance(record, dict):
                record, problems = {}, problems or [f"a line that is not a JSON object: {raw['text'][:80]!r}"]
        elif fmt == "mimic":
            m = _mimic_record(source, raw["bytes"])
            record = {
                cfg.text_field: m["text"],
                "_id": m["id"],
                "_patient": m["patient"],
                "_study": m["study"],
            }
        else:
            record = raw
        if fmt == "mimic":
            source_id, patient, study = record["_id"], record["_patient"], record["_study"]
            split = (splits or {}).get(study, cfg.split)
        else:
            source_id, patient, study, split = (
                None if name is None else record.get(name)
                for name in (cfg.id_field, cfg.patient_field, cfg.study_field, cfg.split_field)
            )
            split = split or cfg.split
            if not problems and cfg.id_field and (source_id is None or str(source_id).strip() == ""):
                problems.append(f"{cfg.id_field} is empty")
        text, problem = _text_of(record.get(cfg.text_field)) if not problems else (None, None)
        if problem:
            problems.append(problem.replace("report", f"report ({cfg.text_field})", 1))
        report = _form(text, mode) if text is not None else None
        if text is not None and text.strip() and not report:
            problems.append(f"report has no usable text in {mode!r} mode")
        key = (
            str(source_id)
            if source_id not in (None, "")
            else (report or text or json.dumps(raw, default=str))
        )
        row = {
            schema.PAIR_ID: schema.make_pair_id("report", key),
            schema.PATIENT_ID: None if patient is None else str(patient),
            schema.STUDY_ID: None if study is None else str(study),
            schema.REPORT: report if report is not None else text,
            schema.SPLIT: str(split),
            schema.ORIGIN: schema.ORIGIN_REAL,
            schema.SOURCE_KIND: schema.SOURCE_KIND_REPORT,
            schema.PROVENANCE: schema.make_provenance(
                "corpus", model_id="reports", params={**params, "file": source, "id": source_id}
            ),
        }
        if report and not problems:
            row.update(label_report(report).as_row())
        if problems:
            where = f"{source}" + (f" id {source_id}" if source_id not in (None, "") else "")
            row.update({schema.STATUS: schema.STATUS_ERROR, schema.ERROR: f"{where}: " + "; ".join(problems)})
        rows.append(row)
    return schema.rows_to_table(rows)


def import_reports(cfg: ReportsCorpusConfig, out_root: str) -> str:
    """Read the report source into the report-only pair dataset at `out_root`."""
    if cfg.duplicates == "keep" and cfg.id_field is None and cfg.format != "mimic":
        raise ConfigError(
            "corpus.reports.duplicates keep needs corpus.reports.id_field: without ids a report is "
            "identified by its text, so two copies are one row"
        )
    ds, fmt = read_source(cfg)
    splits = mimic_splits(cfg) if fmt == "mimic" else None
    rows = ds.map_batches(
        report_rows,
        fn_kwargs={"cfg": cfg, "fmt": fmt, "splits": splits},
        batch_format="pyarrow",
        batch_size=512,
    )
    return write_manifest(rows, out_root, info={"corpus": "reports", "reports": cfg.model_dump(mode="json")})
