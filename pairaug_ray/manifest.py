"""Reading and writing pair datasets through Ray Data, on local disk or S3 with the same code.

The layout of a pair dataset, its dataset.json and column reads without Ray are in
pairaug_ray/pairs.py; here is the streaming path the stages take: `read_manifest` (lazy, resolves
relative image URIs) and `write_manifest` (every block cast to the pair schema, appended or
overwritten).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray
from ray.data import SaveMode

from pairaug_ray import schema, storage
from pairaug_ray.pairs import (
    DATASET_INFO,
    ManifestNotFoundError,
    manifest_uri,
    resolve_image_uris,
    write_info,
)


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
    counter: Any = None,
) -> str:
    """Write pairs as the Parquet manifest of the dataset at `root`; returns the manifest URI.

    Every block is cast to the pair schema first, so all files share one schema whatever types
    a stage produced (an all-null column, float labels, ...). `mode='append'` adds files, which is
    how resumable stages add finished work. `counter` (an actor with `add(n)`, see
    pipeline/progress.py) hears of every block on its way to storage, for a progress bar.
    """
    uri = manifest_uri(root)
    info_uri = storage.join(storage.absolute(root), DATASET_INFO)
    if mode == "overwrite" and storage.exists(info_uri):
        # dataset.json is written last and marks a complete dataset; drop it until the new one is.
        storage.remove(info_uri)
    ds = _as_dataset(data).map_batches(
        _conform_and_count, fn_kwargs={"counter": counter}, batch_format="pyarrow", zero_copy_batch=True
    )
    ds.write_parquet(uri, mode=SaveMode(mode))
    write_info(root, info)
    return uri


def _conform_and_count(table: pa.Table, *, counter: Any = None) -> pa.Table:
    table = schema.conform(table)
    if counter is not None and table.num_rows:
        errors = pc.sum(pc.equal(table.column(schema.STATUS), schema.STATUS_ERROR)).as_py() or 0
        counter.add.remote(table.num_rows, errors=errors)  # fire and forget: a lost count only slows the bar
    return table


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
        ds = ds.map_batches(resolve_image_uris, fn_kwargs={"root": base}, batch_format="pyarrow")
    return ds
