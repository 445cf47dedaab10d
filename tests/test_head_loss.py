"""The head can be lost: with GCS fault tolerance on a real Redis, every process of the head node is
killed while a job's driver runs on a worker; a new head comes up, and the job finishes with its
rows written once.

This is what a KubeRay cluster with `gcsFaultTolerance` and drivers on workers
(`jobs.defaults.entrypointNumCpus`, `driverWorkers`) goes through when its head pod is lost: the
GCS, the dashboard and job manager, the autoscaler's monitor, the head's raylet and everything under
it die at once, and KubeRay starts a new head pod with the same service address and the same Redis
namespace. Here the nodes are real `ray start --block` processes on 127.0.0.1 (the head with no
CPUs, as the chart's; a worker with 4), the job is submitted through the job API with
`entrypoint_num_cpus=1` so that its supervisor and driver run on the worker, and the head's whole
process tree is SIGKILLed mid-job, then started again with the same ports and Redis namespace.

tests/test_gcs_fault_tolerance.py covers the GCS process alone (and the control without Redis).
Waits are on events (the job's status, the rows written, the head's readiness) with generous limits;
a timeout prints the scenario's events, so that a slow machine and a broken recovery can be told apart.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from test_gcs_fault_tolerance import REDIS_PASSWORD, _free_port, redis_server  # noqa: F401 (a fixture)

pytestmark = pytest.mark.slow

# The job's driver: a Ray Data pipeline of the kind every stage runs (a map over small batches,
# written as it goes), slow enough that the head is lost in the middle of it.
DRIVER = textwrap.dedent(
    """
    import sys, time
    import ray

    out, node_temp_dir = sys.argv[1], sys.argv[2]
    # Both nodes have the address 127.0.0.1 here, and a driver joins the raylet of its own address,
    # the head's when there are several: naming the worker node's temp dir picks the node it runs
    # on, as a pod's own IP does on Kubernetes.
    ray.init(_temp_dir=node_temp_dir)

    def slow_rows(batch):
        time.sleep(1.5)  # a stage's per-batch work
        return batch

    ds = ray.data.range(40, override_num_blocks=40).map_batches(slow_rows, batch_size=1, num_cpus=1)
    ds.write_parquet(out)
    print("driver done", flush=True)
    """
)


class Events:
    """What the scenario saw, with times, for the failure message."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.lines: list[str] = []

    def __call__(self, what: str) -> None:
        self.lines.append(f"{time.monotonic() - self.t0:7.1f} s  {what}")

    def __str__(self) -> str:
        return "\n".join(self.lines[-40:])


def wait(events: Events, predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # not yet (a server starting, a file being written)
            last = e
        time.sleep(0.5)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {what} (last error: {last!r}); events:\n{events}"
    )


# A worker node on 127.0.0.1, started as `ray start --address ... --block` starts one, without the
# CLI's address canonicalisation (which turns 127.0.0.1 into the machine's outward address, or refuses
# a second node on one machine): Ray's own Node, the way ray.cluster_utils adds nodes.
WORKER_NODE = textwrap.dedent(
    """
    import json, sys, time
    import ray._private.node
    from ray._private.parameter import RayParams

    ports = json.loads(sys.argv[2])
    params = RayParams(
        node_ip_address="127.0.0.1", gcs_address=sys.argv[1], num_cpus=4, temp_dir=sys.argv[3],
        object_store_memory=150 * 1024**2, min_worker_port=23000, max_worker_port=23999, **ports,
    )
    ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True, connect_only=False)
    print("worker node up", flush=True)
    while True:
        time.sleep(3600)
    """
)


class Node:
    """One Ray node (`ray start --block`, or the worker launcher) in a process session of its own;
    killed with its whole process tree."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, command: list[str] | None = None):
        self.log = open(log, "ab")  # noqa: SIM115 (closed in kill)
        ray = str(Path(sys.executable).with_name("ray"))
        self.proc = subprocess.Popen(
            command or [ray, "start", "--block", *args],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def tree(self) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        return []

    def kill(self) -> int:
        """SIGKILL every process of the node at once (its raylet's workers and agents included)."""
        procs = self.tree()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=10)
        self.proc.wait(timeout=10)
        self.log.close()
        return len(procs)


