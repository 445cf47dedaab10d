"""Every controller the chart meets accepts what it renders, for every option it documents.

A render matrix with the real Helm binary: the default values, every ci/*.yaml, and each option of
values.yaml set alone (to an example a user would write), each of them also with autoscaling off,
under a Kueue queue, with GCS fault tolerance and with the jobs on the long-lived cluster. Every
rendering is either accepted (every RayCluster and RayJob passes the KubeRay v1.7 operator's rules,
pairaug_ray/kuberay_rules.py, and Kueue's admission rules, pairaug_ray/kueue_rules.py) or refused by
`helm template` with a message that names a values key. A documented option without an example here
fails the test, so a new option is added to the matrix when it is added to the chart.

Also: the default and the quick start's values pass Pod Security "restricted" (tests/pod_security.py),
and the quick start's pods fit a managed cluster's default node.
"""

from __future__ import annotations

import copy
import re
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from pod_security import pod_specs, restricted
from test_helm import CHART, HELM, REPO, WITH_PROMETHEUS_OPERATOR, Loader, helm

from pairaug_ray import kuberay_rules, kueue_rules

# Every rendering has an augment RayJob of its own cluster beside the RayCluster, so both kinds meet
# the rules.
BASE = {"jobs": {"augment": {"enabled": True, "config": "s3://bucket/configs/augment.yaml"}}}
MODIFIERS = {
    "alone": {},
    "autoscaling off": {"autoscaler": {"enabled": False}},
    "kueue": {"kueue": {"queueName": "team-a"}},
    "gcs fault tolerance": {"gcsFaultTolerance": {"enabled": True, "redisAddress": "redis.redis.svc:6379"}},
    "existing cluster": {"jobs": {"defaults": {"useExistingCluster": True}}},
}

TOLERATION = [{"key": "example.com/dedicated", "operator": "Exists", "effect": "NoSchedule"}]
AFFINITY = {
    "nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {
                "weight": 1,
                "preference": {
                    "matchExpressions": [{"key": "example.com/pool", "operator": "In", "values": ["ml"]}]
                },
            }
        ]
    }
}
SPREAD = [
    {
        "maxSkew": 1,
        "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "pairaug"}},
    }
]
VOLUME = [{"name": "cache", "emptyDir": {}}]
MOUNT = [{"name": "cache", "mountPath": "/cache"}]


def group_examples(prefix: str) -> dict[str, object]:
    """The keys every Ray group (head, cpuWorkers, gpuWorkers) shares."""
    return {
        f"{prefix}.resources.cpu": "2",
        f"{prefix}.resources.memory": "6Gi",
        f"{prefix}.resources.ephemeralStorage": "100Gi",
        f"{prefix}.objectStoreMemory": "256Mi",
        f"{prefix}.sharedMemory": "16Gi",
        f"{prefix}.tmpSize": "1Gi",
        f"{prefix}.rayStartParams": {"dashboard-agent-listen-port": "52366"},
        f"{prefix}.nodeSelector": {"example.com/pool": "ml"},
        f"{prefix}.tolerations": TOLERATION,
        f"{prefix}.affinity": AFFINITY,
        f"{prefix}.podLabels": {"team": "radiology"},
        f"{prefix}.podAnnotations": {"example.com/owner": "radiology"},
        f"{prefix}.priorityClassName": "ml-batch",
        f"{prefix}.env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
        f"{prefix}.envFrom": [{"secretRef": {"name": "extra-env"}}],
        f"{prefix}.volumes": VOLUME,
        f"{prefix}.volumeMounts": {f"{prefix}.volumes": VOLUME, f"{prefix}.volumeMounts": MOUNT},
        f"{prefix}.topologySpreadConstraints": SPREAD,
    }


def worker_examples(prefix: str, name: str) -> dict[str, object]:
    return {
        **group_examples(prefix),
        f"{prefix}.enabled": False,
        f"{prefix}.groupName": f"{name}2",
        f"{prefix}.replicas": 2,
        f"{prefix}.minReplicas": 1,
        f"{prefix}.maxReplicas": 3,
        f"{prefix}.idleTimeoutSeconds": 90,
        f"{prefix}.priority": 5,
        f"{prefix}.rayLabels": {"ray.io/market-type": "spot"},
        f"{prefix}.extendedResources": {"vpc.amazonaws.com/efa": 1},
    }


