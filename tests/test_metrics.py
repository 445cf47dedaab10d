"""The pipeline's own metrics reach Prometheus: a stage run on a Ray with its metrics agent on
127.0.0.1, then its metrics endpoint scraped the way the chart's PodMonitor scrapes a pod."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent(
    """
    import socket, sys, time, urllib.request
    import pyarrow as pa
    import ray
    from pairaug_ray import metrics, schema
    from pairaug_ray.stages.base import Resources, StagePlan

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=2, include_dashboard=False, _metrics_export_port=port,
             object_store_memory=100 * 1024**2, log_to_driver=False)

    def stage(batch):  # the last row of every batch of 5 fails, as a stage records a bad row
        n = batch.num_rows
        return pa.table({"id": batch["id"], schema.STATUS: pa.array(["ok"] * (n - 1) + ["error"])})

    plan = StagePlan("probe", stage, batch_size=5, actors=None, resources=Resources(cpus=0.5))
    assert plan.apply(ray.data.range(20).map_batches(lambda t: t, batch_format="pyarrow")).count() == 20
    metrics.set_gauge(metrics.PRUNED_PAIRS, 7, {"origin": "inter", "decision": "kept"})
    text, deadline = "", time.time() + 180  # generous: a loaded machine is slow, not broken
    while time.time() < deadline:  # Ray's agents report every few seconds
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            text = ""
        begun = sum(  # one series per worker process: summed, as a dashboard's sum by (stage) does
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("ray_pairaug_stage_rows_total{") and 'status="begun"' in line
        )
        if begun == 20 and "ray_pairaug_pruned_pairs" in text:
            break
        time.sleep(1)
    print(text)
    ray.shutdown()
    """
)


def _value(text: str, metric: str, **tags: str) -> float:
    """The sum over the series (one per worker process) with these tags."""
    found = [
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(metric + "{") and all(f'{k}="{v}"' in line for k, v in tags.items())
    ]
    if found:
        return sum(found)
    raise AssertionError(
        f"{metric} {tags} not scraped:\n" + "\n".join(x for x in text.splitlines() if "pairaug" in x)
    )


@pytest.mark.slow
def test_stage_metrics_are_scraped_from_the_metrics_agent():
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_metrics_report_interval_ms": "1000",  # the agents report every second instead of every ten
    }
    env.pop("RAY_ADDRESS", None)
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=400)
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert _value(text, "ray_pairaug_stage_rows_total", stage="probe", status="begun") == 20
    assert _value(text, "ray_pairaug_stage_rows_total", stage="probe", status="ok") == 16
    assert _value(text, "ray_pairaug_stage_rows_total", stage="probe", status="error") == 4
    assert _value(text, "ray_pairaug_stage_seconds_total", stage="probe") > 0
    assert _value(text, "ray_pairaug_pruned_pairs", origin="inter", decision="kept") == 7
    # Every series carries its Ray session: the shipped dashboard's session variable selects on it.
    assert all("SessionName=" in line for line in text.splitlines() if line.startswith("ray_pairaug_")), [
        line for line in text.splitlines() if line.startswith("ray_pairaug_")
    ][:3]
    assert not re.search(r"ray_pairaug_stage_gpu_seconds_total\{[^}]*stage=\"probe\"", text)  # a CPU stage
