"""progress.json as `pairaug status` and `pairaug submit` print it (the job side: tests/test_cli.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pairaug_ray import progress
from pairaug_ray.progress import format_progress

NOW = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC)


def _at(seconds_ago: float) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).isoformat(timespec="seconds")


def _doc(**fields):
    return {
        "run": "exp1",
        "command": "augment",
        "state": "running",
        "updated_at": _at(3),
        "stage": {"name": "generate", "started_at": _at(72)},
        "rows": {"done": 150, "total": 256, "unit": "images", "errors": 2},
        "rate_per_s": 3.11,
        "eta_s": 34.1,
        "finished_stages": [{"name": "validate", "result": "179 rows: ok 179", "seconds": 6.2}],
        **fields,
    }


def test_a_running_job():
    text = format_progress(_doc(), NOW)
    assert text.splitlines() == [
        "run 'exp1' (augment): running, stage generate for 1 min 12 s",
        "  generate  150/256 images (59%), 3.11 images/s, ETA 34 s, 2 errors",
        "  validate  done: 179 rows: ok 179 (6 s)",
        "  updated 3 s ago",
    ]


def test_a_job_that_stopped_reporting_is_flagged():
    text = format_progress(_doc(updated_at=_at(600)), NOW)
    assert "no update for 10 min 0 s: the job's driver may have stopped (a rerun resumes it)" in text


def test_finished_and_failed_jobs():
    done = format_progress(_doc(state="finished", stage=None), NOW)
    assert done.startswith("run 'exp1' (augment): finished") and "generate" not in done.splitlines()[0]
    failed = format_progress(
        _doc(state="failed", stage=None, error="ErrorBudgetExceeded: generate: 9 of 10"), NOW
    )
    assert failed.splitlines()[0] == "run 'exp1' (augment): failed: ErrorBudgetExceeded: generate: 9 of 10"


def test_a_new_stage_does_not_show_the_last_stages_rows(tmp_path):
    """Between a stage's start and its bar's first count, progress.json must not show the rows, rate
    and ETA of the stage before (seen on a cluster: generate read 87/87 rows, rewrite's, for 5 s)."""
    import json

    from pairaug_ray import progress

    path = tmp_path / "progress.json"
    progress.report_to(str(path), run="exp1", command="augment")
    try:
        with progress.stage("rewrite") as shown:
            progress._report.update(force=True, rows={"done": 87, "total": 87}, rate_per_s=9.0, eta_s=0.0)
            shown["line"] = "87 rows: ok 87"
        with progress.stage("generate"):
            doc = json.loads(path.read_text())
            assert doc["stage"]["name"] == "generate"
            assert doc["rows"] is None and doc["rate_per_s"] is None and doc["eta_s"] is None
            assert "generate  " not in format_progress(doc).splitlines()[1]
    finally:
        progress.report_to(None)


def test_work_redone_counts_lost_calls_and_recomputed_rows():
    from pairaug_ray.pipeline.runner import work_redone

    # Nothing counted (no bar, no progress.json): nothing said.
    assert work_redone({"begun": 0, "finished": 0, "made": 0}, new_rows=10) is None
    # Every call returned once: nothing redone.
    clean = work_redone({"begun": 100, "finished": 100, "made": 100}, new_rows=100)
    assert clean["redone"] == 0 and clean["redone_fraction"] == 0
    # A node lost with a batch of 4 in its call; the retry made them: 4 of 104 rows begun redone.
    lost = work_redone({"begun": 104, "finished": 100, "made": 100}, new_rows=100)
    assert lost["redone"] == 4 and lost["redone_fraction"] == round(4 / 104, 4)
    # A stage that makes 3 rows per input row (rewrite: inter, intra, paraphrase); a block of 6
    # output rows recomputed after its node was lost is 2 input rows' work.
    rewrite = work_redone({"begun": 52, "finished": 52, "made": 156}, new_rows=150)
    assert rewrite["redone"] == 2 and rewrite["redone_fraction"] == round(2 / 52, 4)


def test_no_eta_from_the_first_step_then_the_steady_rate():
    """A stage's first batch carries its start-up (a 60 s model load here, then 1 row/s): the ETA
    waits until the rows have flowed for a while, then comes from the rate since the first rows,
    not from the whole elapsed time (which would promise 60x too long after the first row)."""
    steady: dict = {}
    assert progress.steady_eta(steady, 0, 300, now=0.0) is None  # nothing yet
    assert progress.steady_eta(steady, 1, 300, now=60.0) is None  # the first row, after start-up
    assert progress.steady_eta(steady, 3, 300, now=62.0) is None  # too soon, too few moves
    assert progress.steady_eta(steady, 6, 300, now=65.0) is None
    eta = progress.steady_eta(steady, 12, 300, now=71.0)  # 11 rows in 11 s since the first
    assert eta == pytest.approx(288.0)
    assert progress.steady_eta({}, 5, None, now=1.0) is None  # no total, no ETA
