"""The pipeline's own Prometheus metrics, through Ray's metrics API (`ray.util.metrics`).

Every Ray node's metrics agent serves them beside Ray's own on its metrics port (8080 on the
chart's pods), with Ray's `ray_` prefix: `pairaug_stage_rows` is scraped as
`ray_pairaug_stage_rows`. The Grafana dashboard shipped with the chart
(helm/pairaug/dashboards/pairaug.json) queries only these names (tested).

| metric | kind | tags | what |
|---|---|---|---|
| pairaug_stage_rows | counter | stage, status | rows a stage began (`begun`) and returned, by row status (ok, error, skipped) |
| pairaug_stage_seconds | counter | stage | wall seconds spent in the stage's calls (rows/s = rows / seconds) |
| pairaug_stage_gpu_seconds | counter | stage | call seconds x GPUs reserved per worker: what a stage cost in GPU time |
| pairaug_pruned_pairs | gauge | origin, decision | the last prune's kept and pruned pairs per origin |

Metrics are best effort: outside a Ray worker, or where the metrics agent is off, recording is a
no-op (a job never fails because a metric could not be sent).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

STAGE_ROWS = "pairaug_stage_rows"
STAGE_SECONDS = "pairaug_stage_seconds"
STAGE_GPU_SECONDS = "pairaug_stage_gpu_seconds"
PRUNED_PAIRS = "pairaug_pruned_pairs"
METRICS = {
    STAGE_ROWS: (
        "counter",
        ("stage", "status"),
        "Rows a stage began (status begun) and returned, by row status.",
    ),
    STAGE_SECONDS: ("counter", ("stage",), "Wall seconds spent in a stage's calls."),
    STAGE_GPU_SECONDS: ("counter", ("stage",), "Call seconds times the GPUs each stage worker reserves."),
    PRUNED_PAIRS: ("gauge", ("origin", "decision"), "Kept and pruned pairs of the last prune, per origin."),
}
PROMETHEUS_PREFIX = "ray_"  # what Ray's metrics agent puts before every application metric

_made: dict[str, Any] = {}


def _metric(name: str) -> Any | None:
    if name in _made:
        return _made[name]
    try:
        import ray
        from ray.util.metrics import Counter, Gauge

        if not ray.is_initialized():
            return None
        kind, tags, description = METRICS[name]
        _made[name] = (Counter if kind == "counter" else Gauge)(name, description=description, tag_keys=tags)
    except Exception as e:  # no Ray, no metrics agent: metrics are not worth a failed job
        log.debug("metric %s unavailable: %s", name, e)
        _made[name] = None
    return _made[name]


def count(name: str, value: float, tags: dict[str, str]) -> None:
    metric = _metric(name)
    if metric is not None and value:
        try:
            metric.inc(value, tags=tags)
        except Exception as e:
            log.debug("metric %s not recorded: %s", name, e)


def set_gauge(name: str, value: float, tags: dict[str, str]) -> None:
    metric = _metric(name)
    if metric is not None:
        try:
            metric.set(value, tags=tags)
        except Exception as e:
            log.debug("metric %s not recorded: %s", name, e)


def record_call(stage: str, rows_in: int, out: Any, seconds: float, gpus: float) -> None:
    """One call of a stage: rows begun, rows returned by status, seconds and GPU-seconds."""
    from pairaug_ray import schema

    count(STAGE_ROWS, rows_in, {"stage": stage, "status": "begun"})
    statuses: dict[str, int] = {}
    names = getattr(out, "column_names", None)
    if names is not None and schema.STATUS in names:
        for s in out.column(schema.STATUS).to_pylist():
            statuses[s or "ok"] = statuses.get(s or "ok", 0) + 1
    else:
        statuses["ok"] = out.num_rows if hasattr(out, "num_rows") else len(out)
    for status, n in statuses.items():
        count(STAGE_ROWS, n, {"stage": stage, "status": status})
    count(STAGE_SECONDS, seconds, {"stage": stage})
    count(STAGE_GPU_SECONDS, seconds * gpus, {"stage": stage})
