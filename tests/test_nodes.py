"""The node timeline (pairaug_ray/nodes.py) and the placement rule that keeps CPU work off GPU nodes.

The cluster test (tests/test_quickstart_cluster.py) shows both on Ray's autoscaler; these check the
parts one by one: what a cluster status becomes, what `pairaug status` prints, the selectors each
kind of work gets, and that a real local Ray (whose node has no kind label) takes any work.
"""

from __future__ import annotations

import json

from ray.autoscaler.v2.schema import (
    ClusterStatus,
    LaunchRequest,
    NodeInfo,
    NodeUsage,
    RayTaskActorDemand,
    ResourceDemandSummary,
    ResourceRequestByCount,
    ResourceUsage,
)

from pairaug_ray import nodes, progress
from pairaug_ray.runtime import CPU_WORK, GPU_WORK, NODE_KIND_LABEL, work_selector


def _node(node_id: str, group: str, kind: str | None, gpus: float = 0) -> NodeInfo:
    labels = {"ray.io/node-group": group, **({NODE_KIND_LABEL: kind} if kind else {})}
    usage = NodeUsage(usage=[ResourceUsage("CPU", 1.0), ResourceUsage("GPU", gpus)], idle_time_ms=0)
    return NodeInfo(
        instance_type_name=group,
        ray_node_type_name=group,
        instance_id=node_id,
        ip_address="127.0.0.1",
        node_id=node_id,
        labels=labels,
        resource_usage=usage,
    )


def _status(*live: NodeInfo, cpu_tasks: int = 0, starting: str | None = None) -> ClusterStatus:
    demand = [RayTaskActorDemand(bundles_by_count=[ResourceRequestByCount({"CPU": 1.0}, cpu_tasks)])]
    return ClusterStatus(
        active_nodes=list(live),
        pending_launches=[LaunchRequest(starting, starting, 1, "REQUESTED", 0)] if starting else [],
        resource_demands=ResourceDemandSummary(ray_task_actor_demand=demand if cpu_tasks else []),
    )


def test_the_timeline_records_each_node_with_its_group_kind_and_stage(monkeypatch):
    watch = nodes.NodeWatch(autoscaling=True)
    head = _node("h", "headgroup", None)
    cpu1, gpu1, gpu2 = _node("c1", "cpu", "cpu"), _node("g1", "gpu", "gpu", 8), _node("g2", "gpu", "gpu", 8)

    monkeypatch.setattr(progress, "_stage", "validate")
    watch.observe(_status(head, cpu1, cpu_tasks=12, starting="cpu"))
    assert watch.now() == {
        "groups": {"cpu": 1, "headgroup": 1},
        "waiting": {"cpu_tasks": 12, "starting": {"cpu": 1}},
    }
    assert nodes.waiting_text(watch.now()["waiting"]) == "12 CPU tasks wait for nodes (1 cpu starting)"

    monkeypatch.setattr(progress, "_stage", "generate")
    watch.observe(_status(head, cpu1, gpu1, gpu2))
    monkeypatch.setattr(progress, "_stage", "score")
    watch.observe(_status(head, cpu1, gpu2))  # g1 went away while scoring

    doc = watch.timeline()
    ups = [
        (e["node_id"], e["group"], e["kind"], e["gpus"], e["stage"])
        for e in doc["events"]
        if e["event"] == "up"
    ]
    assert ups == [
        ("h", "headgroup", "cpu", 0, "validate"),
        ("c1", "cpu", "cpu", 0, "validate"),
        ("g1", "gpu", "gpu", 8, "generate"),
        ("g2", "gpu", "gpu", 8, "generate"),
    ]
    downs = [(e["node_id"], e["stage"]) for e in doc["events"] if e["event"] == "down"]
    assert downs == [("g1", "score")]
    assert doc["groups"] == {
        "cpu": {"kind": "cpu", "peak": 1},
        "gpu": {"kind": "gpu", "peak": 2},
        "headgroup": {"kind": "cpu", "peak": 1},
    }
    assert doc["peak_by_stage"]["generate"]["gpu"] == 2 and "gpu" not in doc["peak_by_stage"]["validate"]
    assert json.loads(json.dumps(doc)) == doc  # what nodes.json holds


