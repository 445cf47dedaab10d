"""A real Ray autoscaling cluster on this one machine, shaped like the Helm chart's RayCluster.

`FakeAutoscalingCluster` starts `ray start --head --block` with Ray's own fake multi-node node
provider (`ray.autoscaler._private.fake_multi_node`, the provider behind
`ray.cluster_utils.AutoscalingCluster`) and autoscaler v2. The provider runs inside the
autoscaler's monitor process on the head and "launches" a worker node by starting a second
raylet (plus its agents) on this machine, with the resources of the node type; terminating a
node kills those processes. So scale-up, idle scale-down and node loss are the real autoscaler
code paths, only the "cloud" is local processes.

Shape (mirrors helm/pairaug): a head with `num-cpus: 0` (runs no tasks), a `cpu` worker type
and a `gpu` worker type, both from 0 replicas, token authentication on, the dashboard and the
job API on 127.0.0.1. The `GPU` resource is logical: the node advertises it, torch sees no
CUDA device.

Isolation from other Ray instances of the test session (e.g. `ray_local` in conftest.py, or
another engineer's tests): the cluster gets its own `--temp-dir`, its own free ports, and the
auth settings are passed to its processes (and to CLI subprocesses) through their environment
only, never through this process's `os.environ`. Nothing here calls `ray stop` (which kills
every Ray process of the machine, as AutoscalingCluster does) or `ray.init`: the cluster is
started in its own process session and torn down by killing that process group, plus every
process whose command line names this cluster's temp dir or whose environment has its marker,
and their descendants.

Usage::

    with FakeAutoscalingCluster() as cluster:
        proc = cluster.submit_job(f"{sys.executable} -c '...'")
        wait_for(lambda: cluster.live_nodes("gpu"), timeout=60)
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

# The fake provider's fixed ids: the head is ...00000, workers count up from ...00001. Ray uses
# them as the node ids (RAY_OVERRIDE_NODE_ID_FOR_TESTING) and as cloud instance ids
# (RAY_CLOUD_INSTANCE_ID), which is how autoscaler v2 matches a Ray node to the instance it
# launched. Copied rather than imported so that importing this module does not import Ray.
FAKE_HEAD_NODE_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"
# The provider hard-codes the head's node type name.
HEAD_NODE_TYPE = "ray.head.default"
# Default Ray node label that carries the node type (RAY_NODE_TYPE_NAME), as on KubeRay where
# it is the worker group name.
NODE_GROUP_LABEL = "ray.io/node-group"
# The labels helm/pairaug gives its groups by whether their pods have GPUs (pairaug_ray/runtime.py).
CPU_KIND = {"pairaug.io/node-kind": "cpu"}
GPU_KIND = {"pairaug.io/node-kind": "gpu"}
# Environment variable set on the head and inherited by every process of the cluster that does
# not rename itself; one of the ways teardown finds them (see FakeAutoscalingCluster.processes).
MARKER_ENV = "PAIRAUG_FAKE_CLUSTER_ID"

MB = 1024 * 1024

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float,
    interval: float = 0.25,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll `predicate` until it returns something truthy and return that; TimeoutError if not.

    Exceptions raised by the predicate count as "not yet" (the dashboard is briefly unreachable
    while it starts, a process vanishes while it is inspected, ...); the last one is chained.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            result = predicate()
            if result:
                return result
        except Exception as e:
            last_exc = e
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(
                f"condition not met within {timeout:.0f}s: {text or predicate}"
                + (f" (last error: {last_exc!r})" if last_exc else "")
            ) from last_exc
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_executable() -> str:
    """The `ray` CLI of this interpreter's environment (the virtualenv), not whatever is on PATH."""
    path = Path(sys.executable).with_name("ray")
    if not path.exists():
        raise FileNotFoundError(f"no ray executable next to {sys.executable}")
    return str(path)


@dataclass(frozen=True)
class NodeInfo:
    node_id: str
    node_type: str
    state: str  # ALIVE or DEAD
    is_head: bool
    resources: dict[str, float] = field(default_factory=dict)
    start_time_ms: int = 0
    end_time_ms: int = 0


@dataclass
class WorkerType:
    """One autoscaler node type (a KubeRay worker group)."""

    resources: dict[str, float]
    max_workers: int = 2
    min_workers: int = 0
    # Ray node labels of the type, as a KubeRay group's `labels` (the chart sets pairaug.io/node-kind).
    labels: dict[str, str] = field(default_factory=dict)


