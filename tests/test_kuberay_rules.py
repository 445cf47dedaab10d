"""pairaug_ray/kuberay_rules.py: the KubeRay v1.7 operator's Go-side validation, reimplemented.

Each rule: a minimal valid object passes, a variant broken in one place fails with the expected
message. Then what this repository produces: every object the chart renders with each value set,
every manifest in k8s/, and every RayJob body `pairaug submit --rayjob` builds from k8s/rayjob-*.yaml
(with and without --cluster) has no violations; the chart names the operator's token Secret as the
operator does; and `pairaug submit --rayjob` refuses a violating body before it talks to Kubernetes.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml
from test_helm import CHART, K8S, VALUE_SETS, helm, render, values_args

from pairaug_ray import kuberay_rules, submit
from pairaug_ray.kuberay_rules import token_secret_name, violations

SOURCE = "KubeRay v1.7 ray-operator/controllers/ray/utils/validation.go"


# --- minimal valid objects ---------------------------------------------------------------------------


def cluster_spec() -> dict:
    return {
        "rayVersion": "2.60.0",
        "authOptions": {"mode": "token"},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"version": "v2", "idleTimeoutSeconds": 600},
        "headGroupSpec": {
            "rayStartParams": {"num-cpus": "0"},
            "template": {"spec": {"containers": [{"name": "ray-head", "image": "i:1"}]}},
        },
        "workerGroupSpecs": [
            {
                "groupName": "cpu",
                "replicas": 1,
                "minReplicas": 0,
                "maxReplicas": 2,
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "i:1"}]}},
            }
        ],
    }


def raycluster() -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "pairaug"},
        "spec": cluster_spec(),
    }


def rayjob() -> dict:
    """A RayJob on a cluster of its own."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "pairaug-augment"},
        "spec": {
            "entrypoint": "pairaug augment --config s3://b/a.yaml",
            "submissionMode": "K8sJobMode",
            "activeDeadlineSeconds": 3600,
            "backoffLimit": 1,
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": 600,
            "runtimeEnvYAML": "env_vars:\n  A: '1'\n",
            "rayClusterSpec": cluster_spec(),
        },
    }


