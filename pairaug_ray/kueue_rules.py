"""What Kueue's admission webhooks refuse of a RayJob or RayCluster, checked before anything is applied.

A cluster that runs Kueue with its Ray integrations (ray.io/rayjob, ray.io/raycluster) validates
every RayJob and RayCluster it manages in a webhook; a refused object never reaches the KubeRay
operator. This module reimplements those rules, for the fields this project renders, as plain
functions over manifest dicts, beside pairaug_ray/kuberay_rules.py:

    violations(obj) -> list of messages, [] when Kueue would admit obj (or does not manage it)

An object is Kueue-managed when it carries the `kueue.x-k8s.io/queue-name` label (the chart's
`kueue.queueName`); the rules assume the manager runs without `manageJobsWithoutQueueName`.

Upstream read (kubernetes-sigs/kueue, Apache-2.0; reimplemented here, not copied), at the state of
the v0.19/v0.20 branch: pkg/controller/jobs/rayjob/rayjob_webhook.go (RayJobWebhook.validateCreate),
pkg/controller/jobs/raycluster/raycluster_webhook.go (RayClusterWebhook.validateCreate),
pkg/controller/jobs/raycluster/common.go (ValidateCreate, shared by both),
pkg/controller/jobframework/validation.go (ValidateJobOnCreate: queue name, max-exec-time,
elastic-job annotation), pkg/controller/jobframework/constants.go (MaxPodSets),
pkg/workloadslicing/workloadslicing.go (Enabled), pkg/features/kube_features.go.

What the rules mean for a user:
- autoscaling (`enableInTreeAutoscaling: true`) is admitted only for an elastic job: the object
  carries the annotation `kueue.x-k8s.io/elastic-job: "true"` and Kueue runs with the
  ElasticJobsViaWorkloadSlices gate, beta and on by default from Kueue v0.18 (so Kueue < 0.18 refuses
  an autoscaling Ray object under a queue whatever it carries);
- a RayJob under a queue brings its own cluster and deletes it when it finishes
  (`shutdownAfterJobFinishes: true`); one that selects an existing cluster (`clusterSelector`) is not
  managed by Kueue at all (its cluster holds the quota), and must not carry `rayClusterSpec` too;
- at most MAX_POD_SETS pod sets (the head and every worker group), no worker group named "head".
"""

from __future__ import annotations

import re

UPSTREAM = "Kueue v0.19"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
ELASTIC_ANNOTATION = "kueue.x-k8s.io/elastic-job"
MAX_EXEC_LABEL = "kueue.x-k8s.io/max-exec-time-seconds"
ELASTIC_MIN_VERSION = "v0.18"  # ElasticJobsViaWorkloadSlices: beta, on by default
MAX_POD_SETS = 18  # constants.go MaxPodSets since v0.19 (8 up to v0.17, 10 in v0.18)
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

RAYJOB_WEBHOOK = "pkg/controller/jobs/rayjob/rayjob_webhook.go"
RAYCLUSTER_WEBHOOK = "pkg/controller/jobs/raycluster/raycluster_webhook.go"
RAY_COMMON = "pkg/controller/jobs/raycluster/common.go"
JOBFRAMEWORK = "pkg/controller/jobframework/validation.go"


def _msg(path: str, rule: str, function: str, source: str) -> str:
    return f"{path}: {rule} ({UPSTREAM} {source}, {function})"


def _meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def managed(obj: dict) -> bool:
    """Whether Kueue manages the object: it names a queue."""
    return bool((_meta(obj).get("labels") or {}).get(QUEUE_LABEL))


def elastic(obj: dict) -> bool:
    """workloadslicing.Enabled: the elastic-job annotation is "true" (the gate is assumed on)."""
    return (_meta(obj).get("annotations") or {}).get(ELASTIC_ANNOTATION) == "true"


