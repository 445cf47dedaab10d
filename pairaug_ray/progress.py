"""What a person and an operator see while a job runs, fed by the same counts:

- on the terminal, a line when a stage starts, one when it ends, and a bar between (rows done of
  the total, rows/s, ETA); `enable(console)` turns it on;
- in `<output_dir>/progress.json`, rewritten every few seconds while the job runs and once more when
  it ends: the stage, rows done of the total, rows/s, ETA, errors so far, the stages finished;
  `report_to(uri, ...)` turns it on, `pairaug status` and `pairaug submit` read it.

Both are off by default, so library use and tests print and write nothing; the CLI turns them on
(cli/terminal.py, cli/common.py).

The counts come from the workers through one small actor (`RowCounter`), which the driver polls
twice a second; tqdm draws the bar. On a terminal the bar redraws in place and gives way to the
stage's end line; in a log (`ray job logs`, a file) it prints at most every 30 s.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from pairaug_ray import storage

WIDTH = 9  # stage names are padded to this, so the lines line up
REPORT_EVERY_S = 5.0  # progress.json at most this often (an S3 PUT each time)
PROGRESS_FILE = "progress.json"

_console: TextIO | None = None
_bars = True
_report: Report | None = None
_stage: str | None = None  # the stage running now (nodes.py records it beside each node's arrival)


def current_stage() -> str | None:
    return _stage


def enable(console: TextIO | None) -> None:
    """Write stage lines and bars to `console` (None: stay silent)."""
    global _console
    _console = console


def show_bars(on: bool) -> None:
    """Bars on or off (`ray.progress_bars`); the stage lines are written either way."""
    global _bars
    _bars = on


def enabled() -> bool:
    return _console is not None


def shown(path: str) -> str:
    """A path as a person reads it on the terminal: relative to the working directory when under it."""
    if "://" in path or not os.path.isabs(path):
        return path
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def say(line: str) -> None:
    if _console is not None:
        _console.write(line + "\n")
        _console.flush()


# --- progress.json ----------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Report:
    """The document behind `<output_dir>/progress.json` and when it was last written."""

    def __init__(self, uri: str, run: str, command: str):
        self.uri = uri
        self.doc: dict[str, Any] = {
            "format": "pairaug-progress/1",
            "run": run,
            "command": command,
            "state": "running",
            "pid": os.getpid(),
            "started_at": _now(),
            "updated_at": _now(),
            "stage": None,
            "finished_stages": [],
        }
        self._written = 0.0
        self._lock = threading.Lock()

    def update(self, force: bool = False, **fields: Any) -> None:
        with self._lock:
            self.doc.update(fields)
            self.doc["updated_at"] = _now()
            if not force and time.monotonic() - self._written < REPORT_EVERY_S:
                return
            self._written = time.monotonic()
            from pairaug_ray import nodes

            self.doc["nodes"] = nodes.current()  # the nodes per group now, what waits for nodes
            doc = dict(self.doc)
        # A storage hiccup must not stop the job; the next write catches up.
        with contextlib.suppress(OSError):
            storage.write_json(self.uri, doc)


def report_to(uri: str | None, *, run: str = "", command: str = "") -> None:
    """Keep `uri` (a progress.json) up to date from now on (None: stop)."""
    global _report
    _report = Report(uri, run, command) if uri else None
    if _report is not None:
        _report.update(force=True)


def report_end(error: str | None = None) -> None:
    """The job ended: progress.json says how, once more."""
    if _report is not None:
        _report.update(force=True, state="failed" if error else "finished", error=error, stage=None)


@contextmanager
def stage(name: str, what: str = "") -> Iterator[dict[str, str]]:
    """`name ... what` now, `name done: <result> (N s)` at the end; the caller sets `result["line"]`."""
    global _stage
    say(f"{name:<{WIDTH}} {what}".rstrip())
    started = time.perf_counter()
    _stage = name
    if _report is not None:
        # The last stage's rows, rate and ETA are not this one's.
        _report.update(
            force=True,
            stage={"name": name, "what": what, "started_at": _now()},
            rows=None,
            rate_per_s=None,
            eta_s=None,
        )
    result: dict[str, str] = {"line": ""}
    try:
        yield result
    finally:
        _stage = None
    seconds = time.perf_counter() - started
    say(f"{name:<{WIDTH}} done: {result['line']} ({seconds:.0f} s)".replace("done:  (", "done ("))
    if _report is not None:
        finished = [
            *_report.doc["finished_stages"],
            {"name": name, "result": result["line"], "seconds": round(seconds, 1)},
        ]
        _report.update(force=True, stage=None, finished_stages=finished)


# --- counting ----------------------------------------------------------------------------------------------


# What a stage's own call counts (stages/base.py), beside the rows written: rows handed to a call
# (again after a lost node or a failed call), the input rows of calls that returned, and the rows
# those calls returned (again when Ray recomputes a block lost with its node).
WORK_COUNTS = ("begun", "finished", "made")


@ray.remote(num_cpus=0, max_restarts=0)
class RowCounter:
    """Counts the rows written and how many of those ended in an error, the stage's work counts
    (WORK_COUNTS), and a few numbers to show beside the bar (`info`: the loss)."""

    def __init__(self) -> None:
        self.reset()

    def add(self, n: int, errors: int = 0, work: dict[str, int] | None = None, **info: Any) -> None:
        self.counts["done"] += n
        self.counts["errors"] += errors
        for key, value in (work or {}).items():
            self.counts[key] += value
        self.info.update(info)

    def set(self, n: int, **info: Any) -> None:
        self.counts["done"] = n
        self.info.update(info)

    def reset(self) -> None:
        self.counts = dict.fromkeys(("done", "errors", *WORK_COUNTS), 0)
        self.info: dict[str, Any] = {}

    def read(self) -> tuple[dict[str, int], dict[str, Any]]:
        return self.counts, self.info


def counted(ds: ray.data.Dataset, counter: Any) -> ray.data.Dataset:
    """`ds`, telling `counter` (from `bar`) about every batch that comes out of it."""
    if counter is None:
        return ds
    return ds.map_batches(
        _count, fn_kwargs={"counter": counter}, batch_format="pyarrow", zero_copy_batch=True
    )


def _count(batch: Any, *, counter: Any) -> Any:
    counter.add.remote(batch.num_rows)
    return batch


_counter: tuple[tuple[str, str], Any] | None = None


def counter() -> Any:
    """The job's counter actor, created once per driver and Ray session and reused by every stage.

    This module keeps the handle: an actor lives while a handle to it does, and a stage's bar
    dropping the last one between stages would leave the next stage a dying actor (a named actor
    looked up with get_if_exists can be exactly that: seen on a cluster, ActorDiedError at reset)."""
    global _counter
    context = ray.get_runtime_context()
    session = (context.get_job_id(), context.get_node_id())  # a new ray.init is a new session
    if _counter is None or _counter[0] != session:
        # On the driver's node (the head, for a Ray job): a 0-CPU actor elsewhere could sit on a
        # worker that the autoscaler removes as idle, or on a spot node that is reclaimed.
        here = NodeAffinitySchedulingStrategy(node_id=context.get_node_id(), soft=False)
        _counter = (session, RowCounter.options(scheduling_strategy=here).remote())
    return _counter[1]


@contextmanager
def bar(name: str, total: int | None = None, unit: str = "rows") -> Iterator[Any]:
    """A progress bar and progress.json fed by the workers; yields the counter actor to hand to them
    (None when neither is on)."""
    drawn = _console is not None and _bars
    if not drawn and _report is None:
        yield None
        return
    handle = counter()
    ray.get(handle.reset.remote())
    shown_bar = _tqdm(name, total, unit) if drawn else None
    started = time.monotonic()
    stop = threading.Event()
    last: dict[str, int] = {}
    steady: dict[str, float] = {}  # when the first rows arrived, and how many: the ETA's start

    def read(timeout: float) -> tuple[dict[str, int], dict[str, Any]] | None:
        try:
            return ray.get(handle.read.remote(), timeout=timeout)
        except Exception:  # a slow answer only delays the bar; never fail a job for it
            return None

    def settled() -> tuple[dict[str, int], dict[str, Any]] | None:
        # The workers' counts are sent without waiting, so a few may still be on their way when the
        # stage returns: read until two reads agree (at most ~2 s), with a patient timeout.
        counts = read(30)
        for _ in range(10):
            time.sleep(0.2)
            again = read(30)
            if again is None or counts is None or again[0] == counts[0]:
                return again or counts
            counts = again
        return counts

    def refresh(counts: tuple[dict[str, int], dict[str, Any]] | None = None) -> None:
        counts = counts or read(5)
        if counts is None:
            return
        rows, info = counts
        last.update(rows)
        n = rows["done"]
        eta = steady_eta(steady, n, total, time.monotonic())
        if shown_bar is not None:
            if n > shown_bar.n:
                shown_bar.update(n - shown_bar.n)
            from pairaug_ray import nodes

            waiting = nodes.waiting_text((nodes.current() or {}).get("waiting") or {})
            shown_bar.set_postfix_str(
                ", ".join(
                    [
                        *([f"ETA {shown_bar.format_interval(eta)}"] if eta is not None else []),
                        *(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()),
                        *([waiting] if waiting else []),
                    ]
                ),
                refresh=False,
            )
        if _report is not None:
            elapsed = max(1e-9, time.monotonic() - started)
            rate = n / elapsed
            _report.update(
                rows={**rows, "total": total, "unit": unit, **info},
                rate_per_s=round(rate, 3),
                eta_s=None if eta is None else round(eta, 1),
            )

    def poll() -> None:
        while not stop.wait(0.5):
            refresh()

    thread = threading.Thread(target=poll, name=f"progress-{name}", daemon=True)
    thread.start()
    try:
        yield handle
    finally:
        stop.set()
        thread.join()
        refresh(settled())
        if shown_bar is not None:
            shown_bar.close()
        global last_counts
        last_counts = dict(last)


last_counts: dict[str, int] = {}  # the counts of the last bar when it closed: done, errors, WORK_COUNTS


def _tqdm(name: str, total: int | None, unit: str) -> Any:
    from tqdm import tqdm

    tty = hasattr(_console, "isatty") and _console.isatty()
    return tqdm(
        total=total or None,
        desc=f"{name:<{WIDTH}}",
        unit=f" {unit}",
        file=_console,
        leave=False,
        # Not dynamic_ncols: a terminal that reports 0 columns (some CI ptys) would then hide the bar.
        mininterval=0.5 if tty else 30.0,
        delay=0.5 if tty else 30.0,  # short stages need no bar; a log gets a line every 30 s
        # The ETA is ours, in the postfix (steady_eta): tqdm's {remaining} counts the start-up in.
        bar_format="{desc} {bar:24} {n_fmt}/{total_fmt}{unit}, {rate_fmt}{postfix}"
        if total
        else "{desc} {n_fmt}{unit}, {rate_fmt}{postfix}",
    )


ETA_AFTER_S = 10.0  # no ETA until the rows have flowed this long: the first batch includes start-up
ETA_AFTER_UPDATES = 3  # ... and the count has moved this many times since the first rows


def steady_eta(steady: dict[str, float], n: int, total: int | None, now: float) -> float | None:
    """Seconds left at the steady rate: rows since the first ones arrived over the time since then.
    The first batch of a stage carries its start-up (actors loading models, nodes starting), so a
    rate that includes it promises hours for a five-minute stage. None until the rate has settled."""
    if n <= 0 or not total:
        return None
    if "t0" not in steady:
        steady.update(t0=now, n0=n, last=n, moves=0)
        return None
    if n != steady["last"]:
        steady["last"], steady["moves"] = n, steady["moves"] + 1
    dt, dn = now - steady["t0"], n - steady["n0"]
    if dt < ETA_AFTER_S or steady["moves"] < ETA_AFTER_UPDATES or dn <= 0 or n > total:
        return None
    return (total - n) * dt / dn


# --- reading it back -------------------------------------------------------------------------------------


STALE_AFTER_S = 120.0  # a running job rewrites its progress every few seconds


def read_progress(output_dir: str) -> dict[str, Any] | None:
    """The progress.json of the run at `output_dir` (local or s3://), or None when there is none yet."""
    import json

    from pairaug_ray.errors import UserError

    uri = storage.join(output_dir, PROGRESS_FILE)
    if not storage.exists(uri):
        return None
    try:
        doc = json.loads(storage.read_text(uri))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(
            f"{uri}: not JSON ({e}); a job writes it whole, so it was changed by hand or cut short"
        ) from None
    if not isinstance(doc, dict) or "state" not in doc:
        raise UserError(f"{uri}: not a pairaug progress file (no 'state')")
    return doc


def _ago(iso: str | None, now: datetime) -> float | None:
    return None if not iso else (now - datetime.fromisoformat(iso)).total_seconds()


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = max(0, int(seconds))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def format_progress(doc: dict[str, Any], now: datetime | None = None) -> str:
    """A progress.json as a person reads it."""
    now = now or datetime.now(UTC)
    state = doc.get("state", "?")
    head = f"run '{doc.get('run')}' ({doc.get('command')}): {state}"
    lines = []
    current = doc.get("stage")
    if state == "running" and current:
        head += f", stage {current['name']} for {_duration(_ago(current.get('started_at'), now))}"
        rows = doc.get("rows") or {}
        if rows:
            total = rows.get("total")
            done = f"{rows.get('done', 0)}/{total}" if total else f"{rows.get('done', 0)}"
            pct = f" ({rows['done'] / total:.0%})" if total else ""
            eta = f", ETA {_duration(doc.get('eta_s'))}" if doc.get("eta_s") is not None else ""
            lines.append(
                f"  {current['name']:<{WIDTH}} {done} {rows.get('unit', 'rows')}{pct}, "
                f"{doc.get('rate_per_s', 0):.3g} {rows.get('unit', 'rows')}/s{eta}, {rows.get('errors', 0)} errors"
            )
    elif state == "failed":
        head += f": {doc.get('error')}"
    nodes_now = doc.get("nodes") or {}
    if nodes_now.get("groups"):
        from pairaug_ray.nodes import waiting_text

        groups = ", ".join(f"{g} {n}" for g, n in nodes_now["groups"].items())
        waiting = waiting_text(nodes_now.get("waiting") or {}) if state == "running" else ""
        lines.append(f"  nodes: {groups}" + (f"; {waiting}" if waiting else ""))
    for s in doc.get("finished_stages", []):
        lines.append(f"  {s['name']:<{WIDTH}} done: {s['result']} ({s['seconds']:.0f} s)")
    age = _ago(doc.get("updated_at"), now)
    if state == "running" and age is not None and age > STALE_AFTER_S:
        lines.append(
            f"  no update for {_duration(age)}: the job's driver may have stopped (a rerun resumes it)"
        )
    else:
        lines.append(f"  updated {_duration(age)} ago")
    return "\n".join([head, *lines])