def selector_job() -> dict:
    """A RayJob on an existing RayCluster."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": "pairaug-augment"},
        "spec": {"entrypoint": "pairaug augment", "clusterSelector": {"ray.io/cluster": "pairaug"}},
    }


def rules_job(*rules: dict) -> dict:
    """An own-cluster RayJob whose cluster is deleted by deletionRules (not shutdownAfterJobFinishes)."""
    job = rayjob()
    job["spec"].update(shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0)
    job["spec"]["deletionStrategy"] = {"deletionRules": list(rules)}
    return job


def rayservice() -> dict:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": {"name": "pairaug-vllm"},
        "spec": {"serveConfigV2": "applications: []\n", "rayClusterConfig": cluster_spec()},
    }


def incremental(**options) -> dict:
    svc = rayservice()
    base = {"maxSurgePercent": 50, "stepSizePercent": 10, "intervalSeconds": 30, "gatewayClassName": "istio"}
    svc["spec"]["upgradeStrategy"] = {
        "type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {k: v for k, v in {**base, **options}.items() if v is not None},
    }
    return svc


def rule(policy: str, ttl: int = 0, **condition) -> dict:
    return {"policy": policy, "condition": {"ttlSeconds": ttl, **(condition or {"jobStatus": "SUCCEEDED"})}}


# --- helpers to break one thing ----------------------------------------------------------------------


def cs(obj: dict) -> dict:
    """The cluster spec of any of the three kinds."""
    spec = obj["spec"]
    return spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or spec


def head(obj: dict) -> dict:
    return cs(obj)["headGroupSpec"]


def worker(obj: dict) -> dict:
    return cs(obj)["workerGroupSpecs"][0]


def head_env(obj: dict, **env: str) -> None:
    head(obj)["template"]["spec"]["containers"][0]["env"] = [{"name": k, "value": v} for k, v in env.items()]


def annotate(obj: dict, key: str, value: str) -> None:
    obj["metadata"]["annotations"] = {key: value}


def edit(make, *changes):
    """A fresh object from `make` with every change (a function of the object) applied."""

    def build() -> dict:
        obj = make()
        for change in changes:
            change(obj)
        return obj

    return build


def put(where, **values):
    """A change that updates the dict `where(obj)` with values."""
    return lambda obj: where(obj).update(values)


def drop(where, key):
    return lambda obj: where(obj).pop(key)


SPEC = lambda o: o["spec"]  # noqa: E731
AUTOSCALER = lambda o: cs(o)["autoscalerOptions"]  # noqa: E731
AUTH = lambda o: cs(o)["authOptions"]  # noqa: E731
GROUP_PATH = "spec.workerGroupSpecs[0]"

# (id, object, path, fragment of the rule, upstream function)
CASES = [
    # names
    ("raycluster-name-long", edit(raycluster, put(lambda o: o["metadata"], name="a" * 54)), "metadata.name", "longer than 53", "ValidateRayClusterMetadata"),
    ("raycluster-name-dns1035", edit(raycluster, put(lambda o: o["metadata"], name="1pairaug")), "metadata.name", "not a DNS-1035 label", "ValidateRayClusterMetadata"),
    ("rayjob-name-long", edit(rayjob, put(lambda o: o["metadata"], name="a" * 48)), "metadata.name", "longer than 47", "ValidateRayJobMetadata"),
    ("rayservice-name-long", edit(rayservice, put(lambda o: o["metadata"], name="a" * 48)), "metadata.name", "longer than 47", "ValidateRayServiceMetadata"),
    # cluster spec
    ("head-no-container", edit(raycluster, lambda o: head(o)["template"]["spec"].update(containers=[])), "spec.headGroupSpec.template.spec.containers", "at least one container", "ValidateRayClusterSpec"),
    ("worker-no-container", edit(raycluster, lambda o: worker(o)["template"]["spec"].update(containers=[])), f"{GROUP_PATH}.template.spec.containers", "at least one container", "ValidateRayClusterSpec"),
    ("resources-twice", edit(raycluster, put(head, resources={"CPU": "1"})), "spec.headGroupSpec.resources", "not with num-cpus", "validateRayGroupResources"),
    ("labels-in-ray-start-params", edit(raycluster, lambda o: worker(o)["rayStartParams"].update(labels="a=b")), f"{GROUP_PATH}.rayStartParams.labels", "use the group's labels field", "validateRayGroupLabels"),
    ("group-label-key", edit(raycluster, put(worker, labels={"-bad": "x"})), f"{GROUP_PATH}.labels", "'-bad' is not a valid label key", "validateRayGroupLabels"),
    ("group-label-value", edit(raycluster, put(worker, labels={"zone": "a b"})), f"{GROUP_PATH}.labels.zone", "not a valid label value", "validateRayGroupLabels"),
    ("bounds-without-autoscaler", edit(raycluster, put(cs, enableInTreeAutoscaling=False), drop(worker, "minReplicas")), GROUP_PATH, "set both minReplicas and maxReplicas", "ValidateRayClusterSpec"),
    ("negative-min", edit(raycluster, put(worker, minReplicas=-1)), f"{GROUP_PATH}.minReplicas", "must not be negative", "ValidateRayClusterSpec"),
    ("min-above-max", edit(raycluster, put(worker, minReplicas=3)), f"{GROUP_PATH}.minReplicas", "3 is greater than maxReplicas 2", "ValidateRayClusterSpec"),
    ("worker-idle-negative", edit(raycluster, put(worker, idleTimeoutSeconds=-1)), f"{GROUP_PATH}.idleTimeoutSeconds", "must not be negative", "validateWorkerGroupIdleTimeout"),
    ("worker-idle-needs-v2", edit(raycluster, put(worker, idleTimeoutSeconds=60), put(AUTOSCALER, version="v1")), f"{GROUP_PATH}.idleTimeoutSeconds", "needs autoscaler v2", "validateWorkerGroupIdleTimeout"),
    ("priority-old-ray", edit(raycluster, put(worker, priority=1), put(cs, rayVersion="2.55.0")), f"{GROUP_PATH}.priority", "needs rayVersion 2.56.0 or later", "validateWorkerGroupPriority"),
    ("priority-needs-v2", edit(raycluster, put(worker, priority=1), put(AUTOSCALER, version="v1")), f"{GROUP_PATH}.priority", "needs autoscaler v2", "validateWorkerGroupPriority"),
    ("ft-annotation-and-options", edit(raycluster, lambda o: annotate(o, "ray.io/ft-enabled", "true"), put(cs, gcsFaultToleranceOptions={"redisAddress": "redis:6379"})), "spec.gcsFaultToleranceOptions", "not with the ray.io/ft-enabled annotation", "ValidateRayClusterSpec"),
    ("redis-address-without-ft", edit(raycluster, lambda o: head_env(o, RAY_REDIS_ADDRESS="redis:6379")), "spec.headGroupSpec.template.spec.containers[0].env", "RAY_REDIS_ADDRESS implies GCS fault tolerance", "ValidateRayClusterSpec"),
    ("ft-redis-password-param", edit(raycluster, put(cs, gcsFaultToleranceOptions={}), lambda o: head(o)["rayStartParams"].update({"redis-password": "x"})), "spec.headGroupSpec.rayStartParams.redis-password", "use gcsFaultToleranceOptions.redisPassword", "ValidateRayClusterSpec"),
    ("ft-redis-password-env", edit(raycluster, put(cs, gcsFaultToleranceOptions={}), lambda o: head_env(o, REDIS_PASSWORD="x")), "spec.headGroupSpec.template.spec.containers[0].env", "REDIS_PASSWORD: use gcsFaultToleranceOptions.redisPassword", "ValidateRayClusterSpec"),
    ("ft-storage-namespace-annotation", edit(raycluster, put(cs, gcsFaultToleranceOptions={}), lambda o: annotate(o, "ray.io/external-storage-namespace", "ns")), "metadata.annotations.ray.io/external-storage-namespace", "use gcsFaultToleranceOptions.externalStorageNamespace", "ValidateRayClusterSpec"),
    ("ft-rocksdb-gate", edit(raycluster, put(cs, gcsFaultToleranceOptions={"backend": "rocksdb"})), "spec.gcsFaultToleranceOptions.backend", "GCSFaultToleranceEmbeddedStorage feature gate", "validateGcsFaultToleranceBackend"),
    ("ft-redis-storage", edit(raycluster, put(cs, gcsFaultToleranceOptions={"redisAddress": "r:6379", "storage": {"size": "1Gi"}})), "spec.gcsFaultToleranceOptions.storage", "only for backend rocksdb", "validateGcsFaultToleranceBackend"),
    ("redis-username", edit(raycluster, lambda o: head(o)["rayStartParams"].update({"redis-username": "u"})), "spec.headGroupSpec", "use gcsFaultToleranceOptions.redisUsername", "ValidateRayClusterSpec"),
    ("suspend-with-autoscaler", edit(raycluster, put(worker, suspend=True)), f"{GROUP_PATH}.suspend", "not with enableInTreeAutoscaling", "ValidateRayClusterSpec"),
    ("v2-env-without-autoscaler", edit(raycluster, put(cs, enableInTreeAutoscaling=False), lambda o: head_env(o, RAY_enable_autoscaler_v2="1")), "spec.headGroupSpec.template.spec.containers[0].env", "enableInTreeAutoscaling is not", "ValidateRayClusterSpec"),
    ("v2-env-and-version", edit(raycluster, lambda o: head_env(o, RAY_enable_autoscaler_v2="true")), "spec.headGroupSpec.template.spec.containers[0].env", "not with autoscalerOptions.version", "ValidateRayClusterSpec"),
    ("restart-policy-v2", edit(raycluster, lambda o: head(o)["template"]["spec"].update(restartPolicy="Always")), "spec.headGroupSpec.template.spec.restartPolicy", "Never or unset with autoscaler v2", "ValidateRayClusterSpec"),
    ("autoscaler-idle-negative", edit(raycluster, put(AUTOSCALER, idleTimeoutSeconds=-1)), "spec.autoscalerOptions.idleTimeoutSeconds", "must not be negative", "ValidateRayClusterSpec"),
    ("autoscaler-start-cmd-env", edit(raycluster, put(AUTOSCALER, env=[{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "x"}])), "spec.autoscalerOptions.env", "KUBERAY_GEN_AUTOSCALER_START_CMD", "ValidateRayClusterSpec"),
    ("network-policy-gate", edit(raycluster, put(cs, networkPolicy={})), "spec.networkPolicy", "RayClusterNetworkPolicy feature gate", "ValidateRayClusterSpec"),
    ("tls-gate", edit(raycluster, put(cs, tlsOptions={})), "spec.tlsOptions", "RayClusterMTLS feature gate", "ValidateRayClusterSpec"),
    ("history-server-gate", edit(raycluster, put(cs, historyServerOptions={})), "spec.historyServerOptions", "RayClusterHistoryServer feature gate", "ValidateRayClusterSpec"),
    ("token-auth-no-version", edit(raycluster, drop(cs, "rayVersion")), "spec.rayVersion", "required with authOptions.mode token", "ValidateRayClusterSpec"),
    ("token-auth-bad-version", edit(raycluster, put(cs, rayVersion="latest")), "spec.rayVersion", "'latest' is not a version", "ValidateRayClusterSpec"),
    ("token-auth-old-ray", edit(raycluster, put(cs, rayVersion="2.51.1")), "spec.rayVersion", "needs 2.52.0 or later", "ValidateRayClusterSpec"),
    ("k8s-auth-needs-token", edit(raycluster, put(AUTH, mode="disabled", enableK8sTokenAuth=True)), "spec.authOptions.enableK8sTokenAuth", "needs authOptions.mode token", "ValidateRayClusterSpec"),
    ("k8s-auth-old-ray", edit(raycluster, put(AUTH, enableK8sTokenAuth=True), put(cs, rayVersion="2.54.0")), "spec.authOptions.enableK8sTokenAuth", "needs rayVersion 2.55.0", "ValidateRayClusterSpec"),
    ("k8s-auth-secret-name", edit(raycluster, put(AUTH, enableK8sTokenAuth=True, secretName="s")), "spec.authOptions.enableK8sTokenAuth", "not with authOptions.secretName", "ValidateRayClusterSpec"),
    ("raycluster-upgrade-type", edit(raycluster, put(cs, upgradeStrategy={"type": "Rolling"})), "spec.upgradeStrategy.type", "not Recreate or None", "ValidateRayClusterUpgradeOptions"),
    ("rayjob-cluster-upgrade", edit(rayjob, put(cs, upgradeStrategy={"type": "Recreate"})), "spec.rayClusterSpec.upgradeStrategy", "not on a RayCluster made by a RayJob", "ValidateRayClusterUpgradeOptions"),
    # RayJob
    ("suspend-needs-shutdown", edit(rayjob, put(SPEC, suspend=True, shutdownAfterJobFinishes=False, ttlSecondsAfterFinished=0)), "spec.suspend", "needs shutdownAfterJobFinishes: true", "ValidateRayJobSpec"),
    ("ttl-negative", edit(rayjob, put(SPEC, ttlSecondsAfterFinished=-1)), "spec.ttlSecondsAfterFinished", "must not be negative", "ValidateRayJobSpec"),
    ("ttl-needs-shutdown", edit(selector_job, put(SPEC, ttlSecondsAfterFinished=60)), "spec.ttlSecondsAfterFinished", "needs shutdownAfterJobFinishes: true", "validateDeletionConfiguration"),
    ("deletion-rules-and-shutdown", edit(rayjob, put(SPEC, ttlSecondsAfterFinished=0, deletionStrategy={"deletionRules": [rule("DeleteSelf")]})), "spec.deletionStrategy.deletionRules", "not with shutdownAfterJobFinishes: true", "validateDeletionConfiguration"),
    ("deletion-legacy-and-rules", edit(rules_job, lambda o: o["spec"]["deletionStrategy"].update(deletionRules=[rule("DeleteSelf")], onSuccess={"policy": "DeleteSelf"})), "spec.deletionStrategy", "onSuccess/onFailure not with deletionRules", "validateDeletionConfiguration"),
    ("deletion-empty", edit(rayjob, put(SPEC, deletionStrategy={})), "spec.deletionStrategy", "needs both onSuccess and onFailure, or deletionRules", "validateDeletionConfiguration"),
    ("legacy-half", edit(rayjob, put(SPEC, deletionStrategy={"onSuccess": {"policy": "DeleteCluster"}})), "spec.deletionStrategy", "set both onSuccess and onFailure", "validateLegacyDeletionPolicies"),
    ("legacy-selector-delete-cluster", edit(selector_job, put(SPEC, deletionStrategy={"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteSelf"}})), "spec.deletionStrategy.onSuccess.policy", "DeleteCluster not with clusterSelector", "validateLegacyDeletionPolicies"),
    ("legacy-delete-workers-autoscaler", edit(rayjob, put(SPEC, shutdownAfterJobFinishes=True, deletionStrategy={"onSuccess": {"policy": "DeleteWorkers"}, "onFailure": {"policy": "DeleteCluster"}})), "spec.deletionStrategy", "DeleteWorkers not with enableInTreeAutoscaling", "validateLegacyDeletionPolicies"),
    ("legacy-delete-none-shutdown", edit(rayjob, put(SPEC, deletionStrategy={"onSuccess": {"policy": "DeleteNone"}, "onFailure": {"policy": "DeleteCluster"}})), "spec.deletionStrategy", "DeleteNone not with shutdownAfterJobFinishes", "validateLegacyDeletionPolicies"),
    ("rule-two-conditions", edit(lambda: rules_job(rule("DeleteSelf", jobStatus="FAILED", jobDeploymentStatus="Failed"))), "spec.deletionStrategy.deletionRules[0].condition", "exactly one of jobStatus and jobDeploymentStatus", "validateDeletionRules"),
    ("rule-negative-ttl", edit(lambda: rules_job(rule("DeleteSelf", -5))), "spec.deletionStrategy.deletionRules[0].condition.ttlSeconds", "must not be negative", "validateDeletionRules"),
    ("rule-selector-delete-cluster", edit(selector_job, put(SPEC, deletionStrategy={"deletionRules": [rule("DeleteCluster")]})), "spec.deletionStrategy.deletionRules[0].policy", "DeleteCluster not with clusterSelector", "validateDeletionRules"),
    ("rule-delete-workers-autoscaler", edit(lambda: rules_job(rule("DeleteWorkers"))), "spec.deletionStrategy.deletionRules[0].policy", "DeleteWorkers not with enableInTreeAutoscaling", "validateDeletionRules"),
    ("rule-duplicate", edit(lambda: rules_job(rule("DeleteSelf", 10), rule("DeleteSelf", 20))), "spec.deletionStrategy.deletionRules[1]", "duplicate rule for DeleteSelf", "validateDeletionRules"),
    ("rule-ttl-order", edit(lambda: rules_job(rule("DeleteCluster", 60), rule("DeleteSelf", 30))), "spec.deletionStrategy.deletionRules", "DeleteSelf TTL (30) must be >= DeleteCluster TTL (60)", "validateDeletionRules"),
    ("selector-suspend", edit(selector_job, put(SPEC, suspend=True, shutdownAfterJobFinishes=True)), "spec.suspend", "not with spec.clusterSelector", "ValidateRayJobSpec"),
    ("no-cluster", edit(selector_job, drop(SPEC, "clusterSelector")), "spec", "set rayClusterSpec or clusterSelector", "ValidateRayJobSpec"),
    ("selector-empty-name", edit(selector_job, put(SPEC, clusterSelector={"ray.io/cluster": ""})), "spec.clusterSelector", "non-empty ray.io/cluster", "ValidateRayJobSpec"),
    ("selector-sidecar", edit(selector_job, put(SPEC, submissionMode="SidecarMode")), "spec.submissionMode", "SidecarMode not with spec.clusterSelector", "ValidateRayJobSpec"),
    ("selector-backoff", edit(selector_job, put(SPEC, backoffLimit=1)), "spec.backoffLimit", "must be 0 with spec.clusterSelector", "ValidateRayJobSpec"),
    ("interactive-backoff", edit(rayjob, put(SPEC, submissionMode="InteractiveMode")), "spec.backoffLimit", "must be 0 in InteractiveMode", "ValidateRayJobSpec"),
    ("sidecar-submitter-template", edit(rayjob, put(SPEC, submissionMode="SidecarMode", submitterPodTemplate={"spec": {}})), "spec.submitterPodTemplate", "not in SidecarMode", "ValidateRayJobSpec"),
    ("sidecar-head-restart", edit(rayjob, put(SPEC, submissionMode="SidecarMode"), put(cs, enableInTreeAutoscaling=False), lambda o: head(o)["template"]["spec"].update(restartPolicy="OnFailure")), "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy", "Never or unset in SidecarMode", "ValidateRayJobSpec"),
    ("rayjob-k8s-auth", edit(rayjob, put(AUTH, enableK8sTokenAuth=True)), "spec.rayClusterSpec.authOptions.enableK8sTokenAuth", "not supported for a RayJob", "ValidateRayJobSpec"),
    ("rayjob-cluster-spec", edit(rayjob, put(worker, minReplicas=5)), "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas", "greater than maxReplicas", "ValidateRayClusterSpec"),
    ("runtime-env-not-yaml", edit(rayjob, put(SPEC, runtimeEnvYAML="env_vars: [")), "spec.runtimeEnvYAML", "not valid YAML", "ValidateRayJobSpec"),
    ("runtime-env-not-mapping", edit(rayjob, put(SPEC, runtimeEnvYAML="- pip\n")), "spec.runtimeEnvYAML", "must be a YAML mapping", "ValidateRayJobSpec"),
    ("active-deadline", edit(rayjob, put(SPEC, activeDeadlineSeconds=0)), "spec.activeDeadlineSeconds", "positive", "ValidateRayJobSpec"),
    ("pre-running-deadline", edit(rayjob, put(SPEC, preRunningDeadlineSeconds=0)), "spec.preRunningDeadlineSeconds", "positive", "ValidateRayJobSpec"),
    ("backoff-negative", edit(rayjob, put(SPEC, backoffLimit=-1)), "spec.backoffLimit", "must not be negative", "ValidateRayJobSpec"),
    # RayService
    ("initializing-timeout-text", edit(rayservice, lambda o: annotate(o, "ray.io/initializing-timeout", "soon")), "metadata.annotations.ray.io/initializing-timeout", "not a positive duration", "validateInitializingTimeout"),
    ("initializing-timeout-zero", edit(rayservice, lambda o: annotate(o, "ray.io/initializing-timeout", "0s")), "metadata.annotations.ray.io/initializing-timeout", "not a positive duration", "validateInitializingTimeout"),
    ("initializing-timeout-negative", edit(rayservice, lambda o: annotate(o, "ray.io/initializing-timeout", "-300")), "metadata.annotations.ray.io/initializing-timeout", "not a positive duration", "validateInitializingTimeout"),
    ("rayservice-k8s-auth", edit(rayservice, put(AUTH, enableK8sTokenAuth=True)), "spec.rayClusterConfig.authOptions.enableK8sTokenAuth", "not supported for a RayService", "ValidateRayServiceSpec"),
    ("rayservice-cluster-spec", edit(rayservice, put(worker, maxReplicas=-1, minReplicas=None)), "spec.rayClusterConfig.workerGroupSpecs[0].maxReplicas", "must not be negative", "ValidateRayClusterSpec"),
    ("rayservice-head-service-name", edit(rayservice, put(head, headService={"metadata": {"name": "svc"}})), "spec.rayClusterConfig.headGroupSpec.headService.metadata.name", "must not be set", "ValidateRayServiceSpec"),
    ("rayservice-upgrade-type", edit(rayservice, put(SPEC, upgradeStrategy={"type": "BlueGreen"})), "spec.upgradeStrategy.type", "'BlueGreen' is not NewClusterWithIncrementalUpgrade", "ValidateRayServiceSpec"),
    ("rayservice-cluster-upgrade", edit(rayservice, put(cs, upgradeStrategy={"type": "Recreate"})), "spec.rayClusterConfig.upgradeStrategy", "not on a RayCluster made by a RayService", "ValidateRayClusterUpgradeOptions"),
    ("rayservice-deletion-delay", edit(rayservice, put(SPEC, rayClusterDeletionDelaySeconds=-1)), "spec.rayClusterDeletionDelaySeconds", "must not be negative", "ValidateRayServiceSpec"),
    ("incremental-needs-autoscaler", edit(incremental, put(cs, enableInTreeAutoscaling=False)), "spec.rayClusterConfig.enableInTreeAutoscaling", "needs the autoscaler", "ValidateClusterUpgradeOptions"),
    ("incremental-needs-options", edit(incremental, lambda o: o["spec"]["upgradeStrategy"].pop("clusterUpgradeOptions")), "spec.upgradeStrategy.clusterUpgradeOptions", "required", "ValidateClusterUpgradeOptions"),
    ("incremental-surge", edit(lambda: incremental(maxSurgePercent=120)), "spec.upgradeStrategy.clusterUpgradeOptions.maxSurgePercent", "between 0 and 100", "ValidateClusterUpgradeOptions"),
    ("incremental-step-above-surge", edit(lambda: incremental(stepSizePercent=60)), "spec.upgradeStrategy.clusterUpgradeOptions.stepSizePercent", "must not exceed maxSurgePercent", "ValidateClusterUpgradeOptions"),
    ("incremental-interval", edit(lambda: incremental(intervalSeconds=0)), "spec.upgradeStrategy.clusterUpgradeOptions.intervalSeconds", "greater than 0", "ValidateClusterUpgradeOptions"),
    ("incremental-gateway", edit(lambda: incremental(gatewayClassName=None)), "spec.upgradeStrategy.clusterUpgradeOptions.gatewayClassName", "required", "ValidateClusterUpgradeOptions"),
]  # fmt: skip


# --- the rules, one by one ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        raycluster,
        rayjob,
        selector_job,
        rayservice,
        incremental,
        edit(lambda: rules_job(rule("DeleteSelf", 60))),
    ],
)
def test_minimal_objects_pass(make):
    assert violations(make()) == []


@pytest.mark.parametrize(
    ("make", "path", "fragment", "function"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_rule_fails_its_broken_variant(make, path, fragment, function):
    problems = violations(make())
    assert len(problems) == 1, problems
    (problem,) = problems
    assert problem.startswith(f"{path}: "), problem
    assert fragment in problem, problem
    assert problem.endswith(f"({SOURCE}, {function})"), problem


def test_the_issue_example_reads_as_written():
    assert violations(edit(selector_job, put(SPEC, backoffLimit=2))()) == [
        f"spec.backoffLimit: must be 0 with spec.clusterSelector ({SOURCE}, ValidateRayJobSpec)"
    ]


def test_every_broken_rule_is_reported_not_only_the_first():
    job = edit(
        selector_job, put(SPEC, backoffLimit=1, ttlSecondsAfterFinished=5, submissionMode="SidecarMode")
    )()
    assert [p.split(":")[0] for p in violations(job)] == [
        "spec.ttlSecondsAfterFinished",
        "spec.submissionMode",
        "spec.backoffLimit",
    ]


def test_values_the_rules_accept():
    """Edges that must pass: durations, versions with suffixes, the v2 env var instead of the option."""
    for value in ("5m", "1h30m", "90", "+90", "1.5h"):
        assert not violations(
            edit(rayservice, lambda o, v=value: annotate(o, "ray.io/initializing-timeout", v))()
        )
    for version in ("2.52", "v2.60.0", "2.60.0rc1", "3.0.0"):
        assert not violations(edit(raycluster, put(cs, rayVersion=version))())
    old_style_v2 = edit(raycluster, drop(cs, "autoscalerOptions"), lambda o: head_env(o, RAY_enable_autoscaler_v2="1"), put(worker, idleTimeoutSeconds=60, priority=2))  # fmt: skip
    assert violations(old_style_v2()) == []
    # No autoscaler, but both bounds set; a zero priority is no priority; a suspended group without it.
    assert not violations(
        edit(raycluster, put(cs, enableInTreeAutoscaling=False), put(worker, priority=0, suspend=True))()
    )
    # Kinds that are not KubeRay's have nothing to say.
    assert violations({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "1"}}) == []


def test_feature_gates_switch_rules(monkeypatch):
    gated = edit(raycluster, put(cs, networkPolicy={}, gcsFaultToleranceOptions={"backend": "rocksdb"}))
    assert len(violations(gated())) == 2
    monkeypatch.setitem(kuberay_rules.FEATURE_GATES, "RayClusterNetworkPolicy", True)
    monkeypatch.setitem(kuberay_rules.FEATURE_GATES, "GCSFaultToleranceEmbeddedStorage", True)
    assert violations(gated()) == []
    monkeypatch.setitem(kuberay_rules.FEATURE_GATES, "RayJobDeletionPolicy", False)
    (problem,) = violations(edit(lambda: rules_job(rule("DeleteSelf")))())
    assert "RayJobDeletionPolicy feature gate" in problem


@pytest.mark.parametrize(
    ("cluster", "secret"),
    [
        ("pairaug", "pairaug"),
        ("a" * 50, "a" * 50),
        ("abc" + "d" * 50, "d" * 50),  # 53: the first 3 characters go
        ("abc-" + "d" * 49, "r" + "d" * 49),  # a leading '-' after the cut becomes 'r'
        ("abc7" + "d" * 49, "r" + "d" * 49),  # so does a leading digit
    ],
)
def test_token_secret_name_is_checkname(cluster, secret):
    assert token_secret_name(cluster) == secret
    assert token_secret_name(cluster, {"mode": "token", "secretName": "mine"}) == "mine"


# --- what the repository produces --------------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(*values_args(name)) for name in VALUE_SETS}


@pytest.mark.parametrize("name", VALUE_SETS)
def test_chart_objects_have_no_violations(rendered, name):
    problems = [f"{d['kind']}/{d['metadata']['name']}: {p}" for d in rendered[name] for p in violations(d)]
    assert not problems, "\n".join(problems)


def test_chart_drops_backoff_limit_on_the_existing_cluster(rendered):
    (job,) = [d for d in rendered["external-s3-secret-values"] if d["kind"] == "RayJob"]
    assert job["spec"]["clusterSelector"] and "backoffLimit" not in job["spec"]
    own = [d for d in rendered["rayjob-values"] if d["kind"] == "RayJob"]
    assert {j["spec"]["backoffLimit"] for j in own} == {0, 2}  # own-cluster jobs keep their retries


def test_k8s_manifests_have_no_violations():
    docs = [
        d
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "values.yaml"
        for d in yaml.safe_load_all(path.read_text())
        if d
    ]
    assert {d["kind"] for d in docs} >= {"RayJob", "RayService"}
    problems = [f"{d['kind']}/{d['metadata']['name']}: {p}" for d in docs for p in violations(d)]
    assert not problems, "\n".join(problems)


def notes(tmp_path: Path, release: str, *args: str) -> str:
    """NOTES.txt as `helm install` prints it, rendered through a copy of the chart that exposes it."""
    chart = tmp_path / "pairaug"
    shutil.copytree(CHART, chart)
    text = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + text + "\n{{- end -}}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\ndata: {notes: {{ include "test.notes" . | quote }}}\n'
    )
    out = helm("template", release, str(chart), "-n", "team", "--show-only", "templates/notes.yaml", *args)
    return yaml.safe_load(out.stdout)["data"]["notes"]


@pytest.mark.parametrize(
    "release",
    [
        "pairaug",
        "a-very-long-release-name-for-the-radiology-team-xyz",  # cluster name of 53: cut to 50
        "abc-" + "d" * 49,  # 53 characters, cut to a leading '-'
        "abc7" + "d" * 49,  # cut to a leading digit
    ],
)
def test_notes_name_the_operators_token_secret(tmp_path, release):
    (cluster,) = [d for d in render(release=release) if d["kind"] == "RayCluster"]
    expected = token_secret_name(cluster["metadata"]["name"], cluster["spec"]["authOptions"])
    secret = re.search(r"get secret (\S+) -o jsonpath", notes(tmp_path, release)).group(1)
    assert secret == expected
    if len(release) == 53:
        assert secret.startswith("r") and len(secret) == 50
    # An existing Secret is named as given.
    secret = re.search(
        r"get secret (\S+) -o", notes(tmp_path / "2", release, "--set", "auth.existingSecret=tok")
    )
    assert secret.group(1) == "tok"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["9lives"], 'RayCluster name "9lives-pairaug"'),  # Helm allows release names KubeRay refuses
        (["team.a"], 'RayCluster name "team.a-pairaug"'),
        (["ok", "--set", "fullnameOverride=Pairaug"], 'RayCluster name "Pairaug"'),
        (
            [
                "ok",
                "--set",
                "cluster.enabled=false,jobs.train.enabled=true,jobs.train.config=s3://b/t.yaml",
                "--set",
                "fullnameOverride=7x",
            ],
            'RayJob name "7x-train"',
        ),
    ],
)
def test_chart_refuses_names_kuberay_refuses(args, expected):
    release, *rest = args
    proc = helm("template", release, str(CHART), *rest, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert expected in proc.stderr and "DNS-1035" in proc.stderr, proc.stderr


# --- pairaug submit --rayjob -------------------------------------------------------------------------

TEMPLATES = sorted(K8S.glob("rayjob-*.yaml"))


@pytest.mark.parametrize("path", TEMPLATES, ids=[p.stem for p in TEMPLATES])
@pytest.mark.parametrize("cluster", [None, "pairaug"])
def test_build_rayjob_bodies_have_no_violations(path, cluster):
    template = yaml.safe_load(path.read_text())
    body = submit.build_rayjob(
        ["pairaug", "augment", "--config", "s3://b/a.yaml"],
        "pairaug-job-1",
        cluster=cluster,
        template=template,
        image="reg.example/pairaug:1",
        runtime_env={"env_vars": {"A": "1"}},
    )
    assert violations(body) == []
    if cluster:
        assert template["spec"]["backoffLimit"] > 0 and "backoffLimit" not in body["spec"]


def test_build_rayjob_on_a_cluster_drops_what_kuberay_refuses_there():
    template = yaml.safe_load((K8S / "rayjob-train.yaml").read_text())
    template["spec"].update(backoffLimit=3, suspend=True, submissionMode="SidecarMode")
    del template["spec"]["submitterPodTemplate"]
    body = submit.build_rayjob(["pairaug", "train"], "pairaug-train-1", cluster="pairaug", template=template)
    assert violations(body) == []
    assert body["spec"]["submissionMode"] == "K8sJobMode"
    assert not {"backoffLimit", "suspend", "rayClusterSpec"} & set(body["spec"])
    assert template["spec"]["backoffLimit"] == 3  # the template itself is left alone


def test_submit_refuses_a_violating_rayjob_before_kubernetes(tmp_path, monkeypatch, capsys):
    template = yaml.safe_load((K8S / "rayjob-train.yaml").read_text())
    template["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["minReplicas"] = 9
    path = tmp_path / "rayjob.yaml"
    path.write_text(yaml.safe_dump(template))

    def no_kubernetes(*args, **kwargs):
        raise AssertionError("talked to Kubernetes")

    monkeypatch.setattr(submit, "_kube_api", no_kubernetes)
    argv = ["--rayjob", "--template", str(path), "--name", "pairaug-train-x", "--", "pairaug", "train"]
    assert submit.cmd_submit(submit.build_parser().parse_args(argv)) == submit.EXIT_ERROR
    err = capsys.readouterr().err
    assert "the KubeRay operator would refuse RayJob pairaug-train-x" in err
    assert "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas: 9 is greater than maxReplicas 8" in err