def job_framework_rules(obj: dict) -> list[str]:
    """ValidateJobOnCreate: what every job kind's labels and annotations must be."""
    out = []
    labels = _meta(obj).get("labels") or {}
    queue = labels.get(QUEUE_LABEL)
    if queue is not None and not DNS1123_SUBDOMAIN.match(str(queue)):
        out.append(
            _msg(
                f"metadata.labels[{QUEUE_LABEL}]",
                f"{queue!r} is not a DNS-1123 subdomain",
                "ValidateQueueName",
                JOBFRAMEWORK,
            )
        )
    if MAX_EXEC_LABEL in labels:
        value = str(labels[MAX_EXEC_LABEL])
        if not re.fullmatch(r"[+-]?\d+", value) or int(value) <= 0:
            out.append(
                _msg(
                    f"metadata.labels[{MAX_EXEC_LABEL}]",
                    "must be a whole number greater than 0",
                    "ValidateJobOnCreate",
                    JOBFRAMEWORK,
                )
            )
    return out


def cluster_spec_rules(spec: dict, at: str) -> list[str]:
    """raycluster.ValidateCreate (common.go): the cluster spec of a managed RayCluster or RayJob."""
    out = []
    groups = spec.get("workerGroupSpecs") or []
    if len(groups) + 1 > MAX_POD_SETS:
        out.append(
            _msg(
                f"{at}.workerGroupSpecs",
                f"{len(groups)} worker groups and the head make {len(groups) + 1} pod sets; at most {MAX_POD_SETS}",
                "ValidateCreate",
                RAY_COMMON,
            )
        )
    for i, g in enumerate(groups):
        if (g or {}).get("groupName") == "head":
            out.append(
                _msg(
                    f"{at}.workerGroupSpecs[{i}].groupName",
                    '"head" is reserved for the head group',
                    "ValidateCreate",
                    RAY_COMMON,
                )
            )
    return out


def autoscaling_rule(obj: dict, spec: dict, at: str, function: str, source: str) -> list[str]:
    if spec.get("enableInTreeAutoscaling") and not elastic(obj):
        return [
            _msg(
                f"{at}.enableInTreeAutoscaling",
                f"a Kueue-managed Ray object may autoscale only as an elastic job: annotate it "
                f'{ELASTIC_ANNOTATION}: "true" (and run Kueue >= {ELASTIC_MIN_VERSION}, whose '
                "ElasticJobsViaWorkloadSlices gate is on by default), or turn autoscaling off",
                function,
                source,
            )
        ]
    return []


def rayjob_violations(obj: dict) -> list[str]:
    """RayJobWebhook.validateCreate and the jobframework rules."""
    if not managed(obj):
        return job_framework_rules(obj)
    spec = obj.get("spec") or {}
    has_selector = bool(spec.get("clusterSelector"))
    if has_selector and spec.get("rayClusterSpec"):
        return [
            _msg(
                "spec.clusterSelector",
                "a Kueue-managed job should not use an existing cluster",
                "validateCreate",
                RAYJOB_WEBHOOK,
            )
        ]
    if has_selector:
        return []  # admitted, then left alone: Kueue does not manage a job on an existing cluster
    if not spec.get("rayClusterSpec"):
        return [
            _msg(
                "spec.rayClusterSpec",
                "required for Kueue-managed jobs that do not use clusterSelector",
                "validateCreate",
                RAYJOB_WEBHOOK,
            )
        ]
    out = job_framework_rules(obj)
    if not spec.get("shutdownAfterJobFinishes"):
        out.append(
            _msg(
                "spec.shutdownAfterJobFinishes",
                "a Kueue-managed job should delete the cluster after finishing",
                "validateCreate",
                RAYJOB_WEBHOOK,
            )
        )
    cluster = spec["rayClusterSpec"]
    out += autoscaling_rule(obj, cluster, "spec.rayClusterSpec", "ValidateCreate", RAY_COMMON)
    out += cluster_spec_rules(cluster, "spec.rayClusterSpec")
    return out


def raycluster_violations(obj: dict) -> list[str]:
    """RayClusterWebhook.validateCreate and the jobframework rules."""
    out = job_framework_rules(obj)
    if not managed(obj):
        return out
    spec = obj.get("spec") or {}
    out += autoscaling_rule(obj, spec, "spec", "validateCreate", RAYCLUSTER_WEBHOOK)
    out += cluster_spec_rules(spec, "spec")
    return out


def violations(obj: dict) -> list[str]:
    """Every Kueue admission rule `obj` breaks ([] for kinds Kueue's Ray webhooks do not check)."""
    kind = obj.get("kind")
    if kind == "RayJob":
        return rayjob_violations(obj)
    if kind == "RayCluster":
        return raycluster_violations(obj)
    return []
