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

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.data import ActorPoolStrategy


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

    def apply(self, ds: ray.data.Dataset) -> ray.data.Dataset:
        common: dict[str, Any] = {
            "batch_size": self.batch_size,
            "batch_format": self.batch_format,
            "num_cpus": self.resources.cpus,
        }
        if self.resources.gpus:
            common["num_gpus"] = self.resources.gpus
        if self.actors is None:
            return ds.map_batches(self.fn, fn_kwargs=dict(self.kwargs), **common)
        low, high = self.actors
        return ds.map_batches(
            self.fn,
            fn_constructor_kwargs=dict(self.kwargs),
            compute=ActorPoolStrategy(
                min_size=low, max_size=high, max_concurrent_calls_per_actor=self.calls_per_actor
            ),
            **common,
        )
