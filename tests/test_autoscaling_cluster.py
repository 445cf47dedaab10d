"""A real autoscaling Ray cluster on this machine (autoscaler v2, fake multi-node provider).

Proves tests/autoscaling_cluster.py: jobs submitted with the real `ray job submit` CLI make the
autoscaler start a `gpu` and a `cpu` node from zero, the idle timeout removes them again, and a
GPU node killed abruptly (a spot reclaim) is replaced while its task is retried. The measured
times are printed (run with -s).
"""

from __future__ import annotations

import json
import sys
import textwrap
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from autoscaling_cluster import HEAD_NODE_TYPE, FakeAutoscalingCluster, NodeInfo, wait_for

pytestmark = pytest.mark.slow

IDLE_TIMEOUT_S = 3.0

# One GPU task and one CPU task. The CPU task selects the cpu group by its node label (as a
# pipeline stage would on KubeRay): without it Ray may run it on the gpu node's CPU and the cpu
# node type would not be needed.
SCALE_JOB = textwrap.dedent(
    """
    import json, time
    import ray

    ray.init()

    @ray.remote(num_gpus=1)
    def on_gpu():
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "gpu_ids": ray.get_gpu_ids(), "end": time.time()}

    @ray.remote(num_cpus=1, label_selector={"ray.io/node-group": "cpu"})
    def on_cpu():
        return {"node_id": ray.get_runtime_context().get_node_id(), "end": time.time()}

    submitted = time.time()
    gpu, cpu = ray.get([on_gpu.remote(), on_cpu.remote()])
    print("RESULT " + json.dumps({"submitted": submitted, "gpu": gpu, "cpu": cpu}))
    """
)

# A GPU task that records each attempt (node id) in a directory and then waits until the test
# releases it; its first attempt is killed with its node, the retry runs on the replacement.
PREEMPT_JOB = textwrap.dedent(
    """
    import json, os, sys, time
    import ray

    marker_dir = sys.argv[1]
    ray.init()

    @ray.remote(num_gpus=1, max_retries=3)
    def long_gpu_task():
        node = ray.get_runtime_context().get_node_id()
        with open(os.path.join(marker_dir, f"attempt-{time.time():.3f}-{node}"), "w"):
            pass
        deadline = time.time() + 300
        while not os.path.exists(os.path.join(marker_dir, "release")):
            if time.time() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.1)
        return node

    print("RESULT " + json.dumps({"node_id": ray.get(long_gpu_task.remote())}))
    """
)


@pytest.fixture(scope="module")
def cluster():
    c = FakeAutoscalingCluster(idle_timeout_s=IDLE_TIMEOUT_S, token_auth=True)
    t0 = time.monotonic()
    c.start()
    print(f"\n[fake cluster] head up in {time.monotonic() - t0:.1f}s: {c.dashboard_url}")
    try:
        yield c
    finally:
        c.stop()
        leftovers = c.processes()
        assert not leftovers, f"processes left after stop: {leftovers}"
        assert not Path(c.temp_dir).exists()


def _result(output: str) -> dict:
    for line in output.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    raise AssertionError(f"no RESULT line in the job output:\n{output[-3000:]}")


def _run_job(cluster: FakeAutoscalingCluster, argv: list[str], timeout: float = 180) -> tuple[str, str]:
    """`ray job submit` (following the logs) to completion; returns (submission id, output)."""
    sid = f"test-{uuid.uuid4().hex[:8]}"
    proc = cluster.submit_job(argv, "--submission-id", sid)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"ray job submit exited {proc.returncode}:\n{out[-3000:]}"
    return sid, out


def _wait_only_head(cluster: FakeAutoscalingCluster, timeout: float = 60) -> None:
    wait_for(
        lambda: cluster.live_node_types() == [HEAD_NODE_TYPE],
        timeout=timeout,
        message=lambda: f"live nodes: {cluster.live_node_types()}",
    )


