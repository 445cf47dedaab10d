"""pairaug_ray/kueue_rules.py: Kueue's admission webhooks for Ray objects, reimplemented.

Each rule: a minimal valid object passes, a variant broken in one place fails with the expected
message. The chart's renderings are checked against these rules beside KubeRay's in
tests/test_chart_matrix.py.
"""

from __future__ import annotations

import copy

from test_kuberay_rules import cluster_spec, raycluster

from pairaug_ray import kueue_rules
from pairaug_ray.kueue_rules import ELASTIC_ANNOTATION, QUEUE_LABEL, violations


def queued(obj: dict, elastic: bool = True) -> dict:
    obj = copy.deepcopy(obj)
    meta = obj.setdefault("metadata", {})
    meta.setdefault("labels", {})[QUEUE_LABEL] = "team-a"
    if elastic:
        meta.setdefault("annotations", {})[ELASTIC_ANNOTATION] = "true"
    return obj


def rayjob(**spec) -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "pairaug-augment"},
        "spec": {
            "entrypoint": "pairaug augment",
            "shutdownAfterJobFinishes": True,
            "rayClusterSpec": cluster_spec(),
            **spec,
        },
    }


def one(messages: list[str], *needles: str) -> str:
    assert len(messages) == 1, messages
    assert all(n in messages[0] for n in needles), messages
    return messages[0]


def test_minimal_objects_pass_and_unmanaged_ones_are_left_alone():
    assert violations(queued(raycluster())) == []
    assert violations(queued(rayjob())) == []
    # Without a queue Kueue does not manage them: autoscaling without the annotation is fine.
    assert violations(raycluster()) == [] and violations(rayjob()) == []


def test_autoscaling_needs_the_elastic_job_annotation():
    msg = one(
        violations(queued(raycluster(), elastic=False)), "spec.enableInTreeAutoscaling", ELASTIC_ANNOTATION
    )
    assert "Kueue >= v0.18" in msg and "raycluster_webhook.go" in msg
    one(
        violations(queued(rayjob(), elastic=False)),
        "spec.rayClusterSpec.enableInTreeAutoscaling",
        "common.go",
    )
    fixed = queued(raycluster(), elastic=False)
    fixed["spec"]["enableInTreeAutoscaling"] = False
    assert violations(fixed) == []


def test_a_queued_job_deletes_its_cluster_and_never_selects_one():
    one(
        violations(queued(rayjob(shutdownAfterJobFinishes=False))),
        "spec.shutdownAfterJobFinishes",
        "delete the cluster",
    )
    both = queued(rayjob(clusterSelector={"ray.io/cluster": "pairaug"}))
    one(violations(both), "spec.clusterSelector", "should not use an existing cluster")
    selector_only = queued(rayjob(clusterSelector={"ray.io/cluster": "pairaug"}))
    del selector_only["spec"]["rayClusterSpec"]
    selector_only["spec"]["shutdownAfterJobFinishes"] = False
    assert violations(selector_only) == []  # admitted and not managed: its cluster holds the quota
    bare = queued(rayjob())
    del bare["spec"]["rayClusterSpec"]
    one(violations(bare), "spec.rayClusterSpec", "required")


def test_pod_sets_group_names_and_labels():
    many = queued(raycluster())
    group = many["spec"]["workerGroupSpecs"][0]
    many["spec"]["workerGroupSpecs"] = [
        dict(group, groupName=f"g{i}") for i in range(kueue_rules.MAX_POD_SETS)
    ]
    one(violations(many), "spec.workerGroupSpecs", f"at most {kueue_rules.MAX_POD_SETS}")
    head = queued(rayjob())
    head["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["groupName"] = "head"
    one(violations(head), "workerGroupSpecs[0].groupName", "reserved for the head group")
    bad_queue = queued(raycluster())
    bad_queue["metadata"]["labels"][QUEUE_LABEL] = "Team_A"
    one(violations(bad_queue), QUEUE_LABEL, "DNS-1123")
    bad_time = queued(raycluster())
    bad_time["metadata"]["labels"][kueue_rules.MAX_EXEC_LABEL] = "0"
    one(violations(bad_time), kueue_rules.MAX_EXEC_LABEL, "greater than 0")