# A key mapped to a dict of dotted keys sets them together (an option that only means something with
# another); otherwise the key is set to the value.
EXAMPLES: dict[str, object] = {
    "nameOverride": "radiology",
    "fullnameOverride": "pairaug-prod",
    "image.repository": "registry.example.com/ml/pairaug",
    "image.tag": "0.2.0",
    "image.pullPolicy": "Always",
    "imagePullSecrets": ["registry-credentials"],
    "rayVersion": "2.60.1",
    "serviceAccount.create": False,
    "serviceAccount.name": "pairaug-runner",
    "serviceAccount.annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/pairaug"},
    "securityContext.runAsUser": 1001,
    "securityContext.runAsGroup": 1001,
    "securityContext.fsGroup": 1001,
    "s3.credentials": {"s3.credentials": "secret", "s3.existingSecret": "pairaug-s3"},
    "s3.existingSecret": "pairaug-s3",
    "s3.region": "eu-west-1",
    "s3.endpointUrl": "http://minio.storage.svc:9000",
    "llm.existingSecret": "pairaug-openai",
    "llm.secretKey": "key",
    "llm.envName": "LLM_API_KEY",
    "auth.enabled": False,
    "auth.existingSecret": "pairaug-ray-token",
    "pipelineConfigs.files": {"demo.yaml": "run: {name: demo}\n"},
    "pipelineConfigs.mountPath": "/configs",
    "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
    "cluster.enabled": False,
    "gcsFaultTolerance.enabled": {
        "gcsFaultTolerance.enabled": True,
        "gcsFaultTolerance.redisAddress": "redis:6379",
    },
    "gcsFaultTolerance.redisAddress": "redis:6379",
    "gcsFaultTolerance.redisPasswordSecret.name": "redis",
    "gcsFaultTolerance.redisPasswordSecret.key": "redis-password",
    "gcsFaultTolerance.externalStorageNamespace": "pairaug-prod",
    "podDisruptionBudget.enabled": True,
    "doNotDisrupt": False,
    "metrics.podMonitor.enabled": True,
    "metrics.podMonitor.interval": "15s",
    "metrics.podMonitor.labels": {"release": "kube-prometheus-stack"},
    "metrics.grafanaDashboard.enabled": True,
    "metrics.grafanaDashboard.labels.grafana_dashboard": "ray",
    "metrics.grafanaHost": "http://grafana.monitoring.svc",
    "metrics.grafanaIframeHost": "https://grafana.example.com",
    "metrics.prometheusHost": "http://prometheus.monitoring.svc:9090",
    "kueue.queueName": "team-a",
    "kueue.autoscaling": {"kueue.queueName": "team-a", "kueue.autoscaling": "off"},
    "networkPolicy.enabled": True,
    "networkPolicy.allowNamespaces": ["ml-notebooks"],
    "networkPolicy.allowPodLabels": {"app": "notebook"},
    "networkPolicy.prometheusPodLabels": {"app.kubernetes.io/name": "prometheus"},
    "networkPolicy.operatorNamespace": "ray-system",
    **{
        f"readerStudy.{key}": {
            "readerStudy.enabled": True,
            "readerStudy.config": "s3://b/augment.yaml",
            f"readerStudy.{key}": value,
        }
        for key, value in (
            ("createArgs", ["--cases-per-task", "20"]),
            ("url", "https://reader-study.example.org"),
            ("storage.size", "20Gi"),
            ("storage.storageClassName", "gp3"),
            ("storage.existingClaim", "reader-study-data"),
            ("database.existingSecret", "reader-study-db"),
            ("database.secretKey", "sqlalchemy-url"),
            ("resources.cpu", "2"),
            ("resources.memory", "4Gi"),
            ("resources.ephemeralStorage", "2Gi"),
            ("allowNamespaces", ["ingress-nginx"]),
        )
    },
    "readerStudy.enabled": {
        "readerStudy.enabled": True,
        "readerStudy.config": "/etc/pairaug/configs/demo.yaml",
        "pipelineConfigs.files": {"demo.yaml": "run: {name: demo}\n"},
    },
    "readerStudy.config": {"readerStudy.enabled": True, "readerStudy.config": "s3://b/augment.yaml"},
    "autoscaler.enabled": False,
    "autoscaler.version": "v1",
    "autoscaler.upscalingMode": "Aggressive",
    "autoscaler.idleTimeoutSeconds": 60,
    "autoscaler.resources.cpu": "1",
    "autoscaler.resources.memory": "1Gi",
    **group_examples("head"),
    "head.serviceType": "NodePort",
    **worker_examples("cpuWorkers", "cpu"),
    **worker_examples("gpuWorkers", "gpu"),
    "gpuWorkers.gpusPerPod": 2,
    "gpuWorkers.gpuResourceName": "amd.com/gpu",
    "gpuWorkers.acceleratorType": "H100",
    "driverWorkers.enabled": True,
    "driverWorkers.groupName": "driver-pool",
    "driverWorkers.maxReplicas": 4,
    "driverWorkers.driversPerPod": 8,
    "driverWorkers.resources.cpu": "1",
    "driverWorkers.resources.memory": "4Gi",
    "driverWorkers.resources.ephemeralStorage": "10Gi",
    "driverWorkers.objectStoreMemory": "256Mi",
    "driverWorkers.sharedMemory": "2Gi",
    "driverWorkers.tmpSize": "1Gi",
    "extraWorkerGroups": [
        {"groupName": "gpu-spot", "maxReplicas": 2, "nodeSelector": {"karpenter.sh/capacity-type": "spot"}},
        {
            "groupName": "cpu-highmem",
            "preset": "cpu",
            "resources": {"cpu": "8", "memory": "64Gi", "ephemeralStorage": "20Gi"},
        },
    ],
    "jobs.defaults.useExistingCluster": True,
    "jobs.defaults.shutdownAfterJobFinishes": False,
    "jobs.defaults.ttlSecondsAfterFinished": 60,
    "jobs.defaults.activeDeadlineSeconds": 3600,
    "jobs.defaults.backoffLimit": 0,
    "jobs.defaults.runtimeEnvYAML": "env_vars:\n  HF_HUB_OFFLINE: '1'\n",
    "jobs.defaults.entrypointNumCpus": {"jobs.defaults.entrypointNumCpus": 1, "driverWorkers.enabled": True},
    "jobs.defaults.submitterResources.cpu": "1",
    "jobs.defaults.submitterResources.memory": "1Gi",
    **{
        f"jobs.{stage}.{key}": value
        for stage in ("augment", "train", "evaluate")
        for key, value in (
            ("enabled", True),
            ("config", f"s3://bucket/configs/{stage}-exp.yaml"),
            ("args", ["--set", "run.seed=1"]),
        )
    },
}
# What must refuse, naming the key, rather than render something a controller refuses.
NAMES_A_KEY = re.compile(r"\b[a-zA-Z]+(\.[a-zA-Z\[\]0-9]+)+\b")