def test_scale_up_on_demand_and_down_when_idle(cluster, tmp_path):
    # The chart's shape: only a head, which advertises no CPU; the dashboard wants the token.
    nodes = cluster.live_nodes()
    assert [n.node_type for n in nodes] == [HEAD_NODE_TYPE]
    assert nodes[0].resources.get("CPU", 0) == 0
    assert cluster.autoscaler_is_v2()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(cluster.dashboard_url + "/api/v0/nodes", timeout=10)
    assert err.value.code == 401

    script = tmp_path / "scale_job.py"
    script.write_text(SCALE_JOB)
    before = {n.node_id for n in cluster.nodes()}
    sid, out = _run_job(cluster, [sys.executable, str(script)])
    assert cluster.job_status(sid) == "SUCCEEDED"
    result = _result(out)

    started = {n.node_id: n for n in cluster.nodes() if n.node_id not in before}
    assert sorted({n.node_type for n in started.values()}) == ["cpu", "gpu"], started
    gpu, cpu = started[result["gpu"]["node_id"]], started[result["cpu"]["node_id"]]
    assert gpu.node_type == "gpu" and cpu.node_type == "cpu"
    assert gpu.resources.get("GPU") == 1 and gpu.resources.get("CPU") == 1
    assert cpu.resources.get("CPU") == 1 and "GPU" not in cpu.resources
    # A logical GPU: Ray assigns GPU 0 (CUDA_VISIBLE_DEVICES=0), torch would see no device.
    assert result["gpu"]["gpu_ids"] == [0]

    _wait_only_head(cluster)
    ended = {n.node_id: n for n in cluster.nodes()}
    assert all(ended[i].state == "DEAD" for i in started)
    gpu_end, cpu_end = ended[gpu.node_id], ended[cpu.node_id]

    up_gpu = gpu.start_time_ms / 1000 - result["submitted"]
    up_cpu = cpu.start_time_ms / 1000 - result["submitted"]
    down_gpu = gpu_end.end_time_ms / 1000 - result["gpu"]["end"]
    down_cpu = cpu_end.end_time_ms / 1000 - result["cpu"]["end"]
    print(
        f"\n[fake cluster] nodes started: {sorted(n.node_type for n in started.values())}"
        f"\n[fake cluster] scale-up (task submitted -> node registered): "
        f"gpu {up_gpu:.1f}s, cpu {up_cpu:.1f}s"
        f"\n[fake cluster] scale-down (task finished -> node removed, idle timeout "
        f"{IDLE_TIMEOUT_S:.0f}s): gpu {down_gpu:.1f}s, cpu {down_cpu:.1f}s"
    )
    assert 0 < up_gpu < 120 and 0 < up_cpu < 120
    # Not removed before the idle timeout.
    assert down_gpu >= IDLE_TIMEOUT_S - 0.5 and down_cpu >= IDLE_TIMEOUT_S - 0.5


def test_killed_gpu_node_is_replaced(cluster, tmp_path):
    _wait_only_head(cluster)
    markers = tmp_path / "attempts"
    markers.mkdir()
    script = tmp_path / "preempt_job.py"
    script.write_text(PREEMPT_JOB)

    def attempts() -> list[str]:
        return sorted(p.name.rsplit("-", 1)[1] for p in markers.glob("attempt-*"))

    sid = f"test-{uuid.uuid4().hex[:8]}"
    proc = cluster.submit_job([sys.executable, str(script), str(markers)], "--submission-id", sid)
    try:
        first = wait_for(attempts, timeout=120, message="the GPU task never started")
        assert first[0] in [n.node_id for n in cluster.live_nodes("gpu")]

        killed_at = time.time()
        killed = cluster.kill_node("gpu", first[0])
        assert not cluster.node_processes(killed)

        def state(node_id: str) -> NodeInfo | None:
            return next((n for n in cluster.nodes() if n.node_id == node_id), None)

        wait_for(lambda: state(killed).state == "DEAD", timeout=60, message="node not DEAD")
        dead_s = time.time() - killed_at
        replacement = wait_for(
            lambda: [n for n in cluster.live_nodes("gpu") if n.node_id != killed],
            timeout=120,
            message=lambda: f"no replacement gpu node; live: {cluster.live_node_types()}",
        )[0]
        replaced_s = replacement.start_time_ms / 1000 - killed_at
        wait_for(lambda: replacement.node_id in attempts(), timeout=120, message="no retry")
        retried_s = time.time() - killed_at
        (markers / "release").touch()
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out[-3000:]
    assert cluster.job_status(sid) == "SUCCEEDED"
    assert _result(out)["node_id"] == replacement.node_id
    assert sorted(attempts()) == sorted([killed, replacement.node_id])
    print(
        f"\n[fake cluster] gpu node SIGKILLed: marked DEAD after {dead_s:.1f}s, replacement "
        f"registered after {replaced_s:.1f}s, task retried on it after {retried_s:.1f}s"
    )
