"""GCS fault tolerance, as the chart's `gcsFaultTolerance` turns it on: the head's GCS keeps its state
in an external Redis, so when the GCS dies mid-job and comes back, the job goes on.

Real parts: Debian's redis-server on 127.0.0.1 (with a password, as the chart passes one by
Secret), and Ray's own multi-node test cluster (`ray.cluster_utils.Cluster`: a head and a worker
node as separate raylets) with the GCS killed and restarted the way a crashed head process is.
The job is a Ray Data pipeline of the kind every stage runs (a map over row batches, written as it
goes), plus a named actor whose state must outlive the GCS.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time

import pytest

REDIS_PASSWORD = "pairaug-test-only"  # a throwaway server on 127.0.0.1, stopped by the test


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server(tmp_path):
    exe = shutil.which("redis-server")
    if not exe:
        pytest.fail("redis-server is not installed: `make test` installs Debian's redis-server package")
    port = _free_port()
    proc = subprocess.Popen(
        [
            exe,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--requirepass",
            REDIS_PASSWORD,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


SCENARIO_TIMEOUT_S = 700  # minutes more than it takes on an idle 2-core machine (about 25 s)

# The scenario runs in its own process: the test session already has a local Ray of its own.
SCENARIO = textwrap.dedent(
    """
    import json, sys, threading, time
    import ray
    from ray.cluster_utils import Cluster

    password, out = sys.argv[1], sys.argv[2]
    t0 = time.time()

    def event(what):  # where the scenario is, for a failure message if it never ends
        print(f"EVENT {time.time() - t0:6.1f} s  {what}", flush=True)

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "num_cpus": 0,  # as the chart's head: no tasks
            "redis_password": password,
            "object_store_memory": 100 * 1024**2,
            "include_dashboard": False,
        },
    )
    try:
        event("head up")
        cluster.add_node(num_cpus=2, object_store_memory=150 * 1024**2)
        ray.init(address=cluster.address, log_to_driver=False)
        event("worker up, driver connected")

        @ray.remote(num_cpus=0.5)
        class Tally:
            def __init__(self):
                self.n = 0

            def add(self, k):
                self.n += k
                return self.n

        tally = Tally.options(name="tally", lifetime="detached").remote()
        first = ray.get(tally.add.remote(1))

        def slow_rows(batch):
            time.sleep(0.3)  # a stage's per-batch work
            return batch

        errors = []

        def job():
            try:
                ds = ray.data.range(40, override_num_blocks=20).map_batches(slow_rows, batch_size=2, num_cpus=0.5)
                ds.write_parquet(out)
            except BaseException as e:
                errors.append(repr(e))

        runner = threading.Thread(target=job)
        runner.start()
        time.sleep(2)  # mid-job
        started = time.time()
        cluster.head_node.kill_gcs_server()
        event("GCS killed")
        time.sleep(2)
        cluster.head_node.start_gcs_server()  # a restarted head: its state comes back from Redis
        event("GCS restarted")
        runner.join(timeout=600)  # generous: a loaded machine is slow, not broken
        event(f"job thread {'still running' if runner.is_alive() else 'ended'}")
        rows = sorted(r["id"] for r in ray.data.read_parquet(out).take_all()) if not errors else []
        after = ray.get(ray.get_actor("tally").add.remote(1))
        print("RESULT " + json.dumps({
            "finished": not runner.is_alive(), "errors": errors, "rows": rows, "first": first,
            "after": after, "outage_s": round(time.time() - started, 1),
        }), flush=True)
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def _scenario(tmp_path, redis_address: str | None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RAY_gcs_rpc_server_reconnect_timeout_s": "60",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    env.pop("RAY_ADDRESS", None)
    if redis_address:
        # What KubeRay sets on the head for gcsFaultToleranceOptions (redisAddress, the namespace).
        env.update(RAY_REDIS_ADDRESS=redis_address, RAY_external_storage_namespace="pairaug-test")
    try:
        return subprocess.run(
            [sys.executable, "-c", SCENARIO, REDIS_PASSWORD if redis_address else "", str(tmp_path / "rows")],
            capture_output=True,
            text=True,
            env=env,
            timeout=SCENARIO_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as e:
        # Slow or stuck: the scenario's last events say which, and where.
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else e.stdout or ""
        events = "\n".join(line for line in out.splitlines() if line.startswith("EVENT "))
        raise AssertionError(
            f"the scenario did not end in {SCENARIO_TIMEOUT_S} s; its events:\n{events}"
        ) from None


# `long` (make test-all): two scenarios on a real Redis (about 50 s, minutes on a loaded machine); CI
# checks the rendering of the GCS fault-tolerance settings (tests/test_helm.py, tests/test_kuberay_rules.py).
@pytest.mark.long
@pytest.mark.slow
@pytest.mark.timeout(2 * SCENARIO_TIMEOUT_S + 60)  # two scenarios, each with its own generous limit
def test_a_job_survives_its_gcs_dying_and_coming_back(redis_server, tmp_path):
    # Without fault tolerance the same outage ends the job: the restarted GCS is a new cluster.
    control = _scenario(tmp_path / "control", None)
    assert control.returncode != 0 and "RESULT " not in control.stdout
    assert "WrongClusterID" in control.stderr or "GCS" in control.stderr, control.stderr[-2000:]

    proc = _scenario(tmp_path, redis_server)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert lines, f"no result (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    result = json.loads(lines[-1][len("RESULT ") :])
    assert result["finished"] and not result["errors"], result
    assert result["rows"] == list(range(40))  # every row written once
    # State the GCS keeps survived it: the named actor is found and still counts.
    assert (result["first"], result["after"]) == (1, 2)
    print(f"GCS outage and recovery took {result['outage_s']} s")