class FakeAutoscalingCluster:
    """Start/stop a fake multi-node autoscaling cluster; see the module docstring.

    Attributes once started: `gcs_address` ("127.0.0.1:port"), `dashboard_url`
    ("http://127.0.0.1:port", also the job API), `auth_token` (None without token auth),
    `temp_dir` (Ray's --temp-dir; logs under temp_dir/session_latest/logs).
    """

    def __init__(
        self,
        worker_types: dict[str, WorkerType] | None = None,
        *,
        idle_timeout_s: float = 3.0,
        token_auth: bool = True,
        object_store_mb: int = 200,
        start_timeout_s: float = 90.0,
        env: dict[str, str] | None = None,
    ):
        if worker_types is None:
            worker_types = {
                # helm/pairaug cpuWorkers (groupName cpu) and gpuWorkers (groupName gpu), scaled down.
                "cpu": WorkerType({"CPU": 1}, max_workers=2, labels=CPU_KIND),
                "gpu": WorkerType({"CPU": 1, "GPU": 1}, max_workers=2, labels=GPU_KIND),
            }
        self.worker_types = worker_types
        self.idle_timeout_s = idle_timeout_s
        self.token_auth = token_auth
        self.object_store_bytes = object_store_mb * MB
        self.start_timeout_s = start_timeout_s
        # Extra environment for every process of the cluster (a pod's env: PATH, S3 settings).
        self.env = dict(env or {})

        self.cluster_id = uuid.uuid4().hex
        self.auth_token: str | None = secrets.token_hex(32) if token_auth else None
        self.gcs_address = ""
        self.dashboard_url = ""
        self.temp_dir = ""
        self._head: subprocess.Popen | None = None
        self._head_log = None

    # ------------------------------------------------------------------ configuration

    def autoscaling_config(self, gcs_port: int) -> dict[str, Any]:
        node_types: dict[str, Any] = {
            HEAD_NODE_TYPE: {
                # What the autoscaler assumes of the head; `ray start --num-cpus 0` below is what
                # the head really advertises (the chart's head runs `num-cpus: 0`).
                "resources": {"CPU": 0},
                "node_config": {},
                "max_workers": 0,
            }
        }
        for name, wt in self.worker_types.items():
            node_types[name] = {
                # The provider pops object_store_memory into the node's RayParams: keeps each
                # fake node's plasma store small instead of 30% of the machine's memory.
                "resources": {**wt.resources, "object_store_memory": self.object_store_bytes},
                # On KubeRay every pod carries ray.io/node-group=<groupName> (from the pod's
                # RAY_NODE_TYPE_NAME). The fake provider computes a node's labels in the monitor
                # process, whose environment lacks that variable, so it is declared here; the
                # autoscaler also uses these labels to satisfy tasks with a label_selector.
                "labels": {NODE_GROUP_LABEL: name, **wt.labels},
                "node_config": {},
                "min_workers": wt.min_workers,
                "max_workers": wt.max_workers,
            }
        return {
            "cluster_name": f"pairaug-fake-{self.cluster_id[:8]}",
            "max_workers": sum(wt.max_workers for wt in self.worker_types.values()),
            "provider": {
                # `type: fake_multinode` makes the autoscaler read its defaults from
                # fake_multi_node/example.yaml, which the Ray wheel does not ship; an `external`
                # provider with the class path needs no defaults file.
                "type": "external",
                "module": "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider",
                # Without it the provider points new nodes at <node ip>:6379; this cluster's GCS
                # runs on a free port so that it cannot collide with another Ray on the machine.
                "gcs_address": f"127.0.0.1:{gcs_port}",
                # Autoscaler v2 settings, as in AutoscalingCluster(autoscaler_v2=True): create
                # `count` nodes per launch request, and the id under which the head is known.
                "launch_multiple": True,
                "head_node_id": FAKE_HEAD_NODE_ID,
                # No SSH/setup commands to run on local processes, no launch-config hashing.
                "disable_node_updaters": True,
                "disable_launch_config_check": True,
            },
            "available_node_types": node_types,
            "head_node_type": HEAD_NODE_TYPE,
            "upscaling_speed": 1.0,
            # Autoscaler v2 reads this as minutes and accepts fractions (0.05 min = 3 s); the
            # chart's idleTimeoutSeconds is the KubeRay equivalent.
            "idle_timeout_minutes": self.idle_timeout_s / 60.0,
            "auth": {},
            "docker": {},
            "file_mounts": {},
            "cluster_synced_files": [],
            "file_mounts_sync_continuously": False,
            "rsync_exclude": [],
            "rsync_filter": [],
            "initialization_commands": [],
            "setup_commands": [],
            "head_setup_commands": [],
            "worker_setup_commands": [],
            "head_start_ray_commands": [],
            "worker_start_ray_commands": [],
        }

    def auth_env(self) -> dict[str, str]:
        """Auth variables for a client process: the token, or auth explicitly off (so that a
        ~/.ray/auth_token left by another local Ray does not switch token mode on)."""
        if not self.auth_token:
            return {"RAY_AUTH_MODE": "disabled"}
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.auth_token}

    def client_env(self) -> dict[str, str]:
        """os.environ for a client subprocess such as `ray job submit` / `ray job status`.

        RAY_ADDRESS is the dashboard URL, which the job CLI and JobSubmissionClient expect; give
        GCS clients (`ray status`, a driver's ray.init) `gcs_address` instead.
        """
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_")}
        env.pop("RAY_AUTH_TOKEN_PATH", None)
        env.update(self.auth_env())
        env["RAY_ADDRESS"] = self.dashboard_url
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # Otherwise the CLI "canonicalizes" 127.0.0.1 into the machine's outward IP, where the
        # cluster does not listen.
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
        return env

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeAutoscalingCluster:
        # Short path: Ray's unix sockets live under temp_dir/session_*/sockets (108-byte limit).
        self.temp_dir = tempfile.mkdtemp(prefix="rayfake-", dir="/tmp")
        gcs_port = _free_port()
        dashboard_port = _free_port()
        self.gcs_address = f"127.0.0.1:{gcs_port}"
        self.dashboard_url = f"http://127.0.0.1:{dashboard_port}"
        config_path = Path(self.temp_dir) / "autoscaling.json"
        config_path.write_text(json.dumps(self.autoscaling_config(gcs_port), indent=1))

        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
        env.update(self.env)
        env.update(self.auth_env())
        env.update(
            {
                MARKER_ENV: self.cluster_id,
                # The fake provider refuses to run without it.
                "RAY_FAKE_CLUSTER": "1",
                # Autoscaler v2 (the chart's autoscalerOptions.version: v2): the head starts
                # autoscaler/v2/monitor.py and the GCS runs the v2 autoscaler state service.
                "RAY_enable_autoscaler_v2": "1",
                # The head's node id and cloud instance id, so that v2 finds the head instance.
                "RAY_CLOUD_INSTANCE_ID": FAKE_HEAD_NODE_ID,
                "RAY_OVERRIDE_NODE_ID_FOR_TESTING": FAKE_HEAD_NODE_ID,
                # Reconcile every second instead of every 5 s: faster scale-up and -down.
                "AUTOSCALER_UPDATE_INTERVAL_S": "1",
                "RAY_USAGE_STATS_ENABLED": "0",
                # Makes get_node_ip_address() answer 127.0.0.1 (not the machine's outward IP) in
                # the monitor, so that the nodes the provider starts bind to loopback too.
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            }
        )
        # Notice a killed node in ~3 s instead of ~15 s (3 s period x 5 failures), so that the
        # autoscaler replaces it and its tasks are retried quickly. A killed raylet refuses the
        # connection at once, so the generous timeout costs nothing there; it keeps a raylet
        # that is merely slow on a loaded 2-core machine from being declared dead.
        system_config = {
            "health_check_initial_delay_ms": 1000,
            "health_check_period_ms": 1000,
            "health_check_timeout_ms": 5000,
            "health_check_failure_threshold": 3,
        }
        cmd = [
            ray_executable(),
            "start",
            "--head",
            "--block",
            "--node-ip-address=127.0.0.1",
            f"--port={gcs_port}",
            "--num-cpus=0",
            "--num-gpus=0",
            f"--object-store-memory={self.object_store_bytes}",
            f"--temp-dir={self.temp_dir}",
            f"--autoscaling-config={config_path}",
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            # Every port that has a fixed default gets a free one (10001, 52365, ...).
            f"--ray-client-server-port={_free_port()}",
            f"--dashboard-agent-listen-port={_free_port()}",
            f"--dashboard-agent-grpc-port={_free_port()}",
            f"--runtime-env-agent-port={_free_port()}",
            f"--metrics-export-port={_free_port()}",
            f"--system-config={json.dumps(system_config, separators=(',', ':'))}",
            "--disable-usage-stats",
        ]
        self._head_log = open(Path(self.temp_dir) / "ray-start.log", "wb")  # noqa: SIM115
        self._head = subprocess.Popen(
            cmd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._head_log,
            stderr=subprocess.STDOUT,
            # Own process session and group: teardown kills the group, which holds the head's
            # processes and the nodes the provider starts, and nothing else.
            start_new_session=True,
        )
        try:
            wait_for(
                self._head_ready,
                timeout=self.start_timeout_s,
                interval=0.5,
                message=lambda: f"head did not come up; ray start log:\n{self.head_log_tail()}",
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _head_ready(self) -> bool:
        if self._head is not None and self._head.poll() is not None:
            raise RuntimeError(f"ray start exited with {self._head.returncode}:\n{self.head_log_tail()}")
        return any(n.is_head and n.state == "ALIVE" for n in self.nodes())

    def head_log_tail(self, chars: int = 4000) -> str:
        path = Path(self.temp_dir) / "ray-start.log"
        try:
            return path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """Kill every process of the cluster and delete its temp dir; safe to call twice."""
        head, self._head = self._head, None
        # Snapshot first: once `ray start` is gone its children are re-parented and only the
        # temp-dir/marker scan still finds them. No graceful SIGTERM: `ray start --block` then
        # takes ~10 s to stop its processes, and nothing of this throwaway cluster needs saving.
        procs = self.processes()
        if head is not None:
            # The head's own process group (start_new_session) holds the head's processes and
            # the worker nodes the provider started. Ray workers and agents have groups of their
            # own; the snapshot and the rescans below get them.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(head.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                head.wait(timeout=5)
        _kill_all(procs)
        # Stragglers: a process started while the snapshot was taken (a worker, a node).
        for _ in range(5):
            procs = self.processes()
            if not procs:
                break
            _kill_all(procs)
        if self._head_log is not None:
            self._head_log.close()
            self._head_log = None
        if self.temp_dir:
            shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> FakeAutoscalingCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ inspection

    def api_get(self, path: str, timeout: float = 10.0) -> Any:
        """GET a dashboard endpoint (JSON), with the bearer token when token auth is on."""
        req = urllib.request.Request(self.dashboard_url + path)
        if self.auth_token:
            req.add_header("Authorization", f"Bearer {self.auth_token}")
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())

    def nodes(self) -> list[NodeInfo]:
        """All nodes the GCS knows of (ALIVE and DEAD), from the dashboard's state API."""
        body = self.api_get("/api/v0/nodes?limit=1000&detail=1")
        out = []
        for n in body["data"]["result"]["result"]:
            labels = n.get("labels") or {}
            is_head = bool(n.get("is_head_node"))
            out.append(
                NodeInfo(
                    node_id=n["node_id"],
                    node_type=HEAD_NODE_TYPE if is_head else labels.get(NODE_GROUP_LABEL, ""),
                    state=n["state"],
                    is_head=is_head,
                    resources=dict(n.get("resources_total") or {}),
                    start_time_ms=int(n.get("start_time_ms") or 0),
                    end_time_ms=int(n.get("end_time_ms") or 0),
                )
            )
        return out

    def live_nodes(self, node_type: str | None = None) -> list[NodeInfo]:
        """ALIVE nodes, optionally only those of one node type ("cpu", "gpu", HEAD_NODE_TYPE)."""
        return [
            n for n in self.nodes() if n.state == "ALIVE" and (node_type is None or n.node_type == node_type)
        ]

    def live_node_types(self) -> list[str]:
        return sorted(n.node_type for n in self.live_nodes())

    def processes(self) -> list[psutil.Process]:
        """Every live process of this cluster.

        Matched by this cluster's temp dir in the command line (GCS, raylets, monitor,
        dashboard, log monitors, ...) or its marker variable in the environment, plus all their
        descendants: Ray renames workers and agents (`ray::IDLE`, `ray::DashboardAgent`) with
        setproctitle, which overwrites both their command line and their /proc environ.
        """
        roots: dict[int, psutil.Process] = {}
        if self._head is not None:
            with contextlib.suppress(psutil.Error):
                roots[self._head.pid] = psutil.Process(self._head.pid)
        for p in psutil.process_iter():
            if p.pid in roots or p.pid == os.getpid():
                continue
            if self._is_ours(p):
                roots[p.pid] = p
        found = dict(roots)
        for p in roots.values():
            with contextlib.suppress(psutil.Error):
                for child in p.children(recursive=True):
                    found.setdefault(child.pid, child)
        return [p for p in found.values() if _alive(p)]

    def _is_ours(self, p: psutil.Process) -> bool:
        try:
            if self.temp_dir and any(self.temp_dir in arg for arg in p.cmdline()):
                return True
            return p.environ().get(MARKER_ENV) == self.cluster_id
        except (psutil.Error, OSError):
            return False

    def node_processes(self, node_id: str) -> list[psutil.Process]:
        """The processes of one node: its raylet and everything below it (agents, workers)."""
        for p in psutil.process_iter():
            try:
                cmdline = p.cmdline()
            except (psutil.Error, OSError):
                continue
            if (
                cmdline
                and os.path.basename(cmdline[0]) == "raylet"
                and f"--node_id={node_id}" in cmdline
                # Fake node ids repeat from one fake cluster to the next: match the temp dir too.
                and any(self.temp_dir in arg for arg in cmdline)
            ):
                with contextlib.suppress(psutil.Error):
                    return [p, *p.children(recursive=True)]
        return []

    def kill_node(self, node_type: str, node_id: str | None = None) -> str:
        """SIGKILL the processes of one live node of `node_type` at once, as a spot reclaim would.

        The fake provider starts a node's processes from the autoscaler's monitor process, in
        the head's process group, so a node has no process group of its own to kill: its raylet
        is found by node id and killed with everything below it (dashboard agent, runtime env
        agent, workers, each in a group of its own). The node's log monitor, a child of the
        monitor, stays until the autoscaler terminates the instance. Nothing tells the GCS or the
        autoscaler; they notice through the failing health checks. `node_id` picks one node
        of the type (default: the first). Returns the killed node's id.
        """
        candidates = [
            n
            for n in self.live_nodes(node_type)
            if not n.is_head and (node_id is None or n.node_id == node_id)
        ]
        if not candidates:
            raise LookupError(f"no live node of type {node_type!r}: {self.live_node_types()}")
        node = candidates[0]
        procs = self.node_processes(node.node_id)
        if not procs:
            raise LookupError(f"no raylet process found for node {node.node_id}")
        _kill_all(procs)
        return node.node_id

    # ------------------------------------------------------------------ clients

    def ray_cli(self, *args: str, timeout: float = 120.0, check: bool = True) -> subprocess.CompletedProcess:
        """Run the real `ray` CLI against this cluster (token passed through the environment)."""
        return subprocess.run(
            [ray_executable(), *args],
            env=self.client_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )

    def submit_job(self, entrypoint: Sequence[str], *extra: str, wait: bool = True) -> subprocess.Popen:
        """Start `ray job submit [--no-wait] <extra> -- <entrypoint...>` in the background.

        With wait=True the CLI follows the job's logs and exits 0 once the job SUCCEEDED.
        """
        cmd = [ray_executable(), "job", "submit", "--address", self.dashboard_url, *extra]
        if not wait:
            cmd.append("--no-wait")
        cmd += ["--", *entrypoint]
        return subprocess.Popen(
            cmd,
            env=self.client_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def autoscaler_status(self) -> str:
        """The output of `ray status` (autoscaler v2's view: active, idle and pending nodes)."""
        return self.ray_cli("status", "--address", self.gcs_address).stdout

    def autoscaler_is_v2(self) -> bool:
        """Whether the head runs the v2 monitor (autoscaler/v2/monitor.py)."""
        for p in self.processes():
            with contextlib.suppress(psutil.Error):
                if any(arg.endswith("autoscaler/v2/monitor.py") for arg in p.cmdline()):
                    return True
        return False

    def job_status(self, submission_id: str) -> str:
        """PENDING/RUNNING/SUCCEEDED/FAILED/STOPPED, from the job REST API."""
        return self.api_get(f"/api/jobs/{submission_id}")["status"]


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _kill_all(procs: list[psutil.Process], timeout: float = 5.0) -> None:
    """SIGKILL all, then wait until they are gone or zombies (a zombie whose parent is Ray's
    monitor is reaped only when the provider terminates the instance)."""
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.kill()
    deadline = time.monotonic() + timeout
    while any(_alive(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.05)
