"""What a person sees while a job runs: a line when a stage starts, one when it ends, a bar between.

Off by default, so library use and tests print nothing; the CLI turns it on with the terminal's
streams (`enable`), after it has sent library output to the run's log file.

The bar counts rows (or steps) that workers report to one small counter actor, which the driver
polls twice a second; rows/s and the ETA come from tqdm. Where the total is not known in advance
the bar shows the count and the rate only. On a terminal the bar redraws in place and is replaced by
the stage's end line; in a log (`ray job logs`, a file) it prints at most every 30 s.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

import ray

COUNTER_NAME = "pairaug-progress"
WIDTH = 9  # stage names are padded to this, so the lines line up

_console: TextIO | None = None
_bars = True


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


@contextmanager
def stage(name: str, what: str = "") -> Iterator[dict[str, str]]:
    """`name ... what` now, `name done: <result> (N s)` at the end; the caller sets `result["line"]`."""
    say(f"{name:<{WIDTH}} {what}".rstrip())
    started = time.perf_counter()
    result: dict[str, str] = {"line": ""}
    yield result
    seconds = time.perf_counter() - started
    say(f"{name:<{WIDTH}} done: {result['line']} ({seconds:.0f} s)".replace("done:  (", "done ("))


@ray.remote(num_cpus=0, max_restarts=0)
class RowCounter:
    """Counts what workers finished; `info` carries a few numbers to show beside the bar (loss)."""

    def __init__(self) -> None:
        self.n, self.info = 0, {}

    def add(self, n: int, **info: Any) -> None:
        self.n += n
        self.info.update(info)

    def set(self, n: int, **info: Any) -> None:
        self.n = n
        self.info.update(info)

    def reset(self) -> None:
        self.n, self.info = 0, {}

    def read(self) -> tuple[int, dict[str, Any]]:
        return self.n, self.info


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


def counter() -> Any:
    """The job's counter actor (created once per Ray session, reused by every stage)."""
    return RowCounter.options(name=COUNTER_NAME, get_if_exists=True, lifetime=None).remote()


@contextmanager
def bar(name: str, total: int | None = None, unit: str = "rows") -> Iterator[Any]:
    """A progress bar fed by the workers; yields the counter actor to hand to them (None when off)."""
    if _console is None or not _bars:
        yield None
        return
    from tqdm import tqdm

    handle = counter()
    ray.get(handle.reset.remote())
    tty = hasattr(_console, "isatty") and _console.isatty()
    shown = tqdm(
        total=total or None,
        desc=f"{name:<{WIDTH}}",
        unit=f" {unit}",
        file=_console,
        leave=False,
        # Not dynamic_ncols: a terminal that reports 0 columns (some CI ptys) would then hide the bar.
        mininterval=0.5 if tty else 30.0,
        delay=0.5 if tty else 30.0,  # short stages need no bar; a log gets a line every 30 s
        bar_format="{desc} {bar:24} {n_fmt}/{total_fmt}{unit}, {rate_fmt}, ETA {remaining}{postfix}"
        if total
        else "{desc} {n_fmt}{unit}, {rate_fmt}{postfix}",
    )
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(0.5):
            _refresh(shown, handle)

    thread = threading.Thread(target=poll, name=f"progress-{name}", daemon=True)
    thread.start()
    try:
        yield handle
    finally:
        stop.set()
        thread.join()
        _refresh(shown, handle)
        shown.close()


def _refresh(shown: Any, handle: Any) -> None:
    try:
        n, info = ray.get(handle.read.remote(), timeout=5)
    except Exception:  # a slow answer only delays the bar; never fail a job for it
        return
    if n > shown.n:
        shown.update(n - shown.n)
    if info:
        shown.set_postfix_str(
            ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items()),
            refresh=False,
        )