# `long` (make test-all): two clusters in turn (about 50 s); tests/test_gcs_fault_tolerance.py shows a
# job surviving its GCS in CI.
@pytest.mark.long
def test_a_job_survives_the_loss_of_every_head_process(redis_server, tmp_path):  # noqa: F811
    from ray.job_submission import JobStatus, JobSubmissionClient

    events = Events()
    temp = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")  # short: Ray's socket paths are limited
    temps = [temp]
    gcs, dashboard = _free_port(), _free_port()
    head_ports = {
        "--port": gcs,
        "--dashboard-port": dashboard,
        "--ray-client-server-port": _free_port(),
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
    }
    # The nodes' environment is named here, not inherited: variables an earlier test left in this
    # process, or a ~/.ray/auth_token a local Ray wrote into the home directory, must not switch the
    # cluster's settings (token authentication, say) in a way the driver does not share.
    home = tmp_path / "home"
    home.mkdir()
    base_env = {k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ", "PYTHONPATH") if k in os.environ}
    base_env.update(
        {
            "HOME": str(home),
            "TMPDIR": "/tmp",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "disabled",
            # What KubeRay sets for gcsFaultToleranceOptions: on the head the Redis and the cluster's
            # namespace in it; on the workers a reconnect timeout long enough for a new head pod.
            "RAY_REDIS_ADDRESS": redis_server,
            "RAY_external_storage_namespace": "pairaug-head-loss",
            "RAY_gcs_rpc_server_reconnect_timeout_s": "300",
        }
    )
    head_args = [
        "--head",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=0",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--redis-password={REDIS_PASSWORD}",
        f"--temp-dir={temp}",
        f"--object-store-memory={100 * 1024**2}",
        "--disable-usage-stats",
        *(f"{k}={v}" for k, v in head_ports.items()),
    ]
    worker_ports = {
        name: _free_port()
        for name in (
            "node_manager_port",
            "object_manager_port",
            "dashboard_agent_listen_port",
            "metrics_agent_port",
            "runtime_env_agent_port",
            "metrics_export_port",
        )
    }
    worker_temp = tempfile.mkdtemp(prefix="rayworker-", dir="/tmp")
    temps.append(worker_temp)
    worker_command = [
        sys.executable,
        "-c",
        WORKER_NODE,
        f"127.0.0.1:{gcs}",
        json.dumps(worker_ports),
        worker_temp,
    ]
    url = f"http://127.0.0.1:{dashboard}"

    def dashboard_up() -> bool:
        with urllib.request.urlopen(f"{url}/api/version", timeout=5) as r:
            return r.status == 200

    def alive_nodes() -> list[dict]:
        with urllib.request.urlopen(f"{url}/api/v0/nodes?limit=100", timeout=5) as r:
            return [n for n in json.loads(r.read())["data"]["result"]["result"] if n["state"] == "ALIVE"]

    head = Node(head_args, base_env, tmp_path / "head.log")
    worker = None
    succeeded = False
    try:
        wait(events, dashboard_up, 120, "the head's dashboard")
        events("head up")
        worker = Node([], base_env, tmp_path / "worker.log", command=worker_command)
        wait(events, lambda: len(alive_nodes()) == 2, 120, "the worker node")
        events("worker up")

        out = tmp_path / "rows"
        script = tmp_path / "driver.py"
        script.write_text(DRIVER)
        client = JobSubmissionClient(url)
        # The job API takes jobs once a node's agent has registered ("no available agent" until then).
        job = wait(
            events,
            lambda: client.submit_job(
                entrypoint=f"{sys.executable} {script} {out} {worker_temp}", entrypoint_num_cpus=1
            ),
            120,
            "the job API to take the job",
        )
        events(f"job {job} submitted")

        def rows_written() -> int:
            return len(list(out.glob("*.parquet"))) if out.is_dir() else 0

        try:
            wait(events, lambda: rows_written() >= 5, 300, "the job's first rows")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{_driver_log(worker_temp, temp)}") from None
        events(f"{rows_written()} row files written: the head is lost")
        killed = head.kill()
        events(f"head killed: {killed} processes")
        # Every process of the head is gone: nothing answers on the GCS's or the dashboard's port.
        for port in (gcs, dashboard):
            with socket.socket() as probe:
                assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
        time.sleep(3)  # the pod is gone for a while before KubeRay's new one starts
        # A new head pod starts with an empty /tmp/ray: a fresh temp dir, the same ports and Redis.
        new_temp = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")
        head_args = [a if not a.startswith("--temp-dir=") else f"--temp-dir={new_temp}" for a in head_args]
        temps.append(new_temp)
        head = Node(head_args, base_env, tmp_path / "head.log")
        wait(events, dashboard_up, 180, "the new head's dashboard")
        at_new_head = rows_written()
        events(f"new head up; {at_new_head} row files written")

        seen: list[JobStatus] = []

        def status() -> JobStatus | None:
            s = JobSubmissionClient(url).get_job_status(job)
            if not seen or seen[-1] != s:
                seen.append(s)
                events(f"job status {s}")
            return s if s in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED) else None

        try:
            final = wait(
                events, status, float(os.environ.get("HEAD_LOSS_JOB_TIMEOUT_S", 420)), "the job to end"
            )
        except AssertionError as e:
            raise AssertionError(f"{e}\n{_driver_log(worker_temp)}") from None
        # The driver's log lives on its node (the worker's), where the new head's job API does not
        # look for a job it took over: read it there.
        driver_log = sorted(Path(worker_temp).glob(f"session_*/logs/job-driver-{job}.log"))[-1]
        logs = driver_log.read_text()
        assert final == JobStatus.SUCCEEDED, f"{final}; events:\n{events}\njob logs:\n{logs[-3000:]}"
        assert "driver done" in logs
        import pyarrow.parquet as pq

        ids = sorted(i for f in out.glob("*.parquet") for i in pq.read_table(f).column("id").to_pylist())
        assert ids == list(range(40)), f"rows lost or doubled: {ids}; events:\n{events}"
        assert at_new_head < 40, f"the job ended before the new head came up; events:\n{events}"
        events("every row once")
        print(f"\n[head loss]\n{events}")
        succeeded = True
    finally:
        for node in (head, worker):
            if node is not None and node.proc.poll() is None:
                node.kill()
        for p in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if any(t in " ".join(p.cmdline()) for t in temps):
                    p.kill()
        for t in temps if succeeded else []:  # a failed run keeps the nodes' logs
            shutil.rmtree(t, ignore_errors=True)


def _driver_log(*temp_dirs: str) -> str:
    """The tail of the job driver's log on each node, for a failure message: where the job was."""
    parts = []
    for temp_dir in temp_dirs:
        logs = sorted(Path(temp_dir).glob("session_*/logs/job-driver-*.log"))
        tail = logs[-1].read_text(errors="replace")[-3000:] if logs else "(no driver log)"
        parts.append(f"driver log under {temp_dir}:\n{tail}")
    return "\n".join(parts)


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
