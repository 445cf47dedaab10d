"""Reading and writing pair datasets through Ray Data, on local disk or S3 with the same code.

Layout of a pair dataset rooted at ROOT (a local folder or an s3:// prefix):

    ROOT/manifest/*.parquet   the pair manifest (schema in pairaug_ray.schema)
    ROOT/images/hh/<hash>.png images written by this project, named by content hash
    ROOT/dataset.json         what wrote it, the schema's columns and row counts

`image_uri` values are absolute paths or URIs, or paths relative to ROOT; `read_manifest`
resolves relative ones so that stages never need to know where a manifest came from.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import SaveMode

from pairaug_ray import __version__, schema, storage

MANIFEST_DIR = "manifest"
IMAGES_DIR = "images"
DATASET_INFO = "dataset.json"


class ManifestNotFoundError(FileNotFoundError):
    pass


def manifest_uri(root: str) -> str:
    return storage.join(storage.absolute(root), MANIFEST_DIR)


def images_uri(root: str) -> str:
    return storage.join(storage.absolute(root), IMAGES_DIR)


def _as_dataset(data: ray.data.Dataset | pa.Table | Iterable[Mapping[str, Any]]) -> ray.data.Dataset:
    if isinstance(data, ray.data.Dataset):
        return data
    if isinstance(data, pa.Table):
        return ray.data.from_arrow(data)
    return ray.data.from_arrow(schema.rows_to_table(list(data)))


def write_manifest(
    data: ray.data.Dataset | pa.Table | Iterable[Mapping[str, Any]],
    root: str,
    *,
    mode: str = "overwrite",
    info: Mapping[str, Any] | None = None,
) -> str:
    """Write pairs as the Parquet manifest of the dataset at `root`; returns the manifest URI.

    Every block is cast to the pair schema first, so all files share one schema whatever types
    a stage produced (an all-null column, float labels, ...). `mode='append'` adds files, which is
    how resumable stages add finished work.
    """
    uri = manifest_uri(root)
    info_uri = storage.join(storage.absolute(root), DATASET_INFO)
    if mode == "overwrite" and storage.exists(info_uri):
        # dataset.json is written last and marks a complete dataset; drop it until the new one is.
        storage.remove(info_uri)
    ds = _as_dataset(data).map_batches(schema.conform, batch_format="pyarrow", zero_copy_batch=True)
    ds.write_parquet(uri, mode=SaveMode(mode))
    write_info(root, info)
    return uri


def write_info(root: str, info: Mapping[str, Any] | None = None) -> None:
    doc = {
        "format": "pairaug-pairs/1",
        "written_by": f"pairaug-ray {__version__}",
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "columns": list(schema.CORE_COLUMNS),
        **dict(info or {}),
    }
    storage.write_text(
        storage.join(storage.absolute(root), DATASET_INFO), json.dumps(doc, indent=2, default=str)
    )


def read_info(root: str) -> dict[str, Any]:
    uri = storage.join(storage.absolute(root), DATASET_INFO)
    return json.loads(storage.read_text(uri)) if storage.exists(uri) else {}


def _resolve_image_uris(table: pa.Table, root: str) -> pa.Table:
    if schema.IMAGE_URI not in table.column_names:
        return table
    col = table.column(schema.IMAGE_URI).to_pylist()
    resolved = pa.array([storage.resolve(u, root) if u else u for u in col], type=pa.string())
    return table.set_column(table.column_names.index(schema.IMAGE_URI), schema.IMAGE_URI, resolved)


def read_manifest(
    root: str, *, columns: list[str] | None = None, resolve_images: bool = True
) -> ray.data.Dataset:
    """The pairs of the dataset at `root` as a Ray Dataset (lazy, streaming)."""
    uri = manifest_uri(root)
    if not storage.list_files(uri, ".parquet"):
        raise ManifestNotFoundError(f"no pair manifest at {root} (expected Parquet files under {uri})")
    ds = ray.data.read_parquet(uri)
    if columns is not None:
        ds = ds.select_columns(columns)
    if resolve_images and (columns is None or schema.IMAGE_URI in columns):
        base = storage.absolute(root)
        ds = ds.map_batches(_resolve_image_uris, fn_kwargs={"root": base}, batch_format="pyarrow")
    return ds


def summarize(ds: ray.data.Dataset) -> dict[str, Any]:
    """Counts a person wants to see about a manifest: rows, patients, splits, origins, statuses, labels."""
    wanted = [
        schema.PATIENT_ID,
        schema.STUDY_ID,
        schema.SPLIT,
        schema.ORIGIN,
        schema.STATUS,
        *schema.LABEL_COLUMNS,
    ]
    present = [c for c in wanted if c in ds.columns()]
    table = pa.concat_tables(ray.get(ds.select_columns(present).to_arrow_refs()))
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
