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


_KEY_COLUMNS = [schema.PAIR_ID, schema.STATUS, schema.ORIGIN, schema.ERROR, schema.PROVENANCE]


def _read_keys(uri: str) -> pa.Table:
    """The columns the bookkeeping needs, one row per row of the file."""
    fs, path = storage.filesystem(uri)
    present = set(pq.read_schema(path, filesystem=fs).names)
    table = pq.read_table(path, filesystem=fs, columns=[c for c in _KEY_COLUMNS if c in present])
    for c in _KEY_COLUMNS:
        if c not in table.column_names:  # files of older versions or foreign writers
            table = table.append_column(c, pa.nulls(table.num_rows, schema.field_for(c).type))
    return table


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
        finished_at = pc.struct_field(keys.column(schema.PROVENANCE), "finished_at").to_pylist()
        finished = [t.timestamp() if t else 0.0 for t in finished_at]
        for i, (pid, status) in enumerate(
            zip(keys.column(schema.PAIR_ID).to_pylist(), keys.column(schema.STATUS).to_pylist(), strict=True)
        ):
            candidate = (_RANK.get(status, 0), finished[i], uri, i)
            current = best.get(pid)
            if current is None or candidate[:2] > current[:2]:
                best[pid] = candidate
    removed = rewritten = 0
    kept_keys = []
    for uri, keys in per_file.items():
        keep = [
            best[pid][2] == uri and best[pid][3] == i
            for i, pid in enumerate(keys.column(schema.PAIR_ID).to_pylist())
        ]
        kept_keys.append(keys.filter(pa.array(keep, pa.bool_())) if not all(keep) else keys)
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
    return FinalizeReport(
        rows=len(best),
        duplicates_removed=removed,
        files_rewritten=rewritten,
        summary=outcome_counts(_concat(kept_keys)),
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
