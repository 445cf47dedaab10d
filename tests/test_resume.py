"""The bookkeeping of resumable outputs (pairaug_ray/resume.py), on files written by hand.

`finalize` keeps exactly one row per pair_id (ok > skipped > error, then the latest finished_at,
then the row written first), rewrites only the files that hold losers, removes files left with
none, and counts the outcomes of the rows kept; `scan_output` removes files a kill cut short and
says which ids are done.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyarrow.parquet as pq

from pairaug_ray import schema
from pairaug_ray.resume import finalize, scan_output

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def row(pid: str, status: str, minutes: int, origin: str = "inter", attempts: int = 1) -> dict:
    return {
        schema.PAIR_ID: pid,
        schema.STATUS: status,
        schema.ORIGIN: origin,
        schema.ERROR: None if status == "ok" else f"{status}: because",
        schema.PROVENANCE: schema.make_provenance(
            "test", finished_at=T0 + timedelta(minutes=minutes), attempts=attempts, params={"big": "x" * 500}
        ),
    }


def write(root, name: str, rows: list[dict], *, provenance: bool = True) -> None:
    table = schema.rows_to_table(rows)
    if not provenance:
        table = table.drop_columns([schema.PROVENANCE])
    (root / "manifest").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, root / "manifest" / name)


def ids_by_file(root) -> dict[str, list[tuple[str, str]]]:
    out = {}
    for f in sorted((root / "manifest").glob("*.parquet")):
        t = pq.read_table(f, columns=[schema.PAIR_ID, schema.STATUS])
        out[f.name] = list(zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True))
    return out


def test_finalize_keeps_the_best_copy_of_every_pair(tmp_path):
    write(
        tmp_path,
        "a.parquet",
        [
            row("ok-beats-error", "error", 9),
            row("later-ok-wins", "ok", 1),
            row("tie-first", "ok", 5),
            row("only", "ok", 2),
        ],
    )
    write(
        tmp_path,
        "b.parquet",
        [row("ok-beats-error", "ok", 1), row("later-ok-wins", "ok", 3), row("tie-first", "ok", 5)],
    )
    write(tmp_path, "c.parquet", [row("skipped-beats-error", "skipped", 1, origin="intra")])
    write(tmp_path, "d.parquet", [row("skipped-beats-error", "error", 8, origin="intra", attempts=3)])
    report = finalize(str(tmp_path))
    assert ids_by_file(tmp_path) == {
        "a.parquet": [("tie-first", "ok"), ("only", "ok")],
        "b.parquet": [("ok-beats-error", "ok"), ("later-ok-wins", "ok")],
        "c.parquet": [("skipped-beats-error", "skipped")],
    }  # d.parquet held only a loser: removed
    assert (report.rows, report.duplicates_removed, report.files_rewritten) == (5, 4, 3)
    assert report.summary["by_origin"] == {"inter": {"ok": 4}, "intra": {"skipped": 1}}
    assert report.summary["reasons"] == {"skipped": 1}
    assert report.summary["model_calls"] == 5 and report.summary["attempts_histogram"] == {1: 5}
    # Finalizing again changes nothing: every pair is there once.
    again = finalize(str(tmp_path))
    assert (again.rows, again.duplicates_removed, again.files_rewritten) == (5, 0, 0)
    # The rewritten files keep their other columns.
    kept = pq.read_table(tmp_path / "manifest" / "a.parquet")
    assert '"big"' in kept.column(schema.PROVENANCE).combine_chunks().field("params")[0].as_py()


def test_files_without_provenance_and_cut_short_files(tmp_path):
    write(tmp_path, "a.parquet", [row("x", "ok", 1), row("y", "error", 1)], provenance=False)
    write(tmp_path, "b.parquet", [row("x", "ok", 2)])
    (tmp_path / "manifest" / "c.parquet").write_bytes(b"PAR1 cut short by a kill")
    state = scan_output(str(tmp_path))
    assert state.removed_files and state.removed_files[0].endswith("c.parquet")
    assert state.done == frozenset({"x"}) and state.rows == 3 and state.errors == 1
    assert scan_output(str(tmp_path), retry_errors=False).done == frozenset({"x", "y"})
    report = finalize(str(tmp_path))
    # The copy with a finished_at wins over the one without (a file of an older writer).
    assert ids_by_file(tmp_path) == {"a.parquet": [("y", "error")], "b.parquet": [("x", "ok")]}
    assert report.rows == 2 and report.summary["by_origin"]["inter"] == {"ok": 1, "error": 1}


def test_an_empty_output(tmp_path):
    assert finalize(str(tmp_path)).rows == 0
    assert scan_output(str(tmp_path)).done == frozenset()