def documented_keys() -> list[str]:
    """The leaf keys of values.yaml (every one is documented: tests/test_helm.py checks that)."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    keys = []

    def walk(node, path):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else k)
        else:
            keys.append(path)

    walk(values, "")
    return keys


def nested(dotted: dict[str, object]) -> dict:
    out: dict = {}
    for key, value in dotted.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def merged(*layers: dict) -> dict:
    out: dict = {}

    def merge(dst, src):
        for k, v in src.items():
            if isinstance(v, dict) and isinstance(dst.get(k), dict):
                merge(dst[k], v)
            else:
                dst[k] = copy.deepcopy(v)

    for layer in layers:
        merge(out, layer)
    return out


def option_values(key: str) -> dict:
    example = EXAMPLES[key]
    if isinstance(example, dict) and all("." in k or k == key for k in example) and key in example:
        return nested(example)
    return nested({key: example})


def render_verdict(values: dict, ci_file: Path | None = None) -> tuple[str, list[str]]:
    """('ok', []) when every Ray object passes KubeRay's and Kueue's rules, ('refused', [message]) when
    helm refuses naming a key, ('BROKEN', problems) otherwise."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        yaml.safe_dump(values, f)
    args = [str(HELM), "template", "pairaug", str(CHART), "--namespace", "pairaug", *WITH_PROMETHEUS_OPERATOR]
    if ci_file:
        args += ["-f", str(ci_file)]
    proc = subprocess.run([*args, "-f", f.name], capture_output=True, text=True, timeout=60)
    Path(f.name).unlink()
    if proc.returncode:
        message = proc.stderr.strip().splitlines()[0] if proc.stderr.strip() else "(no message)"
        return (
            ("refused", [message])
            if NAMES_A_KEY.search(message)
            else ("BROKEN", [f"refused without naming a key: {message}"])
        )
    problems = []
    for obj in yaml.load_all(proc.stdout, Loader=Loader):
        if obj and obj.get("kind") in ("RayCluster", "RayJob", "RayService"):
            where = f"{obj['kind']} {obj['metadata']['name']}"
            problems += [f"{where}: {m}" for m in kuberay_rules.violations(obj) + kueue_rules.violations(obj)]
    return ("BROKEN", problems) if problems else ("ok", [])


