"""Pair datasets on storage: their layout, what wrote them, and column reads with pyarrow (no Ray).

Layout of a pair dataset rooted at ROOT (a local folder or an s3:// prefix):

    ROOT/manifest/*.parquet   the pair manifest (schema in pairaug_ray.schema)
    ROOT/images/hh/<hash>.png images written by this project, named by content hash
    ROOT/dataset.json         what wrote it, the schema's columns and row counts

`image_uri` values are absolute paths or URIs, or paths relative to ROOT; readers resolve relative
ones so that no stage needs to know where a manifest came from. Streaming reads and writes of whole
datasets go through Ray Data (pairaug_ray/manifest.py); what is here serves counts, summaries and
small lookups in the calling process, and is what the Ray-free layers (eval/, ...) use.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pairaug_ray import __version__, schema, storage
from pairaug_ray.errors import UserError

MANIFEST_DIR = "manifest"
IMAGES_DIR = "images"
DATASET_INFO = "dataset.json"


class ManifestNotFoundError(UserError, FileNotFoundError):
    """No pair manifest where one was expected."""


def manifest_uri(root: str) -> str:
    return storage.join(storage.absolute(root), MANIFEST_DIR)


def write_info(root: str, info: Mapping[str, Any] | None = None) -> None:
    doc = {
        "format": "pairaug-pairs/1",
        "written_by": f"pairaug-ray {__version__}",
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "columns": list(schema.CORE_COLUMNS),
        **dict(info or {}),
    }
    storage.write_json(storage.join(storage.absolute(root), DATASET_INFO), doc)


def read_info(root: str) -> dict[str, Any]:
    uri = storage.join(storage.absolute(root), DATASET_INFO)
    if not storage.exists(uri):
        return {}
    try:
        info = json.loads(storage.read_text(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise schema.ManifestSchemaError(f"{uri}: not JSON ({e}); rewrite it or move it away") from None
    if not isinstance(info, dict):
        raise schema.ManifestSchemaError(f"{uri}: expected a JSON object, got {type(info).__name__}")
    return info


# The stages that record their settings in a pair dataset's info, under their own key.
MADE_BY_STAGES = ("prune", "score", "generate", "rewrite", "validate")


def lineage(root: str, max_depth: int = 8) -> dict[str, Any]:
    """The settings each stage made the pairs at `root` with, back through its inputs to the corpus:
    {stage: settings}. Two datasets with the same lineage were made the same way from the same
    data (each stage is seeded), so a model trained on one may stand for the other; the input
    paths themselves are left out. A directory a pipeline stage did not write has an empty lineage."""
    made: dict[str, Any] = {}
    uri = root
    for _ in range(max_depth):
        info = read_info(uri)
        stage = next((k for k in MADE_BY_STAGES if isinstance(info.get(k), dict)), None)
        if stage is None or stage in made:
            break
        settings = dict(info[stage])
        nested_input = settings.pop("input", None)  # some stages record it inside their settings
        parent = info.get("input") or nested_input
        made[stage] = settings
        if not parent:
            break
        uri = parent
    return made


def resolve_image_uris(table: pa.Table, root: str) -> pa.Table:
    if schema.IMAGE_URI not in table.column_names:
        return table
    col = table.column(schema.IMAGE_URI).to_pylist()
    resolved = pa.array([storage.resolve(u, root) if u else u for u in col], type=pa.string())
    return table.set_column(table.column_names.index(schema.IMAGE_URI), schema.IMAGE_URI, resolved)


def manifest_columns(root: str) -> list[str]:
    """The column names of the manifest at `root`, from one file's Parquet footer (every writer
    conforms its blocks to the pair schema, so the core columns agree across files)."""
    files = storage.list_files(manifest_uri(root), ".parquet")
    if not files:
        raise ManifestNotFoundError(
            f"no pair manifest at {root} (expected Parquet files under {manifest_uri(root)})"
        )
    fs, path = storage.filesystem(files[0])
    return list(pq.read_schema(path, filesystem=fs).names)


def read_columns(root: str, columns: list[str], *, where: pads.Expression | None = None) -> pa.Table:
    """Some columns of the rows of the dataset at `root` (those matching `where`, a pyarrow dataset
    expression), read with pyarrow in this process.

    For counts, summaries and small lookups: no Ray execution (which costs a second or more even for
    a tiny manifest); pyarrow reads the files in parallel threads. A column a file lacks reads as
    nulls; relative image URIs are resolved against `root`, as `read_manifest` does.
    """
    uri = manifest_uri(root)
    files = storage.list_files(uri, ".parquet")
    if not files:
        raise ManifestNotFoundError(f"no pair manifest at {root} (expected Parquet files under {uri})")
    fs, _ = storage.filesystem(files[0])
    paths = [storage.filesystem(f)[1] for f in files]
    # Every known column is in the dataset's schema, so that `where` may test one that is not read.
    known = [f for f in (*schema.CORE_FIELDS, *schema.OPTIONAL_FIELDS.values()) if f.name not in columns]
    wanted = pa.schema([*(schema.field_for(c) or pa.field(c, pa.string()) for c in columns), *known])
    try:
        table = pads.dataset(paths, schema=wanted, format="parquet", filesystem=fs).to_table(
            columns=columns, filter=where
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # A raw corpus whose columns have other types than the pair schema's (labels as text, ...):
        # read them as they are, as validation will before it conforms them.
        table = _read_as_written(paths, fs, columns)
        table = table.filter(where) if where is not None else table
    return resolve_image_uris(table, storage.absolute(root))


def checked_columns(root: str, columns: list[str]) -> pa.Table:
    """`read_columns`, for a dataset a person hands in: every file must be readable Parquet, and the
    rows must fit the pair schema (a pair id on each, known split/status/label values); the error
    names the file or the column and the dataset."""
    files = storage.list_files(manifest_uri(root), ".parquet")
    for f in files:
        fs, path = storage.filesystem(f)
        try:
            pq.read_schema(path, filesystem=fs)
        except (pa.ArrowInvalid, OSError) as e:
            raise schema.ManifestSchemaError(
                f"{f}: not a readable Parquet file ({str(e).splitlines()[0]}); rewrite it or move it away"
            ) from None
    table = read_columns(root, columns)
    try:
        schema.conform(table)
    except schema.ManifestSchemaError as e:
        raise schema.ManifestSchemaError(f"{root}: {e}") from None
    return table


def _read_as_written(paths: list[str], fs: Any, columns: list[str]) -> pa.Table:
    tables = []
    for path in paths:
        present = set(pq.read_schema(path, filesystem=fs).names)
        t = pq.read_table(path, filesystem=fs, columns=[c for c in columns if c in present])
        for c in columns:
            if c not in present:
                t = t.append_column(c, pa.nulls(t.num_rows, pa.string()))
        tables.append(t.select(columns))
    return pa.concat_tables(tables, promote_options="permissive")


SUMMARY_COLUMNS = (
    schema.PATIENT_ID,
    schema.STUDY_ID,
    schema.SPLIT,
    schema.ORIGIN,
    schema.STATUS,
    *schema.LABEL_COLUMNS,
)


def summarize_root(root: str) -> dict[str, Any]:
    """`summarize` of the dataset at `root`, from a column read (no Ray execution)."""
    return summarize(read_columns(root, list(SUMMARY_COLUMNS)))


def summarize(table: pa.Table) -> dict[str, Any]:
    """Counts a person wants to see about a manifest: rows, patients, splits, origins, statuses, labels."""
    table = table.select([c for c in SUMMARY_COLUMNS if c in table.column_names])
    present = table.column_names
    out: dict[str, Any] = {"rows": table.num_rows}
    for col, key in ((schema.PATIENT_ID, "patients"), (schema.STUDY_ID, "studies")):
        if col in present:
            out[key] = len(pc.unique(table.column(col)).drop_null())
    for col in (schema.SPLIT, schema.ORIGIN, schema.STATUS):
        if col in present:
            out[col] = dict(sorted(Counter(table.column(col).to_pylist()).items(), key=lambda kv: str(kv[0])))
    labels = {}
    for obs, col in zip(schema.CHEXPERT_OBSERVATIONS, schema.LABEL_COLUMNS, strict=True):
        if col in present:
            counts = Counter(table.column(col).to_pylist())
            labels[obs] = {
                "positive": counts[1],
                "negative": counts[0],
                "uncertain": counts[-1],
                "unmentioned": counts[None],
            }
    if labels:
        out["labels"] = labels
    return out


def patient_draw(patient_id: Any, seed: int) -> float:
    """A patient's seeded uniform draw in [0, 1): a hash of (seed, patient id), the same in every
    process and on every rerun."""
    import hashlib

    digest = hashlib.blake2b(f"{seed}:{patient_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def patient_subset(patient_ids: Any, fraction: float, seed: int) -> Any:
    """A boolean mask: which rows' patients fall in a seeded `fraction` of all patients.

    The draw hashes (seed, patient id) (`patient_draw`), so it is the same in every process and on
    every rerun, a patient's studies are in or out together, and a smaller fraction's patients are
    a subset of a larger one's (the low-data runs of a study are nested)."""
    import numpy as np

    return np.fromiter(
        (patient_draw(p, seed) < fraction for p in patient_ids), dtype=bool, count=len(patient_ids)
    )


def first_patients(rows: list[dict[str, Any]], limit: int, seed: int) -> list[dict[str, Any]]:
    """At most `limit` rows (at least one patient's), whole patients taken in the order of their
    seeded draw: a random sample by patient, the same on every rerun, nested as `limit` grows."""

    def key(r: dict[str, Any]) -> tuple:
        pid = r.get(schema.PATIENT_ID)
        return (patient_draw(pid, seed), str(pid), str(r.get(schema.IMAGE_URI)))

    ordered = sorted(rows, key=key)
    out: list[dict[str, Any]] = []
    for _, patient_rows in itertools.groupby(ordered, key=lambda r: r.get(schema.PATIENT_ID)):
        group = list(patient_rows)
        if out and len(out) + len(group) > limit:
            break
        out.extend(group[:limit])
    return out
