"""progress.json as `pairaug status` and `pairaug submit` print it (the job side: tests/test_cli.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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
