"""Resumable stage outputs: append-only pair datasets that a rerun continues and `finalize` makes exact.

A stage writes its rows with Ray Data as Parquet files appended to `ROOT/manifest/` while it
streams, so finished work is on disk before the job ends. After a crash or a kill:

1. `scan_output` drops files that cannot be read (a write cut short) and returns the `pair_id`s
   already done, which the stage then skips. Rows that ended in an error are redone unless the
   caller asks to keep them.
2. The stage runs again over what is left and appends.
3. `finalize` removes the rows that lost to a better copy of the same `pair_id`: a retried Ray
   write task can write a block twice, and a redone error is superseded by its new result. The
   order of preference is ok > skipped > error, then the most recent. The same pass counts the
   outcomes of the rows that remain (`outcome_counts`).

So the final manifest holds every pair exactly once, whatever was interrupted. Everything here
reads Parquet footers and a few columns with pyarrow in the calling process: no Ray execution, so
the bookkeeping costs milliseconds per file.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pairaug_ray import schema, storage
from pairaug_ray.pairs import manifest_uri

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
    summary: dict[str, Any] = field(default_factory=dict)  # outcome_counts of the rows kept


_KEY_COLUMNS = [schema.PAIR_ID, schema.STATUS, schema.ORIGIN, schema.ERROR]
# The provenance fields the bookkeeping reads (not the parameters and prompts): its memory then
# stays a few numbers per row however large the output grows.
_PROVENANCE_FIELDS = ("finished_at", "attempts", "tokens_in", "tokens_out", "latency_s")
_PROVENANCE_KEYS = pa.struct([schema.PROVENANCE_TYPE.field(f) for f in _PROVENANCE_FIELDS])


def _read_keys(uri: str, columns: list[str] | None = None) -> pa.Table:
    """The columns the bookkeeping needs, one row per row of the file: `columns` (default: id,
    status, origin, error and the provenance's time, attempts, tokens and latency)."""
    fs, path = storage.filesystem(uri)
    file_schema = pq.read_schema(path, filesystem=fs)
    present = set(file_schema.names)
    wanted = columns or [*_KEY_COLUMNS, schema.PROVENANCE]
    plain = [c for c in wanted if c != schema.PROVENANCE]
    nested = []
    if schema.PROVENANCE in wanted and schema.PROVENANCE in present:
        prov_type = file_schema.field(schema.PROVENANCE).type
        have = {prov_type.field(i).name for i in range(prov_type.num_fields)}
        nested = [f for f in _PROVENANCE_FIELDS if f in have]
    table = pq.read_table(
        path,
        filesystem=fs,
        columns=[c for c in plain if c in present] + [f"{schema.PROVENANCE}.{f}" for f in nested],
    )
    out = {}
    for c in plain:  # a column a file lacks (older versions, foreign writers) reads as nulls
        out[c] = (
            table.column(c) if c in table.column_names else pa.nulls(table.num_rows, schema.field_for(c).type)
        )
    if schema.PROVENANCE in wanted:
        fields = [
            pc.cast(table.column(f), _PROVENANCE_KEYS.field(f).type)
            if f in nested
            else pa.nulls(table.num_rows, _PROVENANCE_KEYS.field(f).type)
            for f in _PROVENANCE_FIELDS
        ]
        out[schema.PROVENANCE] = pa.StructArray.from_arrays(
            [pa.concat_arrays(a.chunks) if isinstance(a, pa.ChunkedArray) else a for a in fields],
            fields=list(_PROVENANCE_KEYS),
        )
    return pa.table(out)


def _files(root: str) -> list[str]:
    return storage.list_files(manifest_uri(root), ".parquet")


def scan_output(root: str, *, retry_errors: bool = True) -> OutputState:
    """What a previous run of a stage already wrote under `root` (nothing if it does not exist)."""
    done: set[str] = set()
    state = OutputState(done=frozenset())
    for uri in _files(root):
        try:
            keys = _read_keys(uri, [schema.PAIR_ID, schema.STATUS])
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
    """Keep exactly one row per pair_id under `root`, rewriting only the files that hold losers.

    The winner of each pair_id is found with Arrow's sort over the key columns of every file (ok >
    skipped > error, then the latest `finished_at`, then the first written), not a dict per row:
    what this process holds is a few columns of numbers and ids, however many rows there are."""
    files = _files(root)
    parts = []
    for i, uri in enumerate(files):
        keys = _read_keys(uri)
        n = keys.num_rows
        parts.append(
            keys.append_column("_file", pa.array(np.full(n, i, np.int32))).append_column(
                "_row", pa.array(np.arange(n, dtype=np.int64))
            )
        )
    if not parts:
        return FinalizeReport(rows=0, duplicates_removed=0, files_rewritten=0, summary=outcome_counts(None))
    keys = pa.concat_tables(parts, promote_options="default")
    status = keys.column(schema.STATUS)
    rank = pc.fill_null(
        pc.if_else(
            pc.equal(status, schema.STATUS_OK),
            3,
            pc.if_else(
                pc.equal(status, schema.STATUS_SKIPPED),
                2,
                pc.if_else(pc.equal(status, schema.STATUS_ERROR), 1, 0),
            ),
        ),
        0,
    )
    finished = pc.fill_null(
        pc.cast(
            pc.struct_field(keys.column(schema.PROVENANCE), "finished_at"), pa.timestamp("us", tz="UTC")
        ).cast(pa.int64()),
        0,
    )
    order_table = pa.table(
        {"id": pc.cast(keys.column(schema.PAIR_ID), pa.string()), "rank": rank, "finished": finished}
    )
    # A stable sort: among equals, the row written first (file order, then row order) wins.
    order = pc.sort_indices(
        order_table, [("id", "ascending"), ("rank", "descending"), ("finished", "descending")]
    )
    ids = pc.take(order_table.column("id"), order).to_numpy(zero_copy_only=False)
    first = np.ones(len(ids), dtype=bool)
    if len(ids) > 1:
        first[1:] = ids[1:] != ids[:-1]
    keep = np.zeros(keys.num_rows, dtype=bool)
    keep[order.to_numpy()[first]] = True
    file_of = keys.column("_file").to_numpy()
    removed = rewritten = 0
    for i, uri in enumerate(files):
        mask = keep[file_of == i]
        if mask.all():
            continue
        removed += int((~mask).sum())
        rewritten += 1
        fs, path = storage.filesystem(uri)
        if not mask.any():
            storage.remove(uri)
            continue
        table = pq.read_table(path, filesystem=fs).filter(pa.array(mask))
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
    kept = keys.filter(pa.array(keep)).drop_columns(["_file", "_row"])
    return FinalizeReport(
        rows=int(keep.sum()),
        duplicates_removed=removed,
        files_rewritten=rewritten,
        summary=outcome_counts(kept),
    )


def _concat(tables: list[pa.Table]) -> pa.Table | None:
    return pa.concat_tables(tables, promote_options="default") if tables else None


def outcome_summary(root: str) -> dict[str, Any]:
    """`outcome_counts` of every row of the stage output at `root` (after `finalize`)."""
    return outcome_counts(_concat([_read_keys(uri) for uri in _files(root)]))


def outcome_counts(table: pa.Table | None) -> dict[str, Any]:
    """Counts per origin and status, error reasons, model calls, tokens and latency of a stage output."""
    if table is None or table.num_rows == 0:
        return {"rows": 0}
    origins = table.column(schema.ORIGIN).to_pylist()
    statuses = table.column(schema.STATUS).to_pylist()
    counts: dict[str, Counter] = {}
    for o, s in zip(origins, statuses, strict=True):
        counts.setdefault(o, Counter())[s] += 1
    reasons = Counter(
        error_category(e)
        for e, s in zip(table.column(schema.ERROR).to_pylist(), statuses, strict=True)
        if s != schema.STATUS_OK and e
    )
    prov = table.column(schema.PROVENANCE)
    attempts = [a for a in pc.struct_field(prov, "attempts").to_pylist() if a is not None]
    latency = [x for x in pc.struct_field(prov, "latency_s").to_pylist() if x is not None]
    return {
        "rows": table.num_rows,
        "by_origin": {o: dict(c) for o, c in sorted(counts.items(), key=lambda kv: str(kv[0]))},
        "reasons": dict(reasons.most_common()),
        "model_calls": int(sum(attempts)),
        "attempts_histogram": dict(sorted(Counter(attempts).items())),
        "tokens_in": int(pc.sum(pc.struct_field(prov, "tokens_in")).as_py() or 0),
        "tokens_out": int(pc.sum(pc.struct_field(prov, "tokens_out")).as_py() or 0),
        "mean_latency_s": round(sum(latency) / len(latency), 4) if latency else None,
    }


def error_category(error: str) -> str:
    """'HTTP 500: internal error (after 7 attempts)' -> 'HTTP 500'; 'chatter: ...' -> 'chatter'."""
    head = error.split(":", 1)[0].split("(", 1)[0].strip()
    return head[:60]
