"""The Helm chart (helm/pairaug) and the plain manifests (k8s/), checked without a cluster.

The real Helm 3 binary renders the chart (`make .tools/helm` fetches it); each value set is rendered
once per module. Core objects (and every pod template, wrapped in a Pod) are validated in strict mode
with kubernetes-validate for each supported Kubernetes version; RayCluster, RayJob and RayService
objects against the KubeRay v1.7 CRD schemas in tests/fixtures/kuberay-crds (copied from upstream;
source, licence and refresh steps in the README there; set KUBERAY_CRDS to use another copy), with
unknown fields rejected as the API server's strict field validation would. CEL rules of the CRDs
are not checked offline; the limits KubeRay enforces in Go (name lengths) are asserted here instead.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "helm" / "pairaug"
K8S = REPO / "k8s"
HELM = REPO / ".tools" / "helm"
CRDS = Path(os.environ.get("KUBERAY_CRDS") or REPO / "tests" / "fixtures" / "kuberay-crds")
K8S_VERSIONS = ["1.29.0", "1.30.0", "1.31.0", "1.32.0", "1.33.0", "1.34.0", "1.35.0"]
RAY_KINDS = {"RayCluster", "RayJob", "RayService"}
VALUE_SETS = ["default", *sorted(p.stem for p in (CHART / "ci").glob("*.yaml"))]
SECRETISH = re.compile(r"(^|_)(API_?KEY|KEY|SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIALS?)(_|$)", re.I)
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are 60k lines


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if not HELM.exists():
        pytest.fail(f"the Helm binary is missing at {HELM}: run `make .tools/helm` (make test does it)")
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode:
        pytest.fail(f"helm {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def render(*args: str, release: str = "pairaug") -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", "pairaug", *args).stdout
    return [d for d in yaml.load_all(out, Loader=Loader) if d]


# What `helm install` sees on a cluster with the Prometheus Operator (the PodMonitor needs it).
WITH_PROMETHEUS_OPERATOR = ["--api-versions", "monitoring.coreos.com/v1/PodMonitor"]


def values_args(name: str) -> list[str]:
    return [
        *WITH_PROMETHEUS_OPERATOR,
        *([] if name == "default" else ["-f", str(CHART / "ci" / f"{name}.yaml")]),
    ]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {name: render(*values_args(name)) for name in VALUE_SETS}


@pytest.fixture(scope="module")
def manifests() -> list[dict]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "values.yaml":  # the values the chart renders k8s/ from, not a manifest
            continue
        docs += [d for d in yaml.load_all(path.read_text(), Loader=Loader) if d]
    return docs


# --- KubeRay CRD schemas --------------------------------------------------------------------------------


def _structural(node):
    """An openAPIV3Schema node as JSON Schema, strict like the API server's field validation."""
    if isinstance(node, list):
        return [_structural(n) for n in node]
    if not isinstance(node, dict):
        return node
    node = {k: _structural(v) for k, v in node.items() if k != "x-kubernetes-validations"}
    if node.pop("x-kubernetes-int-or-string", False):
        node.pop("type", None)
        node["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.pop("nullable", False) and "type" in node:
        node["type"] = [node["type"], "null"]
    strict = not node.get("x-kubernetes-preserve-unknown-fields")
    if strict and "properties" in node and "additionalProperties" not in node:
        node["additionalProperties"] = False
    return node


@pytest.fixture(scope="module")
def crd_validators() -> dict[str, jsonschema.Validator]:
    if not CRDS.is_dir():
        pytest.fail(f"KubeRay CRDs not found at {CRDS} (tests/fixtures/kuberay-crds, or set KUBERAY_CRDS)")
    validators = {}
    for path in CRDS.glob("ray.io_*.yaml"):
        crd = yaml.load(path.read_text(), Loader=Loader)
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schema = _structural(version["schema"]["openAPIV3Schema"])
        validators[crd["spec"]["names"]["kind"]] = jsonschema.Draft7Validator(schema)
    assert set(validators) >= RAY_KINDS, f"missing CRDs in {CRDS}: {RAY_KINDS - set(validators)}"
    return validators


def crd_errors(obj: dict, validators) -> list[str]:
    assert obj["apiVersion"] == "ray.io/v1", obj["apiVersion"]
    errors = validators[obj["kind"]].iter_errors(obj)
    return [
        f"{obj['kind']}/{obj['metadata']['name']} at {'.'.join(map(str, e.path))}: {e.message}"
        for e in errors
    ]


# --- walking the rendered objects ------------------------------------------------------------------------


def cluster_specs(obj: dict) -> list[dict]:
    spec = obj["spec"]
    if obj["kind"] == "RayCluster":
        return [spec]
    return [s for s in (spec.get("rayClusterSpec"), spec.get("rayClusterConfig")) if s]


def groups(cluster_spec: dict) -> list[tuple[str, dict]]:
    """(group name, group spec) for the head ('head') and every worker group."""
    return [("head", cluster_spec["headGroupSpec"])] + [
        (g["groupName"], g) for g in cluster_spec.get("workerGroupSpecs", [])
    ]


def pod_specs(obj: dict) -> list[tuple[str, dict]]:
    """Every pod spec an object will create: Ray groups and RayJob submitters."""
    found = [
        (f"{obj['kind']}/{obj['metadata']['name']}/{name}", g["template"]["spec"])
        for spec in cluster_specs(obj)
        for name, g in groups(spec)
    ]
    if obj["kind"] == "RayJob" and "submitterPodTemplate" in obj["spec"]:
        found.append(
            (f"RayJob/{obj['metadata']['name']}/submitter", obj["spec"]["submitterPodTemplate"]["spec"])
        )
    return found


def only(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def check_objects(docs: list[dict], validators) -> None:
    """Schema validation of every object: the checks shared by the chart and k8s/."""
    import kubernetes_validate

    problems = []
    for obj in docs:
        name = obj["metadata"]["name"]
        assert len(name) <= 63, f"{obj['kind']} name longer than 63: {name}"
        if obj["apiVersion"].startswith("monitoring.coreos.com/"):
            # The Prometheus Operator's CRDs are not here: the fields this chart relies on, by hand.
            assert obj["kind"] == "PodMonitor" and obj["spec"]["selector"]["matchLabels"], obj
            named = {"metrics", "as-metrics", "dash-metrics"}  # container ports the chart declares
            assert all(e["port"] in named for e in obj["spec"]["podMetricsEndpoints"]), obj
            continue
        if obj["kind"] in RAY_KINDS:
            problems += crd_errors(obj, validators)
            limit = 53 if obj["kind"] == "RayCluster" else 47  # KubeRay's Go-side limits
            assert len(name) <= limit and DNS1035.match(name), (
                f"{obj['kind']} name {name!r} refused by KubeRay"
            )
            to_core = [
                ({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": s}, where)
                for where, s in pod_specs(obj)
            ]
        else:
            to_core = [(obj, f"{obj['kind']}/{name}")]
        for core, where in to_core:
            for version in K8S_VERSIONS:
                try:
                    kubernetes_validate.validate(core, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    problems.append(
                        f"{where} on Kubernetes {version}: {e.caught.message} at {list(e.caught.path)}"
                    )
    assert not problems, "\n".join(problems)


def check_security(docs: list[dict]) -> None:
    """Non-root everywhere, token auth on, secrets only by reference."""
    assert not only(docs, "Secret"), "the chart must not create Secrets"
    for obj in docs:
        for spec in cluster_specs(obj) if obj["kind"] in RAY_KINDS else []:
            assert spec["authOptions"]["mode"] == "token", f"{obj['metadata']['name']}: token auth is off"
            autoscaler = spec.get("autoscalerOptions", {}).get("securityContext", {})
            assert autoscaler.get("runAsNonRoot") and autoscaler.get("allowPrivilegeEscalation") is False
        for where, pod in pod_specs(obj) if obj["kind"] in RAY_KINDS else []:
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"].get("runAsUser", 1000) != 0, where
            for c in pod["containers"]:
                assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
                assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
                assert c["image"].rsplit("/", 1)[-1].count(":") == 1, f"{where}: image without a tag"
                assert not c["image"].endswith((":latest", ":nightly")), (
                    f"{where}: unpinned image {c['image']}"
                )
                assert c["resources"]["requests"] == c["resources"]["limits"], f"{where}: requests != limits"
                for env in c.get("env", []):
                    if SECRETISH.search(env["name"]):
                        assert "value" not in env and "secretKeyRef" in env["valueFrom"], f"{where}: {env}"
                for src in c.get("envFrom", []):
                    assert set(src) == {"secretRef"}, f"{where}: {src}"


# --- the chart -------------------------------------------------------------------------------------------


def test_lint_strict_with_every_value_set():
    for name in VALUE_SETS:
        files = [
            a for a in values_args(name) if a not in WITH_PROMETHEUS_OPERATOR
        ]  # lint has no --api-versions
        proc = helm("lint", "--strict", str(CHART), *files, check=False)
        assert proc.returncode == 0, f"helm lint --strict ({name}):\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("name", VALUE_SETS)
def test_every_object_validates(rendered, crd_validators, name):
    docs = rendered[name]
    assert docs, name
    check_objects(docs, crd_validators)
    check_security(docs)


def test_crd_validation_rejects_unknown_fields(rendered, crd_validators):
    """The converted CRD schemas really are strict: a typo anywhere is an error."""
    (rc,) = only(rendered["default"], "RayCluster")
    assert not crd_errors(rc, crd_validators)
    bad = copy.deepcopy(rc)
    bad["spec"]["workerGroupSpecs"][1]["maxReplica"] = 3
    bad["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    bad["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] = "600"
    errors = "\n".join(crd_errors(bad, crd_validators))
    assert "'maxReplica' was unexpected" in errors
    assert "'imagePullPolicyy' was unexpected" in errors
    assert "spec.autoscalerOptions.idleTimeoutSeconds: '600' is not of type 'integer'" in errors


def test_default_cluster_layout(rendered):
    docs = rendered["default"]
    # No head PodDisruptionBudget without GCS fault tolerance: it would block every node drain.
    assert {d["kind"] for d in docs} == {"ServiceAccount", "RayCluster"}
    (rc,) = only(docs, "RayCluster")
    spec = rc["spec"]
    assert rc["metadata"]["name"] == "pairaug" and spec["rayVersion"] == "2.60.0"
    for key in (
        "helm.sh/chart",
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/managed-by",
    ):
        assert all(key in d["metadata"]["labels"] for d in docs), key
    # Autoscaling: in-tree, v2, with the idle timeout and upscaling mode of values.yaml.
    assert spec["enableInTreeAutoscaling"] is True
    assert {k: spec["autoscalerOptions"][k] for k in ("version", "upscalingMode", "idleTimeoutSeconds")} == {
        "version": "v2",
        "upscalingMode": "Default",
        "idleTimeoutSeconds": 600,
    }
    # The head takes no tasks; every group sets its object store below its /dev/shm.
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    for _, g in groups(spec):
        pod = g["template"]["spec"]
        (shm,) = [v["emptyDir"] for v in pod["volumes"] if v["name"] == "shared-mem"]
        assert shm["medium"] == "Memory"
        assert {"name": "shared-mem", "mountPath": "/dev/shm"} in pod["containers"][0]["volumeMounts"]
        units = {"Gi": 2**30, "Mi": 2**20}
        shm_bytes = int(shm["sizeLimit"][:-2]) * units[shm["sizeLimit"][-2:]]
        assert 0 < int(g["rayStartParams"]["object-store-memory"]) <= shm_bytes
    workers = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(workers) == {"cpu", "gpu"}
    cpu_container = workers["cpu"]["template"]["spec"]["containers"][0]
    assert "nvidia.com/gpu" not in cpu_container["resources"]["limits"]
    # A CPU pod on an untainted GPU node sees no GPU, neither in Ray nor through NVIDIA's runtime.
    assert workers["cpu"]["resources"] == {"GPU": "0"} and "resources" not in workers["gpu"]
    assert {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"} in cpu_container["env"]
    assert "NVIDIA_VISIBLE_DEVICES" not in str(workers["gpu"]["template"]["spec"]["containers"][0].get("env"))
    # /tmp/ray is the volume KubeRay shares with the autoscaler sidecar (named ray-logs).
    for pod in [head["template"]["spec"], *(g["template"]["spec"] for g in workers.values())]:
        assert {"name": "ray-logs", "mountPath": "/tmp/ray"} in pod["containers"][0]["volumeMounts"]


# Labels a node gets only after it boots (NVIDIA GPU feature discovery, Node Feature Discovery): node
# autoscalers (Cluster Autoscaler, Karpenter, GKE auto-provisioning) never create a node for them.
AFTER_BOOT_LABELS = re.compile(r"^(nvidia\.com/(gpu|cuda|mig)\.|feature\.node\.kubernetes\.io/)")


def _pod_specs(docs: list[dict]) -> list[dict]:
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "containers" in node and isinstance(node["containers"], list):
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(docs)
    return found


def test_no_pod_waits_for_a_label_added_after_boot(rendered, manifests):
    """A group that scales from zero must not select GPU feature discovery's labels: the node that
    would carry them is never created, and the pods stay Pending."""
    for name, docs in [*rendered.items(), ("k8s/", manifests)]:
        for pod in _pod_specs(docs):
            keys = list(pod.get("nodeSelector") or {})
            terms = (
                ((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
                    "requiredDuringSchedulingIgnoredDuringExecution"
                )
                or {}
            ).get("nodeSelectorTerms") or []
            keys += [e["key"] for t in terms for e in t.get("matchExpressions", [])]
            bad = [k for k in keys if AFTER_BOOT_LABELS.match(k)]
            assert not bad, f"{name}: a pod selects {bad}, a label set only after the node boots"


def test_every_ray_container_requests_its_ephemeral_storage(rendered, manifests):
    """/tmp/ray (an emptyDir) and the model caches live on the node's disk: without a request the
    scheduler ignores disk and the kubelet evicts the pod that fills it."""
    for name, docs in [*rendered.items(), ("k8s/", manifests)]:
        for pod in _pod_specs(docs):
            for c in pod["containers"]:
                if c["name"] not in ("ray-head", "ray-worker"):
                    continue
                res = c["resources"]
                assert res["requests"].get("ephemeral-storage") == res["limits"].get("ephemeral-storage"), (
                    name,
                    res,
                )
                assert res["requests"].get("ephemeral-storage"), (
                    f"{name}: {c['name']} requests no ephemeral-storage"
                )
                tmp = next((v for v in pod.get("volumes", []) if v["name"] == "ray-tmp"), None)
                if tmp and tmp["emptyDir"].get("sizeLimit"):
                    assert _bytes(res["requests"]["ephemeral-storage"]) > _bytes(tmp["emptyDir"]["sizeLimit"])


def _bytes(q: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in units.items():
        if str(q).endswith(suffix):
            return int(float(str(q)[: -len(suffix)]) * factor)
    return int(q)


@pytest.mark.parametrize("name", ["default", "gpu-values"])
def test_gpu_group(rendered, name):
    (rc,) = only(rendered[name], "RayCluster")
    (gpu,) = [g for g in rc["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu["minReplicas"] == 0 and gpu["maxReplicas"] >= 1
    pod = gpu["template"]["spec"]
    res = pod["containers"][0]["resources"]
    assert (
        res["limits"]["nvidia.com/gpu"]
        == res["requests"]["nvidia.com/gpu"]
        == ("8" if name == "gpu-values" else "1")
    )
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    if name == "gpu-values":
        assert pod["nodeSelector"] == {"karpenter.k8s.aws/instance-gpu-name": "h100"}
        # In the group's resources field (KubeRay cannot parse rayStartParams' quoted JSON).
        assert gpu["resources"] == {"accelerator_type:H100": "1"} and "resources" not in gpu["rayStartParams"]
        assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert gpu["maxReplicas"] == 4 and res["limits"]["memory"] == "1800Gi"
        assert rc["spec"]["autoscalerOptions"]["upscalingMode"] == "Aggressive"


def test_cpu_only(rendered):
    docs = rendered["cpu-only-values"]
    (rc,) = only(docs, "RayCluster")
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["cpu"]
    assert "nvidia.com/gpu" not in yaml.safe_dump(docs)
    for _, pod in pod_specs(rc):
        assert "envFrom" not in pod["containers"][0]  # s3.credentials: none


def test_groups_are_labelled_by_kind_so_cpu_work_keeps_off_gpu_nodes(rendered):
    """pairaug.io/node-kind on every worker group, from its GPUs (the jobs' CPU work selects !gpu,
    pairaug_ray/runtime.py); without a CPU group the GPU groups stay unlabelled, since CPU stages
    then have nowhere else to run; a user's rayLabels cannot take the key over."""

    def kinds(docs: list[dict]) -> dict[str, str | None]:
        (rc,) = only(docs, "RayCluster")
        return {
            g["groupName"]: (g.get("labels") or {}).get("pairaug.io/node-kind")
            for g in rc["spec"]["workerGroupSpecs"]
        }

    assert kinds(rendered["default"]) == {"cpu": "cpu", "gpu": "gpu"}
    assert kinds(rendered["cpu-only-values"]) == {"cpu": "cpu"}
    assert kinds(render("--set", "cpuWorkers.enabled=false")) == {"gpu": None}
    assert kinds(render("--set", "cpuWorkers.maxReplicas=0", "--set", "cpuWorkers.replicas=0")) == {
        "cpu": "cpu",
        "gpu": None,
    }
    refused = helm(
        "template", "p", str(CHART), "--set", "gpuWorkers.rayLabels.pairaug\\.io/node-kind=cpu", check=False
    )
    assert refused.returncode and "gpuWorkers.rayLabels sets pairaug.io/node-kind" in refused.stderr


def test_irsa_and_pipeline_configs(rendered):
    docs = rendered["gpu-values"]
    (sa,) = only(docs, "ServiceAccount")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].startswith("arn:aws:iam::")
    (cm,) = only(docs, "ConfigMap")
    (rc,) = only(docs, "RayCluster")
    for where, pod in pod_specs(rc):
        assert pod["serviceAccountName"] == sa["metadata"]["name"], where
        (vol,) = [v for v in pod["volumes"] if v["name"] == "pipeline-configs"]
        assert vol["configMap"]["name"] == cm["metadata"]["name"]
        assert {"name": "pipeline-configs", "mountPath": "/etc/pairaug/configs", "readOnly": True} in pod[
            "containers"
        ][0]["volumeMounts"]
        env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
        assert env["AWS_REGION"] == "us-east-1"
    # The ConfigMap holds valid pipeline configs (and, by the config's own rules, no secrets).
    from pairaug_ray.config import parse_config

    for file, text in cm["data"].items():
        cfg = parse_config(yaml.safe_load(text), file)
        assert cfg.run.output_dir.startswith("s3://")


def test_secrets_by_reference(rendered):
    docs = rendered["external-s3-secret-values"]
    assert not only(docs, "ServiceAccount")  # serviceAccount.create: false: an existing account is used
    (rc,) = only(docs, "RayCluster")
    assert rc["spec"]["authOptions"] == {"mode": "token", "secretName": "pairaug-ray-token"}
    for where, pod in pod_specs(rc):
        assert pod["serviceAccountName"] == "pairaug-runner"
        assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
        c = pod["containers"][0]
        assert c["envFrom"] == [{"secretRef": {"name": "pairaug-s3"}}], where
        env = {e["name"]: e for e in c["env"]}
        assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio.storage.svc.cluster.local:9000"
        assert env["OPENAI_API_KEY"] == {
            "name": "OPENAI_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "pairaug-openai", "key": "api-key"}},
        }
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    # The RayJob reuses the long-lived cluster instead of making its own.
    (job,) = only(docs, "RayJob")
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": rc["metadata"]["name"]}
    assert "rayClusterSpec" not in job["spec"] and "shutdownAfterJobFinishes" not in job["spec"]
    assert job["spec"]["entrypoint"] == "pairaug augment --config s3://pairaug-configs/augment.yaml"


def test_rayjob_mode(rendered):
    docs = rendered["rayjob-values"]
    assert not only(docs, "RayCluster")
    jobs = {j["metadata"]["name"]: j["spec"] for j in only(docs, "RayJob")}
    assert set(jobs) == {"pairaug-augment", "pairaug-train", "pairaug-evaluate"}
    for name, spec in jobs.items():
        stage = name.removeprefix("pairaug-")
        assert spec["entrypoint"].startswith(f"pairaug {stage} --config ")
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] == 3600
        assert spec["activeDeadlineSeconds"] == 86400 and spec["submissionMode"] == "K8sJobMode"
        assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"env_vars": {"HF_HUB_OFFLINE": "1"}}
        assert spec["rayClusterSpec"]["enableInTreeAutoscaling"] is True
        assert spec["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    assert jobs["pairaug-augment"]["backoffLimit"] == 2
    assert jobs["pairaug-train"]["backoffLimit"] == 0  # per-job override of jobs.defaults, even to 0
    assert jobs["pairaug-augment"]["entrypoint"].endswith("--set generate.max_actors=8")
    # InterAug and IntraAug each run an actor pool of up to max_actors one-GPU actors: the demand is
    # twice max_actors, and the job's GPU group must be able to provide it.
    augment = jobs["pairaug-augment"]
    (gpu,) = [g for g in augment["rayClusterSpec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    per_pod = int(gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"])
    max_actors = int(augment["entrypoint"].rsplit("generate.max_actors=", 1)[1].split()[0])
    assert 2 * max_actors <= gpu["maxReplicas"] * per_pod
    assert (
        jobs["pairaug-evaluate"]["entrypoint"]
        == "pairaug evaluate --config s3://pairaug-runs/configs/evaluate.yaml"
    )


def test_long_names_are_truncated(crd_validators):
    release = "a-very-long-release-name-for-the-radiology-team-xyz"  # Helm allows up to 53
    docs = render(
        "--set",
        "jobs.evaluate.enabled=true,jobs.evaluate.config=/etc/pairaug/configs/a.yaml",
        "--set",
        "jobs.augment.enabled=true,jobs.augment.config=/etc/pairaug/configs/a.yaml",
        "--set-string",
        "pipelineConfigs.files.a\\.yaml=run: {}",
        release=release,
    )
    check_objects(docs, crd_validators)
    names = {d["kind"]: d["metadata"]["name"] for d in docs}
    assert len(names["RayCluster"]) == 53
    jobs = [d["metadata"]["name"] for d in only(docs, "RayJob")]
    assert [j.rsplit("-", 1)[1] for j in jobs] == ["augment", "evaluate"] and all(len(j) <= 47 for j in jobs)
    assert names["ConfigMap"].endswith("-configs") and len(names["ConfigMap"]) <= 63


def test_notes_print_port_forward_and_submit(tmp_path):
    """NOTES.txt, rendered through a copy of the chart that exposes it as a ConfigMap."""
    chart = tmp_path / "pairaug"
    shutil.copytree(CHART, chart)
    notes = (chart / "templates" / "NOTES.txt").read_text()
    (chart / "templates" / "NOTES.txt").unlink()
    (chart / "templates" / "_notes.tpl").write_text(
        '{{- define "test.notes" -}}\n' + notes + "\n{{- end -}}\n"
    )
    (chart / "templates" / "notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data: {notes: {{ include "test.notes" . | quote }}}\n'
    )
    out = helm(
        "template", "pairaug", str(chart), "-n", "team-a", "--show-only", "templates/notes.yaml"
    ).stdout
    text = yaml.safe_load(out)["data"]["notes"]
    assert "kubectl -n team-a port-forward svc/pairaug-head-svc 8265:8265" in text
    assert "kubectl -n team-a get secret pairaug -o jsonpath='{.data.auth_token}'" in text
    assert "pairaug submit --address http://127.0.0.1:8265 -- " in text
    assert "ray job submit --address http://127.0.0.1:8265 -- pairaug augment" in text


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "gpuWorkers.gpuPerPod=4"], "gpuPerPod"),  # unknown key (a typo)
        (["--set", "surprise=1"], "surprise"),
        (["--set-string", "gpuWorkers.maxReplicas=two"], "gpuWorkers.maxReplicas"),  # wrong type
        (["--set", "autoscaler.idleTimeoutSeconds=ten"], "autoscaler.idleTimeoutSeconds"),
        (["--set", "image.tag=latest"], "image.tag"),
        (["--set", "s3.credentials=secret"], "existingSecret"),
        (
            ["--set", "env[0].name=OPENAI_API_KEY", "--set", "env[0].value=sk-not-here"],
            "env OPENAI_API_KEY looks like a secret",
        ),
        (["--set", "head.objectStoreMemory=8Gi"], "head.objectStoreMemory (8Gi) must not exceed"),
        (
            ["--set", "gpuWorkers.tmpSize=60Gi"],
            "gpuWorkers.tmpSize (60Gi) must be below gpuWorkers.resources.ephemeralStorage (60Gi)",
        ),
        (
            [
                "--set",
                "jobs.train.enabled=true,jobs.train.config=s3://b/t.yaml,jobs.defaults.useExistingCluster=true,"
                "cluster.enabled=false",
            ],
            "useExistingCluster needs cluster.enabled",
        ),
        (["--set", "readerStudy.enabled=true"], "readerStudy.config must name"),
        (
            ["--set", "readerStudy.enabled=true,readerStudy.config=/etc/pairaug/configs/demo.yaml"],
            'readerStudy.config is /etc/pairaug/configs/demo.yaml, but pipelineConfigs.files has no "demo.yaml"',
        ),
        (["--set", "readerStudy.url=ftp://x"], "readerStudy.url"),
        (
            ["--set", "jobs.augment.enabled=true"],
            'jobs.augment.config is /etc/pairaug/configs/augment.yaml, but pipelineConfigs.files has no "augment.yaml"',
        ),
    ],
)
def test_bad_values_are_rejected_naming_the_key(args, expected):
    proc = helm("template", "pairaug", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert expected in proc.stderr, proc.stderr


def test_values_yaml_documents_every_key():
    """Every key of values.yaml has a comment above it, beside it or (a section) right below it."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented = []
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)([A-Za-z][\w.]*):", line)
        if not m:
            continue
        above = lines[i - 1].strip() if i else ""
        below = lines[i + 1].strip() if i + 1 < len(lines) else ""
        in_list_item = above.startswith("- ")  # e.g. the value of an env entry
        if not (above.startswith("#") or "#" in line or below.startswith("#") or in_list_item):
            undocumented.append(line.strip())
    assert not undocumented, f"undocumented keys in values.yaml: {undocumented}"


# --- k8s/: plain manifests -------------------------------------------------------------------------------


def test_plain_manifests_are_the_charts_rendering(tmp_path):
    """k8s/serviceaccount.yaml and k8s/rayjob-*.yaml are `make k8s`'s rendering of the chart: a change
    to the chart or to k8s/values.yaml that is not rendered into them fails here."""
    import sys

    script = [sys.executable, str(REPO / ".ci" / "render_k8s.py"), "--helm", str(HELM), "--check"]
    proc = subprocess.run(script, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    # The check can fail: a hand edit of a copy is found.
    for f in K8S.glob("*.yaml"):
        shutil.copy(f, tmp_path / f.name)
    edited = tmp_path / "rayjob-train.yaml"
    edited.write_text(edited.read_text().replace("backoffLimit: 1", "backoffLimit: 5"))
    proc = subprocess.run([*script, "--dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 1 and "+  backoffLimit: 1" in proc.stdout and "make k8s" in proc.stderr


def test_plain_manifests_validate(manifests, crd_validators):
    kinds = sorted(d["kind"] for d in manifests)
    assert kinds.count("RayJob") == 3 and kinds.count("RayService") == 1
    check_objects(manifests, crd_validators)
    check_security(manifests)
    for job in only(manifests, "RayJob"):
        stage = job["metadata"]["name"].removeprefix("pairaug-")
        spec = job["spec"]
        assert spec["entrypoint"] == f"pairaug {stage} --config s3://YOUR-BUCKET/configs/{stage}.yaml"
        assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
        assert spec["activeDeadlineSeconds"] > 0 and spec["backoffLimit"] >= 0
        cluster = spec["rayClusterSpec"]
        assert cluster["enableInTreeAutoscaling"] and cluster["autoscalerOptions"]["version"] == "v2"
        assert cluster["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
        (gpu,) = [g for g in cluster["workerGroupSpecs"] if g["groupName"] == "gpu"]
        pod = gpu["template"]["spec"]
        assert (
            gpu["minReplicas"] == 0 and pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        )
        assert pod["tolerations"]
    (svc,) = only(manifests, "RayService")
    serve = yaml.safe_load(svc["spec"]["serveConfigV2"])
    (app,) = serve["applications"]
    assert app["import_path"] == "ray.serve.llm:build_openai_app"
    # The base_url the manifest documents is one the pipeline accepts (cluster-internal, no key).
    from pairaug_ray.config import parse_config

    header = (K8S / "rayservice-vllm.yaml").read_text().split("apiVersion:")[0]
    snippet = "\n".join(
        line[4:] for line in header.splitlines() if line.startswith("#   ") and "kubectl" not in line
    )
    cfg = parse_config(yaml.safe_load(snippet), "rayservice-vllm.yaml header")
    assert (
        cfg.rewrite.openai.base_url
        == f"http://{svc['metadata']['name']}-serve-svc.llm.svc.cluster.local:8000/v1"
    )
    assert cfg.rewrite.openai.model == app["args"]["llm_configs"][0]["model_loading_config"]["model_id"]
    # The real-data template points at the same service and model.
    real = parse_config(yaml.safe_load((REPO / "configs" / "mimic-cxr.yaml").read_text()), "mimic-cxr.yaml")
    assert (real.rewrite.openai.base_url, real.rewrite.openai.model) == (
        cfg.rewrite.openai.base_url,
        cfg.rewrite.openai.model,
    )


def test_quick_start_of_the_docs_renders(crd_validators, tmp_path):
    """docs/deployment.md's values file and install command, as written there."""
    doc = (REPO / "docs" / "deployment.md").read_text()
    values = re.search(r"cat > my-values.yaml <<EOF\n(.*?)\nEOF\n", doc, re.S).group(1)
    assert (
        "helm install pairaug ./helm/pairaug -n \"$NS\" -f my-values.yaml \\\n    --set-file 'pipelineConfigs.files.demo\\.yaml=configs/demo.yaml'"
        in doc
    )
    values_file = tmp_path / "my-values.yaml"
    values_file.write_text(values.replace("$REGISTRY", "registry.example.com/ml"))
    demo = f"pipelineConfigs.files.demo\\.yaml={REPO / 'configs' / 'demo.yaml'}"
    docs = render("-f", str(values_file), "--set-file", demo)
    check_objects(docs, crd_validators)
    check_security(docs)
    (rc,) = only(docs, "RayCluster")
    assert rc["metadata"]["name"] == "pairaug"  # svc/pairaug-head-svc and secret/pairaug in the docs
    assert [g["groupName"] for g in rc["spec"]["workerGroupSpecs"]] == ["cpu"]
    (cm,) = only(docs, "ConfigMap")
    assert cm["data"]["demo.yaml"].strip() == (REPO / "configs" / "demo.yaml").read_text().strip()
    # The RayJob-mode example of the docs.
    jobs = render(
        "-f",
        str(CHART / "values.yaml"),
        "--set",
        "cluster.enabled=false",
        "--set",
        "jobs.augment.enabled=true",
        "--set",
        "jobs.augment.config=s3://bucket/configs/augment.yaml",
        release="pairaug-exp1",
    )
    assert [d["metadata"]["name"] for d in only(jobs, "RayJob")] == ["pairaug-exp1-augment"]


def test_operator_grade_options(rendered):
    """ci/operator-values.yaml: GCS fault tolerance on an external Redis (password by reference), a
    PDB for the head, do-not-disrupt on the head and GPU pods, priority classes, a spot GPU group
    preferred over the on-demand one, EFA and NVMe, Kueue and a NetworkPolicy."""
    docs = rendered["operator-values"]
    (rc,) = only(docs, "RayCluster")
    spec = rc["spec"]
    ft = spec["gcsFaultToleranceOptions"]
    assert ft["redisAddress"] == "redis-master.redis.svc.cluster.local:6379"
    assert ft["redisPassword"] == {
        "valueFrom": {"secretKeyRef": {"name": "pairaug-redis", "key": "redis-password"}}
    }
    assert ft["externalStorageNamespace"] == "pairaug-prod"
    (pdb,) = only(docs, "PodDisruptionBudget")
    assert pdb["spec"] == {
        "maxUnavailable": 0,
        "unhealthyPodEvictionPolicy": "AlwaysAllow",
        "selector": {"matchLabels": {"ray.io/cluster": rc["metadata"]["name"], "ray.io/node-type": "head"}},
    }
    by_name = dict(groups(spec))
    assert set(by_name) == {"head", "cpu", "gpu-ondemand", "gpu-spot", "cpu-highmem", "drivers"}
    for name, g in by_name.items():
        annotations = g["template"]["metadata"].get("annotations", {})
        held = annotations.get("karpenter.sh/do-not-disrupt") == "true"
        assert held == (name in ("head", "gpu-ondemand", "gpu-spot", "drivers")), name
        assert held == (annotations.get("cluster-autoscaler.kubernetes.io/safe-to-evict") == "false")
        assert g["template"]["spec"]["imagePullSecrets"] == [{"name": "registry-example-com"}]
    assert by_name["head"]["template"]["spec"]["priorityClassName"] == "ml-critical"
    spot, ondemand = by_name["gpu-spot"], by_name["gpu-ondemand"]
    assert spot["priority"] > ondemand["priority"] and (
        spot["idleTimeoutSeconds"],
        ondemand["idleTimeoutSeconds"],
    ) == (90, 120)
    # The group's own labels, and the kind the chart derives from its GPUs (CPU work keeps off it).
    assert spot["labels"] == {"ray.io/market-type": "spot", "pairaug.io/node-kind": "gpu"}
    assert by_name["cpu-highmem"]["labels"]["pairaug.io/node-kind"] == "cpu"
    for g in (spot, ondemand):
        res = g["template"]["spec"]["containers"][0]["resources"]
        assert res["limits"]["vpc.amazonaws.com/efa"] == "4" and res["limits"]["nvidia.com/gpu"] == "8"
    od = ondemand["template"]["spec"]
    assert {"name": "model-cache", "mountPath": "/models"} in od["containers"][0]["volumeMounts"]
    # NVMe through a generic ephemeral volume (fsGroup makes it writable; Pod Security allows it).
    assert any(v["name"] == "model-cache" and "ephemeral" in v for v in od["volumes"])
    assert not any("hostPath" in v for _, pod in pod_specs(rc) for v in pod["volumes"])
    assert {"secretRef": {"name": "pairaug-hf-token"}} in od["containers"][0]["envFrom"]
    highmem = by_name["cpu-highmem"]["template"]["spec"]["containers"][0]
    assert (
        "nvidia.com/gpu" not in highmem["resources"]["limits"]
        and highmem["resources"]["limits"]["memory"] == "256Gi"
    )
    assert highmem["image"] == "registry.example.com/ml/pairaug-data:0.1.0"
    # Presets: the spot group has the on-demand group's values where it sets none (its EFA, mounts).
    spot_pod = spot["template"]["spec"]
    assert spot_pod["containers"][0]["resources"]["limits"]["memory"] == "1000Gi"
    assert {"name": "model-cache", "mountPath": "/models"} in spot_pod["containers"][0]["volumeMounts"]
    assert spot["resources"] == {"accelerator_type:H100": "1", "nvme": "1"}
    assert "resources" not in spot["rayStartParams"]
    assert spot_pod["priorityClassName"] == "ml-batch-spot"
    assert spot_pod["nodeSelector"] == {"karpenter.sh/capacity-type": "spot"}
    assert rc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "ml-team-a"
    # Kueue admits the autoscaling cluster and job as elastic jobs (Kueue >= 0.18).
    assert rc["metadata"]["annotations"] == {"kueue.x-k8s.io/elastic-job": "true"}
    (job,) = only(docs, "RayJob")
    assert (
        job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "ml-team-a"
        and job["spec"]["suspend"] is True
        and job["metadata"]["annotations"] == {"kueue.x-k8s.io/elastic-job": "true"}
    )
    # The drivers on the protected driver group, and the Redis namespace on the long-lived cluster only.
    assert job["spec"]["entrypointNumCpus"] == 1
    assert json.loads(job["spec"]["entrypointResources"]) == {"pairaug-driver": 1}
    assert by_name["drivers"]["resources"] == {"GPU": "0", "pairaug-driver": "4"}
    assert "externalStorageNamespace" not in job["spec"]["rayClusterSpec"]["gcsFaultToleranceOptions"]
    (policy,) = [p for p in only(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-ray")]
    own, chosen, prometheus = policy["spec"]["ingress"]
    assert "ports" not in own  # the cluster's pods reach each other on every port
    assert {p["port"] for p in chosen["ports"]} == {6379, 8265, 10001, 8000, 8080, 44217, 44227}
    namespaces = [
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for s in chosen["from"]
    ]
    assert namespaces == ["pairaug", "kuberay-system", "ml-notebooks"]
    assert [p["port"] for p in prometheus["ports"]] == [8080, 44217, 44227]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "gcsFaultTolerance.enabled=true"], "gcsFaultTolerance.redisAddress"),
        (["--set", "gcsFaultTolerance.redisAddress=redis"], "gcsFaultTolerance.redisAddress"),  # no port
        (
            ["--set", "extraWorkerGroups[0].groupName=cpu", "-f", str(CHART / "ci" / "operator-values.yaml")],
            'groupName "cpu" is already the name of cpuWorkers',
        ),
        (
            ["--set", "gpuWorkers.env[0].name=HF_TOKEN", "--set", "gpuWorkers.env[0].value=hf_x"],
            "env HF_TOKEN looks like a secret",
        ),
        (["--set", "gpuWorkers.envFrom[0].configMapRef.name=x"], "configMapRef"),
        (["--set", "kueue.queueName=Team A"], "kueue.queueName"),
        # Keys renamed (or spelled as KubeRay's ray-cluster chart spells them) name the key to use.
        (["--set", "additionalWorkerGroups.spot.maxReplicas=2"], "renamed: use extraWorkerGroups"),
        (["--set", "worker.replicas=2"], "renamed: use cpuWorkers and gpuWorkers"),
        (["--set", "head.enableInTreeAutoscaling=true"], "renamed: use autoscaler.enabled"),
        (["--set", "gpuWorkers.containerEnv[0].name=X"], "renamed: use gpuWorkers.env"),
        (
            ["--set", "gcsFaultTolerance.redisPassword=hunter2"],
            "renamed: use gcsFaultTolerance.redisPasswordSecret",
        ),
    ],
)
def test_bad_operator_values_are_rejected_naming_the_key(args, expected):
    proc = helm("template", "pairaug", str(CHART), *args, check=False)
    assert proc.returncode != 0, f"helm accepted {args}"
    assert expected in proc.stderr, proc.stderr


def test_monitoring_objects_and_the_dashboards_queries(rendered):
    """The PodMonitor scrapes every Ray pod's metrics port; the dashboard ConfigMap carries
    dashboards/pairaug.json, every panel of which queries only metrics the pipeline exports
    (pairaug_ray/metrics.py, as Ray's metrics agent names them), and each of those is on a panel."""
    from pairaug_ray import metrics

    docs = rendered["operator-values"]
    (monitor,) = only(docs, "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    # Every agent's port, and the head's autoscaler and dashboard metrics; each series gets its cluster.
    endpoints = monitor["spec"]["podMetricsEndpoints"]
    assert [e["port"] for e in endpoints] == ["metrics", "as-metrics", "dash-metrics"]
    assert all(e["relabelings"][0]["targetLabel"] == "ray_io_cluster" for e in endpoints)
    (rc,) = only(docs, "RayCluster")
    for name, g in groups(rc["spec"]):
        ports = {p["name"]: p["containerPort"] for p in g["template"]["spec"]["containers"][0]["ports"]}
        assert ports["metrics"] == 8080, name
        assert ("as-metrics" in ports, ports.get("dash-metrics")) == (
            (True, 44227) if name == "head" else (False, None)
        )
    (policy,) = [p for p in only(docs, "NetworkPolicy") if p["metadata"]["name"].endswith("-ray")]
    scrape_ports = {p["port"] for rule in policy["spec"]["ingress"] for p in rule.get("ports", [])}
    assert {8080, 44217, 44227} <= scrape_ports
    # Without the Prometheus Operator's CRDs the PodMonitor is left out (and NOTES says so), not an error.
    bare = helm("template", "pairaug", str(CHART), "-f", str(CHART / "ci" / "operator-values.yaml"))
    assert "kind: PodMonitor" not in bare.stdout
    notes = helm(
        "template",
        "pairaug",
        str(CHART),
        "-f",
        str(CHART / "ci" / "operator-values.yaml"),
        "--show-only",
        "templates/NOTES.txt",
        check=False,
    )
    assert notes.returncode != 0 or "no PodMonitor CRD" in notes.stdout
    head_env = {
        e["name"]: e.get("value")
        for e in rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert head_env["RAY_GRAFANA_IFRAME_HOST"] == "https://grafana.example.com"
    assert head_env["RAY_PROMETHEUS_HOST"].endswith(":9090")
    boards = {
        d["metadata"]["name"]: d for d in only(docs, "ConfigMap") if "-dashboard" in d["metadata"]["name"]
    }
    assert all(b["metadata"]["labels"]["grafana_dashboard"] == "1" for b in boards.values())
    (board,) = [b for name, b in boards.items() if name.endswith("-dashboard")]
    dashboard = json.loads(board["data"]["pairaug.json"])
    assert dashboard == json.loads((CHART / "dashboards" / "pairaug.json").read_text())
    # Ray's own dashboards (the cluster, Ray Data, Ray Train), so that the Ray dashboard's panels fill.
    ray_boards = {
        key: json.loads(b["data"][key])
        for b in boards.values()
        for key in b["data"]
        if key.startswith("ray-")
    }
    assert {k: v["uid"] for k, v in ray_boards.items()} == {
        "ray-default.json": "rayDefaultDashboard",
        "ray-data.json": "rayDataDashboard",
        "ray-train.json": "rayTrainDashboard",
    }
    assert all(
        len(b["data"][k]) < 900_000 for b in boards.values() for k in b["data"]
    )  # a ConfigMap holds 1 MiB
    import sys

    fresh = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "ray_dashboards.py"), "--check"], capture_output=True, text=True
    )
    assert fresh.returncode == 0, fresh.stderr  # generated by the Ray installed: refresh after upgrading Ray
    # Counters restart at 0 on every node: panels read them through rate or increase, never raw; and
    # every query selects the dashboard's cluster and session.
    for panel in dashboard["panels"]:
        expr = " ".join(t["expr"] for t in panel["targets"])
        for counter in re.findall(r"\b(ray_[a-z_]+_total)\b[^)]*", expr):
            assert re.search(rf"(rate|increase)\({counter}\b", expr), (panel["title"], expr)
        assert expr.count('ray_io_cluster=~"$cluster"') == expr.count("ray_pairaug"), panel["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["datasource", "cluster", "session"]
    exported = {
        metrics.PROMETHEUS_PREFIX + name + ("_total" if kind == "counter" else "")
        for name, (kind, _, _) in metrics.METRICS.items()
    }
    queried = set()
    for panel in dashboard["panels"]:
        names = set(re.findall(r"\b(ray_[a-z_]+)\b", " ".join(t["expr"] for t in panel["targets"]))) - {
            "ray_io_cluster"  # a label (the PodMonitor's relabelling), not a metric
        }
        assert names and names <= exported, (panel["title"], names - exported)
        queried |= names
    assert queried == exported


def test_reader_study_app(rendered):
    """readerStudy (docs/reader-study.md): a Deployment that draws the study once and serves it, a
    ClusterIP Service and nothing that routes from outside, the database URL by reference, pods the
    Ray NetworkPolicy does not select and a policy of their own; off by default."""
    assert not [d for d in rendered["default"] if "reader-study" in d["metadata"]["name"]]
    docs = rendered["operator-values"]
    study = {d["kind"]: d for d in docs if d["metadata"]["name"].endswith("-reader-study")}
    assert set(study) == {"Deployment", "Service", "PersistentVolumeClaim", "NetworkPolicy"}
    assert not [d for d in docs if d["kind"] in ("Ingress", "HTTPRoute", "Route", "Secret")]
    assert study["Service"]["spec"]["type"] == "ClusterIP"
    pod = study["Deployment"]["spec"]["template"]
    assert (
        study["Deployment"]["spec"]["replicas"] == 1
        and study["Deployment"]["spec"]["strategy"]["type"] == "Recreate"
    )
    assert pod["spec"]["automountServiceAccountToken"] is False
    draw, serve = pod["spec"]["initContainers"][0], pod["spec"]["containers"][0]
    assert "test -f /study/study.json ||" in draw["command"][2]  # a drawn study (and its answers) is kept
    assert draw["args"][:2] == ["--config", "s3://pairaug-prod/configs/augment.yaml"]
    assert draw["args"][-3:] == ["--cases-per-task", "50", "--include-pruned"]
    assert serve["command"][:4] == ["pairaug", "reader-study", "serve", "/study"]
    for c in (draw, serve):
        env = {e["name"]: e for e in c["env"]}
        assert env["READER_STUDY_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "pairaug-reader-study-db",
            "key": "url",
        }
        assert "--database-url-env" in c.get("args", [])
        assert "OPENAI_API_KEY" not in env  # no credentials it has no use for
    assert serve["readinessProbe"]["httpGet"]["path"] == "/healthz"
    ray_policy = next(
        d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-ray")
    )
    selects = ray_policy["spec"]["podSelector"]["matchLabels"]
    labels = pod["metadata"]["labels"]
    assert not all(labels.get(k) == v for k, v in selects.items())  # the Ray policy leaves it alone
    own = study["NetworkPolicy"]["spec"]
    assert own["podSelector"]["matchLabels"] == labels
    assert own["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8800}]
    allowed = {
        f["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for f in own["ingress"][0]["from"]
    }
    assert allowed == {"pairaug", "ingress-nginx"}
