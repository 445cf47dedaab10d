"""The one shape of a stage: what runs on each batch, and what it asks of the cluster.

A stage is either a callable class or a plain function over one batch of pair rows (a pyarrow
Table in, the rows it produced out; a failed row is recorded with its reason, never raised):

- a class loads its model once, in `__init__`, and runs on an autoscaling actor pool
  (`actors=(min, max)`); this is how diffusion, scoring and LLM clients run;
- a function is stateless and runs as Ray Data tasks (`actors=None`): validation, task expansion.

Each stage class declares how it runs with a `plan(...)` classmethod that reads its own config
section and returns a `StagePlan` (resources per worker, batch size, pool size), as NeMo Curator's
ProcessingStage declares name, resources and batch size. A job then wires a stage in one line:
`plan.apply(dataset)`; the resumable bookkeeping around it lives in `pipeline/runner.py`.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.data import ActorPoolStrategy

from pairaug_ray import metrics
from pairaug_ray.runtime import work_selector


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage reserves: logical CPUs (fractions allowed) and GPUs."""

    cpus: float = 1.0
    gpus: float = 0.0


@dataclass(frozen=True)
class StagePlan:
    """How Ray Data runs one stage over a dataset."""

    name: str
    fn: Callable[..., Any]  # a callable class (constructed once per actor) or a batch function
    kwargs: Mapping[str, Any] = field(default_factory=dict)  # constructor or function keyword arguments
    batch_size: int | None = None  # rows per call; None: whole blocks
    resources: Resources = Resources()
    actors: tuple[int, int] | None = (1, 1)  # (min, max) of the actor pool; None: stateless tasks
    calls_per_actor: int | None = None  # batches in flight per actor (async stages overlap several)
    batch_format: str = "pyarrow"

    def apply(self, ds: ray.data.Dataset, counter: Any = None) -> ray.data.Dataset:
        """`ds` through this stage. With `counter` (the job's progress counter, progress.py), each call
        of the stage is counted as it begins and as it returns, so that work done again (a call lost
        with its node or retried, a block recomputed) shows beside the rows written."""
        # Every call is metered (pairaug_ray/metrics.py) and, with a counter, counted for progress.
        fn, kwargs = _counting(
            self.fn,
            dict(self.kwargs),
            counter,
            is_class=self.actors is not None,
            stage=self.name,
            gpus=self.resources.gpus,
        )
        common: dict[str, Any] = {
            "batch_size": self.batch_size,
            "batch_format": self.batch_format,
            "num_cpus": self.resources.cpus,
            # CPU stages keep off GPU-labelled nodes, GPU stages off CPU-labelled ones (runtime.py).
            "label_selector": work_selector(self.resources.gpus),
        }
        if self.resources.gpus:
            common["num_gpus"] = self.resources.gpus
        if self.actors is None:
            return ds.map_batches(fn, fn_kwargs=kwargs, **common)
        low, high = self.actors
        return ds.map_batches(
            fn,
            fn_constructor_kwargs=kwargs,
            compute=ActorPoolStrategy(
                min_size=low, max_size=high, max_concurrent_calls_per_actor=self.calls_per_actor
            ),
            **common,
        )


def _rows(batch: Any) -> int:
    return batch.num_rows if hasattr(batch, "num_rows") else len(batch)


class _Meter:
    """Around one call: the progress counter's begun/finished counts (when there is a counter) and
    the stage's Prometheus metrics (rows by status, seconds, GPU-seconds)."""

    def __init__(self, counter: Any, stage: str, gpus: float):
        self.counter, self.stage, self.gpus = counter, stage, gpus

    def begin(self, batch: Any) -> tuple[int, float]:
        rows = _rows(batch)
        if self.counter is not None:
            self.counter.add.remote(0, work={"begun": rows})
        return rows, time.perf_counter()

    def end(self, started: tuple[int, float], out: Any) -> None:
        rows, t0 = started
        if self.counter is not None:
            self.counter.add.remote(0, work={"finished": rows, "made": _rows(out)})
        metrics.record_call(self.stage, rows, out, time.perf_counter() - t0, self.gpus)


class _Counted:
    """A stage class whose every call is metered as it begins and as it returns (see
    StagePlan.apply and progress.WORK_COUNTS)."""

    def __init__(self, *, stage: type, stage_kwargs: dict[str, Any], meter: _Meter):
        self.stage, self.meter = stage(**stage_kwargs), meter

    def __call__(self, batch: Any) -> Any:
        started = self.meter.begin(batch)
        out = self.stage(batch)
        self.meter.end(started, out)
        return out


class _CountedAsync(_Counted):
    """The same for a stage whose __call__ is a coroutine (Ray Data then overlaps several batches)."""

    async def __call__(self, batch: Any) -> Any:
        started = self.meter.begin(batch)
        out = await self.stage(batch)
        self.meter.end(started, out)
        return out


def _counted_function(
    batch: Any, *, stage: Callable[..., Any], stage_kwargs: dict[str, Any], meter: _Meter
) -> Any:
    started = meter.begin(batch)
    out = stage(batch, **stage_kwargs)
    meter.end(started, out)
    return out


def _counting(
    fn: Any, kwargs: dict[str, Any], counter: Any, *, is_class: bool, stage: str, gpus: float
) -> tuple[Any, dict[str, Any]]:
    wrapped = {"stage": fn, "stage_kwargs": kwargs, "meter": _Meter(counter, stage, gpus)}
    if not is_class:
        return _counted_function, wrapped
    base = _CountedAsync if inspect.iscoroutinefunction(fn.__call__) else _Counted
    # Named after the stage, so that Ray Data's operator names (logs, the dashboard) stay readable.
    return type(
        fn.__name__, (base,), {"__module__": base.__module__, "__qualname__": fn.__qualname__}
    ), wrapped