def test_a_head_without_a_group_label_is_the_head_group():
    """A head started by hand (the fake autoscaler's, `ray start --head`) has no ray.io/node-group;
    the head resource names it, instead of its generated type name node_<id>."""
    head = _node("h", "", None)
    head.labels, head.ray_node_type_name = {}, "node_ffff"
    head.resource_usage.usage.append(ResourceUsage(nodes.HEAD_RESOURCE, 1.0))
    watch = nodes.NodeWatch(autoscaling=True)
    watch.observe(_status(head))
    assert watch.now()["groups"] == {"head": 1}


def test_a_fixed_local_ray_never_says_work_waits_for_nodes():
    watch = nodes.NodeWatch(autoscaling=False)
    watch.observe(_status(_node("n", "", None), cpu_tasks=5))
    assert watch.now()["waiting"] == {}


def test_status_prints_the_nodes_per_group_and_what_waits():
    doc = {
        "run": "demo",
        "command": "augment",
        "state": "running",
        "stage": {"name": "validate", "started_at": "2026-12-05T12:00:00+00:00"},
        "updated_at": "2026-12-05T12:00:10+00:00",
        "finished_stages": [],
        "nodes": {"groups": {"cpu": 2, "headgroup": 1}, "waiting": {"cpu_tasks": 7}},
    }
    from datetime import UTC, datetime

    text = progress.format_progress(doc, now=datetime(2026, 12, 5, 12, 0, 20, tzinfo=UTC))
    assert "  nodes: cpu 2, headgroup 1; 7 CPU tasks wait for nodes" in text.splitlines()


def test_cpu_work_avoids_gpu_labelled_nodes_and_gpu_work_avoids_cpu_labelled_ones():
    assert work_selector(0) == CPU_WORK == {NODE_KIND_LABEL: "!gpu"}
    assert work_selector(1) == work_selector(0.5) == GPU_WORK == {NODE_KIND_LABEL: "!cpu"}


def test_stage_plans_carry_the_selector_and_the_job_context_carries_the_cpu_default(ray_local):
    """The label selectors reach Ray: the job's DataContext (every read, repartition and write) and
    each stage's operator; on a local Ray, whose node has no kind label, both kinds of work run."""
    import pyarrow as pa
    import ray

    from pairaug_ray.stages.base import Resources, StagePlan

    assert ray.data.DataContext.get_current().execution_options.label_selector == CPU_WORK
    ds = ray.data.from_arrow(pa.table({"x": list(range(8))}))

    def double(batch):
        return batch.set_column(0, "x", pa.compute.multiply(batch["x"], 2))

    for gpus in (0, 1):
        plan = StagePlan(
            "double", double, batch_size=4, actors=None, resources=Resources(cpus=0.5, gpus=gpus)
        )
        out = plan.apply(ds)
        # The operator's own remote args (Ray merges the context's default under them, key for key).
        assert out._logical_plan.dag.ray_remote_args["label_selector"] == work_selector(gpus)
        assert sorted(r["x"] for r in out.take_all()) == [2 * i for i in range(8)]

    watch = nodes.NodeWatch(autoscaling=False)
    watch.poll()
    assert watch.error is None and sum(watch.now()["groups"].values()) == 1


def test_submit_labels_a_templates_groups_by_their_gpus():
    from pairaug_ray.submit import build_rayjob, label_node_kinds

    cpu_group = {"groupName": "cpu", "maxReplicas": 4, "resources": {"GPU": "0"}}
    gpu_group = {
        "groupName": "gpu",
        "maxReplicas": 2,
        "template": {"spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "8"}}}]}},
    }
    spec = {"rayClusterSpec": {"workerGroupSpecs": [dict(cpu_group), dict(gpu_group)]}}
    job = build_rayjob(["pairaug", "augment"], "augment-1", template={"spec": spec})
    labels = [g.get("labels") for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    assert labels == [{NODE_KIND_LABEL: "cpu"}, {NODE_KIND_LABEL: "gpu"}]

    # Only GPU groups: CPU stages must use their CPUs, so nothing is labelled gpu.
    only_gpu = {"workerGroupSpecs": [dict(gpu_group)]}
    label_node_kinds(only_gpu)
    assert "labels" not in only_gpu["workerGroupSpecs"][0]
    # A template's own label is kept.
    own = {"workerGroupSpecs": [dict(cpu_group), {**gpu_group, "labels": {NODE_KIND_LABEL: "cpu"}}]}
    label_node_kinds(own)
    assert own["workerGroupSpecs"][1]["labels"] == {NODE_KIND_LABEL: "cpu"}