def test_every_documented_option_is_in_the_matrix():
    missing = [k for k in documented_keys() if k not in EXAMPLES]
    assert not missing, f"add an example to EXAMPLES in tests/test_chart_matrix.py for: {missing}"
    stale = [k for k in EXAMPLES if k not in documented_keys()]
    assert not stale, f"EXAMPLES names keys values.yaml no longer has: {stale}"


def test_every_rendering_is_accepted_or_refused_naming_a_key():
    cases = [
        (f"{key} ({mod})", merged(BASE, mod_values, option_values(key)), None)
        for key in documented_keys()
        for mod, mod_values in MODIFIERS.items()
    ]
    cases += [
        (f"ci/{f.name} ({mod})", merged(BASE, mod_values), f)
        for f in sorted((CHART / "ci").glob("*.yaml"))
        for mod, mod_values in MODIFIERS.items()
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:  # helm is a process: two cores overlap four
        verdicts = list(pool.map(lambda c: (c[0], *render_verdict(c[1], c[2])), cases))
    broken = [f"{name}: {problems}" for name, verdict, problems in verdicts if verdict == "BROKEN"]
    assert not broken, "\n".join(broken)
    refused = {name: problems[0] for name, verdict, problems in verdicts if verdict == "refused"}
    print(
        f"\n[matrix] {len(cases)} renderings: {len(cases) - len(refused)} accepted, {len(refused)} refused naming a key"
    )
    for name, message in sorted(refused.items()):
        print(f"  refused: {name}: {message[:160]}")
    # The ones that must be refused are refused, and only for their reason.
    expected = {
        "autoscaler.enabled (alone)": None,  # no group keys set: accepted
        "cpuWorkers.idleTimeoutSeconds (autoscaling off)": "cpuWorkers.idleTimeoutSeconds is set",
        "gpuWorkers.priority (autoscaling off)": "gpuWorkers.priority is set",
        "autoscaler.version (alone)": None,
        "jobs.defaults.shutdownAfterJobFinishes (kueue)": "jobs.augment.shutdownAfterJobFinishes is false",
        "cluster.enabled (existing cluster)": "useExistingCluster needs cluster.enabled",
    }
    for name, says in expected.items():
        if says is None:
            assert name not in refused, (name, refused.get(name))
        else:
            assert says in refused.get(name, ""), (name, refused.get(name))
    # Sanity: the matrix is mostly accepted renderings, not refusals.
    assert len(refused) < len(cases) // 5


# --- Pod Security and the default node -------------------------------------------------------------------

QUICK_START = ["--set-file", f"pipelineConfigs.files.demo\\.yaml={REPO / 'configs' / 'demo.yaml'}"]


def _objects(*args: str) -> list[dict]:
    out = helm("template", "pairaug", str(CHART), "--namespace", "pairaug", *args).stdout
    return [d for d in yaml.load_all(out, Loader=Loader) if d]


@pytest.mark.parametrize("args", [[], QUICK_START, ["-f", str(CHART / "ci" / "operator-values.yaml")]])
def test_pod_security_restricted(args):
    """Every pod the chart renders (Ray groups, RayJob submitters) passes Pod Security restricted, and
    so does the autoscaler sidecar KubeRay adds from autoscalerOptions.securityContext."""
    docs = _objects(*args, "--set", "jobs.augment.enabled=true,jobs.augment.config=s3://b/a.yaml")
    problems = [f"{where}: {p}" for obj in docs for where, pod in pod_specs(obj) for p in restricted(pod)]
    for obj in docs:
        spec = obj.get("spec") or {}
        cluster = spec.get("rayClusterSpec") or (spec if obj.get("kind") == "RayCluster" else None)
        if cluster and cluster.get("enableInTreeAutoscaling"):
            sidecar = {
                "name": "autoscaler",
                "securityContext": cluster["autoscalerOptions"]["securityContext"],
            }
            head_pod = cluster["headGroupSpec"]["template"]["spec"]
            problems += [
                f"{obj['kind']} autoscaler sidecar: {p}"
                for p in restricted({**head_pod, "containers": [sidecar]})
            ]
    assert not problems, "\n".join(problems)
    assert len([1 for obj in docs for _ in pod_specs(obj)]) >= 4


def test_pod_security_check_can_fail():
    pod = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [
            {
                "name": "c",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
    }
    assert restricted(pod) == []
    bad = copy.deepcopy(pod)
    bad["volumes"] = [{"name": "nvme", "hostPath": {"path": "/mnt/nvme"}}]
    bad["containers"][0]["securityContext"]["capabilities"]["add"] = ["SYS_ADMIN"]
    bad["containers"][0]["ports"] = [{"containerPort": 80, "hostPort": 80}]
    assert len(restricted(bad)) == 5  # hostPath (baseline and restricted), SYS_ADMIN (both), hostPort


# A managed cluster's default node (EKS m5.xlarge / GKE e2-standard-4: 4 vCPU, 16 GiB, a 20 GiB disk)
# after the kubelet's reserves and eviction threshold, less what DaemonSets (CNI, kube-proxy, logging)
# take: what one pod of the quick start may request.
DEFAULT_NODE = {"cpu": 3.9 - 0.3, "memory": 14.5 - 1.0, "ephemeral-storage": 17.0 - 7.0}
# (The disk also holds the image: about 7 GiB for this project's, with PyTorch's CUDA libraries.)


def _quantity(text: str) -> float:
    """CPU in cores, memory and storage in GiB."""
    text = str(text)
    units = {"m": 1e-3, "Mi": 1 / 1024, "Gi": 1.0, "Ti": 1024.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def test_the_quick_start_fits_a_default_node_pool():
    """Each pod of the quick start (the head with its autoscaler sidecar, a CPU worker, a driver pod)
    requests no more than a default node offers; the production sizes need presets/production.yaml."""
    docs = _objects(*QUICK_START, "--set", "driverWorkers.enabled=true")
    (rc,) = [d for d in docs if d["kind"] == "RayCluster"]
    spec = rc["spec"]
    pods = {"head": spec["headGroupSpec"]["template"]["spec"]}
    pods.update(
        {g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"] if g["groupName"] != "gpu"}
    )
    sidecar = spec["autoscalerOptions"]["resources"]["requests"]
    for name, pod in pods.items():
        requests = pod["containers"][0]["resources"]["requests"]
        need = {
            "cpu": _quantity(requests["cpu"]) + (_quantity(sidecar["cpu"]) if name == "head" else 0),
            "memory": _quantity(requests["memory"]) + (_quantity(sidecar["memory"]) if name == "head" else 0),
            "ephemeral-storage": _quantity(requests["ephemeral-storage"]),
        }
        for resource, amount in need.items():
            assert amount <= DEFAULT_NODE[resource], (name, resource, amount, DEFAULT_NODE[resource])
    production = _objects("-f", str(CHART / "presets" / "production.yaml"))
    (prc,) = [d for d in production if d["kind"] == "RayCluster"]
    cpu_pod = next(g for g in prc["spec"]["workerGroupSpecs"] if g["groupName"] == "cpu")
    assert (
        _quantity(cpu_pod["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
        > DEFAULT_NODE["cpu"]
    )
