"""Resumable stage outputs: append-only pair datasets that a rerun continues and `finalize` makes exact.

A stage writes its rows with Ray Data as Parquet files appended to `ROOT/manifest/` while it
streams, so finished work is on disk before the job ends. After a crash or a kill:

1. `scan_output` drops files that cannot be read (a write cut short) and returns the `pair_id`s
   already done, which the stage then skips. Rows that ended in an error are redone unless the
   caller asks to keep them.
2. The stage runs again over what is left and appends.
3. `finalize` removes the rows that lost to a better copy of the same `pair_id`: a retried Ray
   write task can write a block twice, and a redone error is superseded by its new result. The
   order of preference is ok > skipped > error, then the most recent.

So the final manifest holds every pair exactly once, whatever was interrupted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pairaug_ray import schema, storage
from pairaug_ray.manifest import manifest_uri

log = logging.getLogger(__name__)

_RANK = {schema.STATUS_OK: 3, schema.STATUS_SKIPPED: 2, schema.STATUS_ERROR: 1}


@dataclass
class OutputState:
    done: frozenset[str]
    rows: int = 0
    errors: int = 0
    removed_files: list[str] = field(default_factory=list)


@dataclass
class FinalizeReport:
    rows: int
    duplicates_removed: int
    files_rewritten: int


def _read_keys(uri: str) -> pa.Table:
    fs, path = storage.filesystem(uri)
    table = pq.read_table(path, filesystem=fs, columns=[schema.PAIR_ID, schema.STATUS, schema.PROVENANCE])
    finished = pc.struct_field(table.column(schema.PROVENANCE), "finished_at")
    return pa.table(
        {"pair_id": table.column(schema.PAIR_ID), "status": table.column(schema.STATUS), "finished": finished}
    )


def _files(root: str) -> list[str]:
    return storage.list_files(manifest_uri(root), ".parquet")


def scan_output(root: str, *, retry_errors: bool = True) -> OutputState:
    """What a previous run of a stage already wrote under `root` (nothing if it does not exist)."""
    done: set[str] = set()
    state = OutputState(done=frozenset())
    for uri in _files(root):
        try:
            keys = _read_keys(uri)
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            log.warning("removing unreadable output file %s (an interrupted write): %s", uri, e)
            storage.remove(uri)
            state.removed_files.append(uri)
            continue
        for pid, status in zip(
            keys.column("pair_id").to_pylist(), keys.column("status").to_pylist(), strict=True
        ):
            state.rows += 1
            if status == schema.STATUS_ERROR:
                state.errors += 1
                if retry_errors:
                    continue
            done.add(pid)
    state.done = frozenset(done)
    return state


def finalize(root: str) -> FinalizeReport:
    """Keep exactly one row per pair_id under `root`, rewriting only the files that hold losers."""
    files = _files(root)
    best: dict[str, tuple[int, float, str, int]] = {}  # pair_id -> (rank, finished, file, row)
    per_file: dict[str, pa.Table] = {}
    for uri in files:
        keys = _read_keys(uri)
        per_file[uri] = keys
        finished = [t.timestamp() if t else 0.0 for t in keys.column("finished").to_pylist()]
        for i, (pid, status) in enumerate(
            zip(keys.column("pair_id").to_pylist(), keys.column("status").to_pylist(), strict=True)
        ):
            candidate = (_RANK.get(status, 0), finished[i], uri, i)
            current = best.get(pid)
            if current is None or candidate[:2] > current[:2]:
                best[pid] = candidate
    removed = rewritten = 0
    for uri, keys in per_file.items():
        keep = [
            best[pid][2] == uri and best[pid][3] == i
            for i, pid in enumerate(keys.column("pair_id").to_pylist())
        ]
        if all(keep):
            continue
        removed += keep.count(False)
        rewritten += 1
        fs, path = storage.filesystem(uri)
        if not any(keep):
            storage.remove(uri)
            continue
        table = pq.read_table(path, filesystem=fs).filter(pa.array(keep))
        # Write beside, then move over the old file: a crash leaves the old or the new file, never
        # neither (the temporary name does not end in .parquet, so readers ignore it).
        tmp = path[: -len(".parquet")] + ".finalize-tmp"
        with fs.open(tmp, "wb") as f:
            pq.write_table(table, f)
        fs.mv(tmp, path)
    if removed:
        log.info(
            "finalize %s: removed %d superseded or duplicate rows from %d files", root, removed, rewritten
        )
    return FinalizeReport(rows=len(best), duplicates_removed=removed, files_rewritten=rewritten)
