"""Fault injection for tests and benchmarks: hooks that fail a job on purpose, once.

`FailOnceAtStep` is a `train_job(step_hook=...)` hook: the first worker to reach `step` raises,
leaving a marker file so that the restarted worker group (Ray Train's FailureConfig) runs through.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class InjectedFailure(RuntimeError):
    """Raised on purpose by a fault-injection hook."""


class FailOnceAtStep:
    def __init__(self, step: int, marker: str | Path):
        self.step, self.marker = step, str(marker)

    def __call__(self, state: dict[str, Any]) -> None:
        if state["step"] != self.step:
            return
        try:
            # Exclusive create: of the workers reaching the step together, exactly one fails.
            Path(self.marker).touch(exist_ok=False)
        except FileExistsError:
            return
        raise InjectedFailure(f"injected failure at step {self.step}")
