"""The cluster's nodes while a job runs: which group, when, for which stage, and what waits for nodes.

The driver asks the GCS for the autoscaler's view of the cluster (what `ray status` shows: live
nodes with their labels, launches in flight, resource demands nothing can place yet) every few
seconds, from a daemon thread. Three things come of it:

- `<output_dir>/nodes.json` when the job ends: every node that came or went, with its group (the
  `ray.io/node-group` label, a KubeRay worker group's name), its kind (`pairaug.io/node-kind`, cpu
  or gpu as the chart labels it, else whether it has GPUs), its GPUs, and the stage that was running;
  plus the peak number of nodes per group and per stage. An operator reads from it whether a GPU
  node came up for CPU work (it must not: docs/operations.md, "CPU work stays off GPU nodes");
- progress.json's `nodes` (the nodes per group now, and what waits): `pairaug status` prints it;
- the stage's progress bar says when work waits for nodes, e.g. "12 CPU tasks wait for nodes" on a
  cluster whose CPU group is at its maximum.

`record_to(uri)` asks for it (the CLI does, beside progress.json); the watch starts once Ray is up
(runtime.init_ray) and `finish()` stops it and writes the file. Off by default: library use and the
tests that do not ask record nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import ray

from pairaug_ray import storage
from pairaug_ray.runtime import NODE_KIND_LABEL

log = logging.getLogger(__name__)

TIMELINE_FILE = "nodes.json"
POLL_S = 2.0
GROUP_LABEL = "ray.io/node-group"  # KubeRay sets it to the worker group's name on every pod
HEAD_RESOURCE = "node:__internal_head__"  # the resource Ray gives the head node only

_requested: str | None = None  # where to write nodes.json, set by record_to
_watch: NodeWatch | None = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _current_stage() -> str | None:
    from pairaug_ray import progress

    return progress.current_stage()


class NodeWatch:
    """Polls the cluster's state; keeps the node timeline and what waits for nodes."""

    def __init__(self, interval: float = POLL_S, autoscaling: bool = True):
        self.interval = interval
        self.autoscaling = autoscaling  # a fixed local Ray gets no new nodes: nothing "waits" there
        self.started = time.monotonic()
        self.events: list[dict[str, Any]] = []
        self.live: dict[str, dict[str, Any]] = {}  # node id -> its "up" event
        self.peak: dict[str, int] = {}  # group -> most nodes at once
        self.peak_by_stage: dict[str, dict[str, int]] = {}  # stage -> group -> most nodes at once
        self.waiting: dict[str, Any] = {}
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- polling -------------------------------------------------------------------------------------

    def start(self) -> NodeWatch:
        self.poll()
        self._thread = threading.Thread(target=self._run, name="node-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.poll()

    def poll(self) -> None:
        try:
            status = self._status()
        except Exception as e:  # a slow or lost GCS only delays the timeline; never fail a job for it
            self.error = f"{type(e).__name__}: {e}"[:300]
            log.debug("cluster status unavailable", exc_info=True)
            return
        self.observe(status)

    @staticmethod
    def _status() -> Any:
        from ray.autoscaler.v2.sdk import get_cluster_status

        return get_cluster_status(ray.get_runtime_context().gcs_address, timeout=10)

    # --- what a status says ----------------------------------------------------------------------------

    def observe(self, status: Any) -> None:
        """Fold one cluster status (ray.autoscaler.v2.schema.ClusterStatus) into the timeline."""
        stage = _current_stage()
        nodes = {n.node_id: n for n in [*status.active_nodes, *status.idle_nodes] if n.node_id}
        with self._lock:
            for node_id, node in nodes.items():
                if node_id not in self.live:
                    event = {"event": "up", "node_id": node_id, **_describe(node), **self._when(stage)}
                    self.live[node_id] = event
                    self.events.append(event)
            for node_id in [n for n in self.live if n not in nodes]:
                up = self.live.pop(node_id)
                self.events.append(
                    {
                        "event": "down",
                        "node_id": node_id,
                        "group": up["group"],
                        "kind": up["kind"],
                        "gpus": up["gpus"],
                        **self._when(stage),
                    }
                )
            counts = self.counts()
            for group, n in counts.items():
                self.peak[group] = max(self.peak.get(group, 0), n)
                if stage:
                    per_stage = self.peak_by_stage.setdefault(stage, {})
                    per_stage[group] = max(per_stage.get(group, 0), n)
            self.waiting = _waiting(status) if self.autoscaling else {}

    def _when(self, stage: str | None) -> dict[str, Any]:
        return {"at": _now(), "elapsed_s": round(time.monotonic() - self.started, 1), "stage": stage}

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for event in self.live.values():
            out[event["group"]] = out.get(event["group"], 0) + 1
        return dict(sorted(out.items()))

    def now(self) -> dict[str, Any]:
        """For progress.json: the nodes per group now, and what waits for nodes."""
        with self._lock:
            return {"groups": self.counts(), "waiting": dict(self.waiting)}

    def timeline(self) -> dict[str, Any]:
        with self._lock:
            kinds = {e["group"]: e["kind"] for e in self.events}
            return {
                "format": "pairaug-nodes/1",
                "poll_s": self.interval,
                "groups": {g: {"kind": kinds.get(g), "peak": n} for g, n in sorted(self.peak.items())},
                "peak_by_stage": self.peak_by_stage,
                "events": list(self.events),
                "error": self.error,
            }


def _describe(node: Any) -> dict[str, Any]:
    labels = dict(node.labels or {})
    usage = getattr(node, "resource_usage", None)
    gpus, head = 0.0, False
    for r in getattr(usage, "usage", None) or []:
        if r.resource_name == "GPU":
            gpus = r.total
        head = head or r.resource_name == HEAD_RESOURCE
    # KubeRay labels its head pod too (headgroup); a head started by hand has only the resource,
    # and its generated type name (node_<id>) would read as a group of its own.
    group = labels.get(GROUP_LABEL) or ("head" if head else None) or node.ray_node_type_name or "local"
    kind = labels.get(NODE_KIND_LABEL) or ("gpu" if gpus else "cpu")
    return {"group": group, "kind": kind, "gpus": gpus}


def _waiting(status: Any) -> dict[str, Any]:
    """Tasks and actors nothing can place yet, CPU-only and GPU apart, and the nodes on their way."""
    cpu = gpu = 0
    for demand in getattr(status.resource_demands, "ray_task_actor_demand", None) or []:
        for b in demand.bundles_by_count:
            if b.bundle.get("GPU"):
                gpu += b.count
            elif b.bundle.get("CPU"):
                cpu += b.count
    starting: dict[str, int] = {}
    for launch in status.pending_launches or []:
        starting[launch.ray_node_type_name] = starting.get(launch.ray_node_type_name, 0) + launch.count
    for node in status.pending_nodes or []:
        starting[node.ray_node_type_name] = starting.get(node.ray_node_type_name, 0) + 1
    out: dict[str, Any] = {}
    if cpu:
        out["cpu_tasks"] = cpu
    if gpu:
        out["gpu_tasks"] = gpu
    if out and starting:
        out["starting"] = dict(sorted(starting.items()))
    return out


def waiting_text(waiting: dict[str, Any]) -> str:
    """ "12 CPU tasks wait for nodes (1 cpu starting)", or "" when nothing waits."""
    parts = []
    if waiting.get("cpu_tasks"):
        parts.append(f"{waiting['cpu_tasks']} CPU tasks")
    if waiting.get("gpu_tasks"):
        parts.append(f"{waiting['gpu_tasks']} GPU tasks")
    if not parts:
        return ""
    text = f"{' and '.join(parts)} wait for nodes"
    if waiting.get("starting"):
        text += " (" + ", ".join(f"{n} {g} starting" for g, n in waiting["starting"].items()) + ")"
    return text


# --- the job's watch -------------------------------------------------------------------------------------


def record_to(uri: str | None) -> None:
    """Write the node timeline to `uri` when the job ends (None: record nothing)."""
    global _requested
    _requested = uri


def start_if_requested(autoscaling: bool) -> None:
    """Called once Ray is up (runtime.init_ray): start the watch when a timeline was asked for."""
    global _watch
    if _requested and _watch is None:
        _watch = NodeWatch(autoscaling=autoscaling).start()


def current() -> dict[str, Any] | None:
    return _watch.now() if _watch is not None else None


def finish() -> dict[str, Any] | None:
    """Stop the watch and write nodes.json; returns the timeline (None when nothing was recorded)."""
    global _watch, _requested
    watch, uri = _watch, _requested
    _watch, _requested = None, None
    if watch is None or uri is None:
        return None
    watch.stop()
    doc = watch.timeline()
    with contextlib.suppress(OSError):  # the job's outputs are written; a lost timeline is not an error
        storage.write_json(uri, doc)
    return doc
