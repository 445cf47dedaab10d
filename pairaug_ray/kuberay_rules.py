"""What the KubeRay v1.7 operator refuses beyond its CRD schemas, checked before anything is applied.

The API server checks RayCluster, RayJob and RayService objects against the CRD schemas only
(tests/test_helm.py does that offline). The operator then validates every object again in Go
before it reconciles it, and an object that breaks one of those rules is accepted by
`kubectl apply` yet never runs: a RayJob ends as jobDeploymentStatus ValidationFailed, a RayCluster
or RayService gets a warning event and is left alone. This module reimplements those rules, for the
fields this project renders or could render, as plain functions over manifest dicts:

    violations(obj)             -> list of messages, [] when the operator would accept obj
    raycluster_violations(obj), rayjob_violations(obj), rayservice_violations(obj)
    token_secret_name(cluster)  -> the name of the auth-token Secret the operator makes for a cluster

Each message names the field path, the rule and where upstream it lives, e.g.
"spec.backoffLimit: must be 0 with spec.clusterSelector (KubeRay v1.7
ray-operator/controllers/ray/utils/validation.go, ValidateRayJobSpec)". Unlike the operator, which
stops at the first failed rule, every broken rule is reported. No Ray and no Kubernetes client.

Upstream read (ray-project/kuberay, Apache-2.0; reimplemented here, not copied):

* ray-operator/controllers/ray/utils/validation.go: ValidateRayClusterMetadata/Spec/UpgradeOptions,
  ValidateRayJobMetadata/Spec (and validateDeletionConfiguration, validateDeletionRules,
  validateLegacyDeletionPolicies), ValidateRayServiceMetadata/Spec, ValidateClusterUpgradeOptions
  and the helpers they call (validateRayGroupResources/Labels, validateWorkerGroupIdleTimeout,
  validateWorkerGroupPriority, validateGcsFaultToleranceBackend, validateInitializingTimeout). The
  version read is the one whose features are exactly those of the v1.7.0 CRDs kept in
  tests/fixtures/kuberay-crds (worker-group priority, preRunningDeadlineSeconds, networkPolicy,
  tlsOptions, historyServerOptions, the rocksdb GCS fault-tolerance backend, enableK8sTokenAuth),
  including the clusterSelector/backoffLimit rule of kuberay PR #4527 (Feb 2026); v1.7.0 itself was
  cut in Aug 2026 (kuberay PR #5176). The code index it was read from stores files by content, so
  no commit hash can be named for it.
* ray-operator/controllers/ray/utils/constant.go: MaxRayClusterNameLength = 53,
  MaxRayJobNameLength = MaxRayServiceNameLength = 53 - 6 (the operator appends "-xxxxx").
* ray-operator/controllers/ray/utils/util.go: CheckName, IsAutoscalingEnabled,
  IsAutoscalingV2Enabled, IsGCSFaultToleranceEnabled, IsAuthEnabled, IsIncrementalUpgradeEnabled.
* ray-operator/controllers/ray/common/pod.go: SetContainerTokenAuthEnvVars (the pods read the
  token from the Secret named CheckName(<cluster>) unless authOptions.secretName is set).
* ray-operator/pkg/features/features.go: the default feature gates (FEATURE_GATES below).

Feature gates: the rules assume the operator runs with its default gates (the chart's docs install
it with `helm install kuberay-operator ... --version 1.7.0` and no --feature-gates). Change
FEATURE_GATES if yours runs with others.

Refreshing for a newer KubeRay: read validation.go at the new tag (the functions above and anything
new they call), compare it rule by rule with the functions here (each docstring names its upstream
function), add or change one small function per rule, update UPSTREAM and the version in the
messages, refresh tests/fixtures/kuberay-crds (its README), and run
`pytest tests/test_kuberay_rules.py tests/test_helm.py`.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import pairwise

UPSTREAM = "KubeRay v1.7"
VALIDATION = "ray-operator/controllers/ray/utils/validation.go"

MAX_RAYCLUSTER_NAME = 53  # constant.go MaxRayClusterNameLength: 63 - len("-serve-svc")
MAX_RAYJOB_NAME = MAX_RAYCLUSTER_NAME - 6  # constant.go MaxRayJobNameLength
MAX_RAYSERVICE_NAME = MAX_RAYCLUSTER_NAME - 6  # constant.go MaxRayServiceNameLength
MAX_TOKEN_SECRET_NAME = 50  # util.go CheckName: maxLength

# features.go defaults of v1.7 (beta gates on, alpha gates off).
FEATURE_GATES = {
    "RayJobDeletionPolicy": True,
    "RayServiceIncrementalUpgrade": True,
    "RayClusterNetworkPolicy": False,
    "RayClusterMTLS": False,
    "RayClusterHistoryServer": False,
    "GCSFaultToleranceEmbeddedStorage": False,
}

DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
GO_DURATION_PART = r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)"
GO_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
RAY_START_RESOURCE_PARAMS = ("num-cpus", "num-gpus", "memory", "resources")
AUTOSCALER_V2_ENV = "RAY_enable_autoscaler_v2"


def _msg(path: str, rule: str, function: str, source: str = VALIDATION) -> str:
    return f"{path}: {rule} ({UPSTREAM} {source}, {function})"


# --- reading a manifest ------------------------------------------------------------------------------


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _head(spec: dict) -> dict:
    return _dict(spec.get("headGroupSpec"))


def _workers(spec: dict, at: str) -> list[tuple[str, dict]]:
    """(path, worker group) for every worker group of a cluster spec."""
    return [
        (f"{at}.workerGroupSpecs[{i}]", _dict(g)) for i, g in enumerate(_list(spec.get("workerGroupSpecs")))
    ]


def _groups(spec: dict, at: str) -> list[tuple[str, str, dict]]:
    """(path, name as the operator says it, group) for the head and every worker group."""
    return [(f"{at}.headGroupSpec", "Head", _head(spec))] + [
        (path, str(g.get("groupName", "")), g) for path, g in _workers(spec, at)
    ]


def _pod_spec(group: dict) -> dict:
    return _dict(_dict(group.get("template")).get("spec"))


def _head_env(spec: dict) -> dict[str, str]:
    """Name -> literal value of the env of the head's Ray container (the first one)."""
    containers = _list(_pod_spec(_head(spec)).get("containers"))
    env = _list(_dict(containers[0]).get("env")) if containers else []
    return {e["name"]: str(e.get("value", "")) for e in env if isinstance(e, dict) and "name" in e}


def _autoscaling(spec: dict) -> bool:
    """util.go IsAutoscalingEnabled."""
    return spec.get("enableInTreeAutoscaling") is True


def _autoscaler_v2(spec: dict) -> bool:
    """util.go IsAutoscalingV2Enabled: autoscalerOptions.version is v2 (the env var counts separately)."""
    return _dict(spec.get("autoscalerOptions")).get("version") == "v2"


def _v2_by_option_or_env(spec: dict) -> bool:
    return _autoscaler_v2(spec) or _head_env(spec).get(AUTOSCALER_V2_ENV) in ("1", "true")


def _token_auth(spec: dict) -> bool:
    """util.go IsAuthEnabled."""
    return _dict(spec.get("authOptions")).get("mode") == "token"


def _k8s_token_auth(spec: dict) -> bool:
    return _dict(spec.get("authOptions")).get("enableK8sTokenAuth") is True


def _int(value):
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _ray_version(text) -> tuple[int, ...] | None:
    """k8s.io/apimachinery version.ParseGeneric: 'v'?, two or more dot-separated numbers, any suffix."""
    m = re.match(r"^\s*v?(\d+(?:\.\d+)+)", str(text or ""))
    if not m:
        return None
    parts = m.group(1).split(".")
    if parts[0].startswith("0") and parts[0] != "0":
        return None
    return tuple(int(p) for p in parts)


def _older(version: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    width = max(len(version), len(minimum))
    return version + (0,) * (width - len(version)) < minimum + (0,) * (width - len(minimum))


def _go_duration(text: str) -> float | None:
    """Seconds of a Go duration ("90s", "1h30m", "0"), None when Go's time.ParseDuration would fail."""
    m = re.fullmatch(rf"([-+]?)((?:{GO_DURATION_PART})+|0)", text)
    if not m:
        return None
    seconds = sum(float(n) * GO_DURATION_UNITS[u] for n, u in re.findall(GO_DURATION_PART, m.group(2)))
    return -seconds if m.group(1) == "-" else seconds


def _label_key_errors(key: str) -> bool:
    """True when key is not a qualified name (apimachinery validation.IsQualifiedName)."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return True
    return not (0 < len(name) <= 63 and LABEL_NAME.match(name))


def _label_value_errors(value) -> bool:
    """True when value is not a label value (apimachinery validation.IsValidLabelValue)."""
    value = str(value)
    return len(value) > 63 or (value != "" and not LABEL_NAME.match(value))


def token_secret_name(cluster_name: str, auth_options: dict | None = None) -> str:
    """The Secret the operator generates for a token-auth RayCluster, and that its pods read the token
    from (common/pod.go SetContainerTokenAuthEnvVars, util.go CheckName): authOptions.secretName when
    set, else the cluster name cut to its last 50 characters, a leading digit or punctuation mark
    replaced by 'r'."""
    secret = _dict(auth_options).get("secretName")
    if secret or not cluster_name:
        return secret or cluster_name
    name = cluster_name[-MAX_TOKEN_SECRET_NAME:]
    if unicodedata.category(name[0]) == "Nd":  # Go unicode.IsDigit
        name = "r" + name[1:]
    if unicodedata.category(name[0]).startswith("P"):  # Go unicode.IsPunct
        name = "r" + name[1:]
    return name


# --- names -------------------------------------------------------------------------------------------


def _name(obj: dict, kind: str, limit: int, function: str) -> list[str]:
    name = str(_dict(obj.get("metadata")).get("name", ""))
    found = []
    if len(name) > limit:
        found.append(
            _msg("metadata.name", f"{kind} name {name!r} is longer than {limit} characters", function)
        )
    if not DNS1035.match(name):
        found.append(
            _msg(
                "metadata.name",
                f"{kind} name {name!r} is not a DNS-1035 label (a lowercase letter, then a-z, 0-9 or '-', "
                "not ending in '-')",
                function,
            )
        )
    return found


def raycluster_name(obj: dict) -> list[str]:
    """At most 53 characters, a DNS-1035 label (validation.go ValidateRayClusterMetadata)."""
    return _name(obj, "RayCluster", MAX_RAYCLUSTER_NAME, "ValidateRayClusterMetadata")


def rayjob_name(obj: dict) -> list[str]:
    """At most 47 characters, a DNS-1035 label (validation.go ValidateRayJobMetadata)."""
    return _name(obj, "RayJob", MAX_RAYJOB_NAME, "ValidateRayJobMetadata")


def rayservice_name(obj: dict) -> list[str]:
    """At most 47 characters, a DNS-1035 label (validation.go ValidateRayServiceMetadata)."""
    return _name(obj, "RayService", MAX_RAYSERVICE_NAME, "ValidateRayServiceMetadata")


# --- the cluster spec (RayCluster spec, RayJob spec.rayClusterSpec, RayService spec.rayClusterConfig) ---
# Each takes (cluster spec, its path, the owning object's annotations).

F_SPEC = "ValidateRayClusterSpec"


def head_has_a_container(spec: dict, at: str, annotations: dict) -> list[str]:
    """The head pod template has a container (validation.go ValidateRayClusterSpec)."""
    if _list(_pod_spec(_head(spec)).get("containers")):
        return []
    return [
        _msg(f"{at}.headGroupSpec.template.spec.containers", "the head needs at least one container", F_SPEC)
    ]


def workers_have_a_container(spec: dict, at: str, annotations: dict) -> list[str]:
    """Every worker pod template has a container (validation.go ValidateRayClusterSpec)."""
    return [
        _msg(f"{path}.template.spec.containers", "a worker group needs at least one container", F_SPEC)
        for path, g in _workers(spec, at)
        if not _list(_pod_spec(g).get("containers"))
    ]


def resources_in_one_place(spec: dict, at: str, annotations: dict) -> list[str]:
    """Group resources in rayStartParams or in `resources`, not both (validation.go validateRayGroupResources)."""
    found = []
    for path, _, g in _groups(spec, at):
        params = _dict(g.get("rayStartParams"))
        if any(params.get(k) for k in RAY_START_RESOURCE_PARAMS) and _dict(g.get("resources")):
            found.append(
                _msg(
                    f"{path}.resources",
                    "not with num-cpus/num-gpus/memory/resources in rayStartParams: use one of the two",
                    "validateRayGroupResources",
                )
            )
    return found


def labels_not_in_ray_start_params(spec: dict, at: str, annotations: dict) -> list[str]:
    """No rayStartParams 'labels': the group's `labels` replace it (validation.go validateRayGroupLabels)."""
    return [
        _msg(
            f"{path}.rayStartParams.labels",
            "not supported: use the group's labels field",
            "validateRayGroupLabels",
        )
        for path, _, g in _groups(spec, at)
        if "labels" in _dict(g.get("rayStartParams"))
    ]


def group_labels_are_labels(spec: dict, at: str, annotations: dict) -> list[str]:
    """A group's `labels` are valid label keys and values (validation.go validateRayGroupLabels)."""
    found = []
    for path, _, g in _groups(spec, at):
        for key, value in _dict(g.get("labels")).items():
            if _label_key_errors(str(key)):
                found.append(
                    _msg(f"{path}.labels", f"{key!r} is not a valid label key", "validateRayGroupLabels")
                )
            if _label_value_errors(value):
                found.append(
                    _msg(
                        f"{path}.labels.{key}",
                        f"{value!r} is not a valid label value",
                        "validateRayGroupLabels",
                    )
                )
    return found


def replica_bounds_without_autoscaler(spec: dict, at: str, annotations: dict) -> list[str]:
    """Without the autoscaler, workers set minReplicas and maxReplicas (validation.go ValidateRayClusterSpec)."""
    if _autoscaling(spec):
        return []
    return [
        _msg(path, "set both minReplicas and maxReplicas when enableInTreeAutoscaling is off", F_SPEC)
        for path, g in _workers(spec, at)
        if g.get("minReplicas") is None or g.get("maxReplicas") is None
    ]


def replicas_not_negative(spec: dict, at: str, annotations: dict) -> list[str]:
    """minReplicas and maxReplicas are not negative (validation.go ValidateRayClusterSpec)."""
    return [
        _msg(f"{path}.{key}", f"must not be negative, got {g[key]}", F_SPEC)
        for path, g in _workers(spec, at)
        for key in ("minReplicas", "maxReplicas")
        if (_int(g.get(key)) or 0) < 0
    ]


def min_not_above_max(spec: dict, at: str, annotations: dict) -> list[str]:
    """minReplicas <= maxReplicas (validation.go ValidateRayClusterSpec)."""
    found = []
    for path, g in _workers(spec, at):
        low, high = _int(g.get("minReplicas")), _int(g.get("maxReplicas"))
        if low is not None and high is not None and low > high:
            found.append(_msg(f"{path}.minReplicas", f"{low} is greater than maxReplicas {high}", F_SPEC))
    return found


def worker_idle_timeout(spec: dict, at: str, annotations: dict) -> list[str]:
    """A worker idleTimeoutSeconds is >= 0 and needs autoscaler v2 (validation.go validateWorkerGroupIdleTimeout)."""
    found = []
    for path, g in _workers(spec, at):
        timeout = _int(g.get("idleTimeoutSeconds"))
        if timeout is None:
            continue
        if timeout < 0:
            found.append(
                _msg(f"{path}.idleTimeoutSeconds", "must not be negative", "validateWorkerGroupIdleTimeout")
            )
        elif not _v2_by_option_or_env(spec):
            found.append(
                _msg(
                    f"{path}.idleTimeoutSeconds",
                    "needs autoscaler v2 (autoscalerOptions.version: v2)",
                    "validateWorkerGroupIdleTimeout",
                )
            )
    return found


def worker_priority(spec: dict, at: str, annotations: dict) -> list[str]:
    """A worker priority needs Ray >= 2.56.0 and autoscaler v2 (validation.go validateWorkerGroupPriority)."""
    found = []
    version = _ray_version(spec.get("rayVersion"))
    for path, g in _workers(spec, at):
        if not g.get("priority"):
            continue
        if version is None or _older(version, (2, 56, 0)):
            found.append(
                _msg(
                    f"{path}.priority",
                    f"needs rayVersion 2.56.0 or later, got {spec.get('rayVersion')!r}",
                    "validateWorkerGroupPriority",
                )
            )
        elif not _v2_by_option_or_env(spec):
            found.append(
                _msg(
                    f"{path}.priority",
                    "needs autoscaler v2 (autoscalerOptions.version: v2)",
                    "validateWorkerGroupPriority",
                )
            )
    return found


def ft_annotation_or_options(spec: dict, at: str, annotations: dict) -> list[str]:
    """Not both ray.io/ft-enabled and gcsFaultToleranceOptions (validation.go ValidateRayClusterSpec)."""
    if annotations.get("ray.io/ft-enabled") and spec.get("gcsFaultToleranceOptions") is not None:
        return [
            _msg(
                f"{at}.gcsFaultToleranceOptions",
                "not with the ray.io/ft-enabled annotation: use gcsFaultToleranceOptions only",
                F_SPEC,
            )
        ]
    return []


def redis_address_needs_ft(spec: dict, at: str, annotations: dict) -> list[str]:
    """RAY_REDIS_ADDRESS on the head needs GCS fault tolerance (validation.go ValidateRayClusterSpec)."""
    ft_on = str(annotations.get("ray.io/ft-enabled", "")).lower() == "true" or (
        spec.get("gcsFaultToleranceOptions") is not None
    )
    if ft_on or "RAY_REDIS_ADDRESS" not in _head_env(spec):
        return []
    return [
        _msg(
            f"{at}.headGroupSpec.template.spec.containers[0].env",
            "RAY_REDIS_ADDRESS implies GCS fault tolerance: set gcsFaultToleranceOptions",
            F_SPEC,
        )
    ]


def ft_options_own_redis_settings(spec: dict, at: str, annotations: dict) -> list[str]:
    """With gcsFaultToleranceOptions, Redis settings go there only (validation.go ValidateRayClusterSpec)."""
    if spec.get("gcsFaultToleranceOptions") is None:
        return []
    env = _head_env(spec)
    head = f"{at}.headGroupSpec"
    found = []
    if _dict(_head(spec).get("rayStartParams")).get("redis-password"):
        found.append(
            _msg(
                f"{head}.rayStartParams.redis-password", "use gcsFaultToleranceOptions.redisPassword", F_SPEC
            )
        )
    for var, field in (("REDIS_PASSWORD", "redisPassword"), ("RAY_REDIS_ADDRESS", "redisAddress")):
        if var in env:
            found.append(
                _msg(
                    f"{head}.template.spec.containers[0].env",
                    f"{var}: use gcsFaultToleranceOptions.{field}",
                    F_SPEC,
                )
            )
    if annotations.get("ray.io/external-storage-namespace"):
        found.append(
            _msg(
                "metadata.annotations.ray.io/external-storage-namespace",
                "use gcsFaultToleranceOptions.externalStorageNamespace",
                F_SPEC,
            )
        )
    return found


def ft_backend(spec: dict, at: str, annotations: dict) -> list[str]:
    """rocksdb GCS FT needs its gate; storage is for rocksdb (validation.go validateGcsFaultToleranceBackend)."""
    options = spec.get("gcsFaultToleranceOptions")
    if not isinstance(options, dict):
        return []
    path = f"{at}.gcsFaultToleranceOptions"
    if options.get("backend") == "rocksdb":
        if not FEATURE_GATES["GCSFaultToleranceEmbeddedStorage"]:
            return [
                _msg(
                    f"{path}.backend",
                    "rocksdb needs the GCSFaultToleranceEmbeddedStorage feature gate (off by default)",
                    "validateGcsFaultToleranceBackend",
                )
            ]
        return []
    if options.get("storage") is not None:
        return [_msg(f"{path}.storage", "only for backend rocksdb", "validateGcsFaultToleranceBackend")]
    return []


def no_redis_username(spec: dict, at: str, annotations: dict) -> list[str]:
    """No redis-username param nor REDIS_USERNAME env on the head (validation.go ValidateRayClusterSpec)."""
    if _dict(_head(spec).get("rayStartParams")).get("redis-username") or "REDIS_USERNAME" in _head_env(spec):
        return [
            _msg(f"{at}.headGroupSpec", "redis username: use gcsFaultToleranceOptions.redisUsername", F_SPEC)
        ]
    return []


def suspended_worker_groups(spec: dict, at: str, annotations: dict) -> list[str]:
    """A suspended worker group needs its gate and no autoscaler (validation.go ValidateRayClusterSpec)."""
    found = []
    for path, g in _workers(spec, at):
        if g.get("suspend") is not True:
            continue
        if not FEATURE_GATES["RayJobDeletionPolicy"]:
            found.append(_msg(f"{path}.suspend", "needs the RayJobDeletionPolicy feature gate", F_SPEC))
        if _autoscaling(spec):
            found.append(_msg(f"{path}.suspend", "not with enableInTreeAutoscaling", F_SPEC))
    return found


def autoscaler_v2_env_needs_autoscaler(spec: dict, at: str, annotations: dict) -> list[str]:
    """RAY_enable_autoscaler_v2 on needs enableInTreeAutoscaling (validation.go ValidateRayClusterSpec)."""
    if _autoscaling(spec) or _head_env(spec).get(AUTOSCALER_V2_ENV) not in ("1", "true"):
        return []
    return [
        _msg(
            f"{at}.headGroupSpec.template.spec.containers[0].env",
            f"{AUTOSCALER_V2_ENV} is on but enableInTreeAutoscaling is not",
            F_SPEC,
        )
    ]


def autoscaler_version_or_env(spec: dict, at: str, annotations: dict) -> list[str]:
    """Not both autoscalerOptions.version and RAY_enable_autoscaler_v2 (validation.go ValidateRayClusterSpec)."""
    has_version = _dict(spec.get("autoscalerOptions")).get("version") is not None
    if _autoscaling(spec) and has_version and AUTOSCALER_V2_ENV in _head_env(spec):
        return [
            _msg(
                f"{at}.headGroupSpec.template.spec.containers[0].env",
                f"{AUTOSCALER_V2_ENV} not with autoscalerOptions.version: use the latter",
                F_SPEC,
            )
        ]
    return []


def restart_policy_with_autoscaler_v2(spec: dict, at: str, annotations: dict) -> list[str]:
    """Autoscaler v2: pod restartPolicy Never or unset (validation.go ValidateRayClusterSpec)."""
    if not (_autoscaling(spec) and _autoscaler_v2(spec)):
        return []
    return [
        _msg(f"{path}.template.spec.restartPolicy", "must be Never or unset with autoscaler v2", F_SPEC)
        for path, _, g in _groups(spec, at)
        if _pod_spec(g).get("restartPolicy") not in (None, "", "Never")
    ]


def autoscaler_idle_timeout(spec: dict, at: str, annotations: dict) -> list[str]:
    """autoscalerOptions.idleTimeoutSeconds is not negative (validation.go ValidateRayClusterSpec)."""
    timeout = _int(_dict(spec.get("autoscalerOptions")).get("idleTimeoutSeconds"))
    if timeout is not None and timeout < 0:
        return [_msg(f"{at}.autoscalerOptions.idleTimeoutSeconds", "must not be negative", F_SPEC)]
    return []


def autoscaler_start_cmd_env(spec: dict, at: str, annotations: dict) -> list[str]:
    """No KUBERAY_GEN_AUTOSCALER_START_CMD in autoscalerOptions.env (validation.go ValidateRayClusterSpec)."""
    env = _list(_dict(spec.get("autoscalerOptions")).get("env"))
    if any(_dict(e).get("name") == "KUBERAY_GEN_AUTOSCALER_START_CMD" for e in env):
        return [
            _msg(
                f"{at}.autoscalerOptions.env",
                "KUBERAY_GEN_AUTOSCALER_START_CMD is the operator's to set",
                F_SPEC,
            )
        ]
    return []


def gated_cluster_fields(spec: dict, at: str, annotations: dict) -> list[str]:
    """historyServerOptions, networkPolicy, tlsOptions need their gates (validation.go ValidateRayClusterSpec)."""
    gates = {
        "historyServerOptions": "RayClusterHistoryServer",
        "networkPolicy": "RayClusterNetworkPolicy",
        "tlsOptions": "RayClusterMTLS",
    }
    return [
        _msg(f"{at}.{field}", f"needs the {gate} feature gate (off by default)", F_SPEC)
        for field, gate in gates.items()
        if spec.get(field) is not None and not FEATURE_GATES[gate]
    ]


def token_auth_ray_version(spec: dict, at: str, annotations: dict) -> list[str]:
    """authOptions.mode token needs rayVersion >= 2.52.0 (validation.go ValidateRayClusterSpec)."""
    if not _token_auth(spec):
        return []
    version = _ray_version(spec.get("rayVersion"))
    if not spec.get("rayVersion"):
        return [_msg(f"{at}.rayVersion", "required with authOptions.mode token (2.52.0 or later)", F_SPEC)]
    if version is None:
        return [_msg(f"{at}.rayVersion", f"{spec['rayVersion']!r} is not a version", F_SPEC)]
    if _older(version, (2, 52, 0)):
        return [
            _msg(
                f"{at}.rayVersion",
                f"authOptions.mode token needs 2.52.0 or later, got {spec['rayVersion']}",
                F_SPEC,
            )
        ]
    return []


def k8s_token_auth(spec: dict, at: str, annotations: dict) -> list[str]:
    """enableK8sTokenAuth: mode token, Ray >= 2.55.0, no secretName (validation.go ValidateRayClusterSpec)."""
    if not _k8s_token_auth(spec):
        return []
    path = f"{at}.authOptions.enableK8sTokenAuth"
    if not _token_auth(spec):
        return [_msg(path, "needs authOptions.mode token", F_SPEC)]
    version = _ray_version(spec.get("rayVersion"))
    found = []
    if version is not None and _older(version, (2, 55, 0)):
        found.append(_msg(path, f"needs rayVersion 2.55.0 or later, got {spec['rayVersion']}", F_SPEC))
    if _dict(spec.get("authOptions")).get("secretName"):
        found.append(_msg(path, "not with authOptions.secretName", F_SPEC))
    return found


CLUSTER_SPEC_RULES = [
    head_has_a_container,
    workers_have_a_container,
    resources_in_one_place,
    labels_not_in_ray_start_params,
    group_labels_are_labels,
    replica_bounds_without_autoscaler,
    replicas_not_negative,
    min_not_above_max,
    worker_idle_timeout,
    worker_priority,
    ft_annotation_or_options,
    redis_address_needs_ft,
    ft_options_own_redis_settings,
    ft_backend,
    no_redis_username,
    suspended_worker_groups,
    autoscaler_v2_env_needs_autoscaler,
    autoscaler_version_or_env,
    restart_policy_with_autoscaler_v2,
    autoscaler_idle_timeout,
    autoscaler_start_cmd_env,
    gated_cluster_fields,
    token_auth_ray_version,
    k8s_token_auth,
]


def cluster_spec_violations(spec: dict, at: str, annotations: dict | None = None) -> list[str]:
    """Every rule of ValidateRayClusterSpec for one cluster spec found at path `at`."""
    return [m for rule in CLUSTER_SPEC_RULES for m in rule(_dict(spec), at, _dict(annotations))]


def upgrade_strategy(obj: dict) -> list[str]:
    """RayCluster upgradeStrategy: Recreate/None, not on a RayJob's or RayService's cluster (validation.go ValidateRayClusterUpgradeOptions)."""
    kind = obj.get("kind")
    spec = _dict(obj.get("spec"))
    if kind == "RayCluster":
        at, cluster = "spec", spec
        creator = _dict(_dict(obj.get("metadata")).get("labels")).get("ray.io/originated-from-crd")
    elif kind == "RayJob":
        at, cluster, creator = "spec.rayClusterSpec", _dict(spec.get("rayClusterSpec")), kind
    else:
        at, cluster, creator = "spec.rayClusterConfig", _dict(spec.get("rayClusterConfig")), kind
    kind_of_upgrade = _dict(cluster.get("upgradeStrategy")).get("type")
    if kind_of_upgrade is None:
        return []
    function = "ValidateRayClusterUpgradeOptions"
    if kind_of_upgrade not in ("Recreate", "None"):
        return [_msg(f"{at}.upgradeStrategy.type", f"{kind_of_upgrade!r} is not Recreate or None", function)]
    if creator in ("RayJob", "RayService"):
        return [_msg(f"{at}.upgradeStrategy", f"not on a RayCluster made by a {creator}", function)]
    return []


# --- RayJob ------------------------------------------------------------------------------------------

F_JOB = "ValidateRayJobSpec"


def _job(obj: dict) -> dict:
    return _dict(obj.get("spec"))


def _selector_mode(spec: dict) -> bool:
    return bool(_dict(spec.get("clusterSelector")))


def _mode(spec: dict) -> str:
    return spec.get("submissionMode") or "K8sJobMode"  # the CRD's default


def suspend_needs_shutdown(obj: dict) -> list[str]:
    """A suspended RayJob has shutdownAfterJobFinishes true (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if spec.get("suspend") is True and spec.get("shutdownAfterJobFinishes") is not True:
        return [_msg("spec.suspend", "needs shutdownAfterJobFinishes: true", F_JOB)]
    return []


def ttl_not_negative(obj: dict) -> list[str]:
    """ttlSecondsAfterFinished is not negative (validation.go ValidateRayJobSpec)."""
    if (_int(_job(obj).get("ttlSecondsAfterFinished")) or 0) < 0:
        return [_msg("spec.ttlSecondsAfterFinished", "must not be negative", F_JOB)]
    return []


def ttl_needs_shutdown(obj: dict) -> list[str]:
    """ttlSecondsAfterFinished > 0 needs shutdownAfterJobFinishes (validation.go validateDeletionConfiguration)."""
    spec = _job(obj)
    if (_int(spec.get("ttlSecondsAfterFinished")) or 0) > 0 and spec.get(
        "shutdownAfterJobFinishes"
    ) is not True:
        return [
            _msg(
                "spec.ttlSecondsAfterFinished",
                "needs shutdownAfterJobFinishes: true (drop it on a job for an existing cluster)",
                "validateDeletionConfiguration",
            )
        ]
    return []


def deletion_strategy_shape(obj: dict) -> list[str]:
    """deletionStrategy: gate on; legacy pair xor rules; rules not with shutdown (validation.go validateDeletionConfiguration)."""
    spec = _job(obj)
    strategy = spec.get("deletionStrategy")
    if strategy is None:
        return []
    function, path = "validateDeletionConfiguration", "spec.deletionStrategy"
    if not FEATURE_GATES["RayJobDeletionPolicy"]:
        return [_msg(path, "needs the RayJobDeletionPolicy feature gate", function)]
    strategy = _dict(strategy)
    legacy = strategy.get("onSuccess") is not None or strategy.get("onFailure") is not None
    rules = bool(_list(strategy.get("deletionRules")))
    if rules and spec.get("shutdownAfterJobFinishes") is True:
        return [_msg(f"{path}.deletionRules", "not with shutdownAfterJobFinishes: true", function)]
    if rules and legacy:
        return [_msg(path, "onSuccess/onFailure not with deletionRules", function)]
    if not (rules or legacy):
        return [_msg(path, "needs both onSuccess and onFailure, or deletionRules", function)]
    return []


def legacy_deletion_policies(obj: dict) -> list[str]:
    """onSuccess/onFailure policies fit the job's mode (validation.go validateLegacyDeletionPolicies)."""
    spec = _job(obj)
    strategy = _dict(spec.get("deletionStrategy"))
    if _list(strategy.get("deletionRules")) or not ({"onSuccess", "onFailure"} & set(strategy)):
        return []
    function, path = "validateLegacyDeletionPolicies", "spec.deletionStrategy"
    if strategy.get("onSuccess") is None or strategy.get("onFailure") is None:
        return [_msg(path, "set both onSuccess and onFailure", function)]
    policies = {k: _dict(strategy[k]).get("policy") for k in ("onSuccess", "onFailure")}
    found = [_msg(f"{path}.{k}.policy", "required", function) for k, p in policies.items() if p is None]
    if found:
        return found
    for key, policy in policies.items():
        if _selector_mode(spec) and policy in ("DeleteCluster", "DeleteWorkers"):
            found.append(_msg(f"{path}.{key}.policy", f"{policy} not with clusterSelector", function))
    if "DeleteWorkers" in policies.values() and _autoscaling(_dict(spec.get("rayClusterSpec"))):
        found.append(_msg(path, "DeleteWorkers not with enableInTreeAutoscaling", function))
    if spec.get("shutdownAfterJobFinishes") is True and "DeleteNone" in policies.values():
        found.append(_msg(path, "DeleteNone not with shutdownAfterJobFinishes: true", function))
    return found


def deletion_rules(obj: dict) -> list[str]:
    """deletionRules: one condition, TTL order Workers <= Cluster <= Self, no duplicates (validation.go validateDeletionRules)."""
    spec = _job(obj)
    rules = _list(_dict(spec.get("deletionStrategy")).get("deletionRules"))
    function, found, ttls = "validateDeletionRules", [], {}
    for i, rule in enumerate(rules):
        rule = _dict(rule)
        path, condition, policy = (
            f"spec.deletionStrategy.deletionRules[{i}]",
            _dict(rule.get("condition")),
            rule.get("policy"),
        )
        keys = [k for k in ("jobStatus", "jobDeploymentStatus") if condition.get(k) is not None]
        if len(keys) != 1:
            found.append(
                _msg(f"{path}.condition", "set exactly one of jobStatus and jobDeploymentStatus", function)
            )
            continue
        ttl = _int(condition.get("ttlSeconds")) or 0
        if ttl < 0:
            found.append(_msg(f"{path}.condition.ttlSeconds", "must not be negative", function))
            continue
        if _selector_mode(spec) and policy in ("DeleteCluster", "DeleteWorkers"):
            found.append(_msg(f"{path}.policy", f"{policy} not with clusterSelector", function))
            continue
        if policy == "DeleteWorkers" and _autoscaling(_dict(spec.get("rayClusterSpec"))):
            found.append(_msg(f"{path}.policy", "DeleteWorkers not with enableInTreeAutoscaling", function))
            continue
        group = ttls.setdefault((keys[0], condition[keys[0]]), {})
        if policy in group:
            found.append(
                _msg(path, f"duplicate rule for {policy} and {keys[0]} {condition[keys[0]]}", function)
            )
            continue
        group[policy] = ttl
    for (key, value), group in ttls.items():
        ordered = [(p, group[p]) for p in ("DeleteWorkers", "DeleteCluster", "DeleteSelf") if p in group]
        for (before, t0), (after, t1) in pairwise(ordered):
            if t1 < t0:
                found.append(
                    _msg(
                        "spec.deletionStrategy.deletionRules",
                        f"for {key} {value}: {after} TTL ({t1}) must be >= {before} TTL ({t0})",
                        function,
                    )
                )
    return found


def cluster_selector_no_suspend(obj: dict) -> list[str]:
    """clusterSelector jobs cannot be suspended (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if spec.get("suspend") is True and _selector_mode(spec):
        return [_msg("spec.suspend", "not with spec.clusterSelector", F_JOB)]
    return []


def cluster_spec_or_selector(obj: dict) -> list[str]:
    """A RayJob has rayClusterSpec or clusterSelector (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if spec.get("rayClusterSpec") is None and not _selector_mode(spec):
        return [_msg("spec", "set rayClusterSpec or clusterSelector", F_JOB)]
    return []


def cluster_selector_names_cluster(obj: dict) -> list[str]:
    """clusterSelector has a non-empty ray.io/cluster (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if _selector_mode(spec) and not _dict(spec.get("clusterSelector")).get("ray.io/cluster"):
        return [_msg("spec.clusterSelector", "needs a non-empty ray.io/cluster", F_JOB)]
    return []


def cluster_selector_not_sidecar(obj: dict) -> list[str]:
    """clusterSelector is not supported in SidecarMode (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if _selector_mode(spec) and _mode(spec) == "SidecarMode":
        return [_msg("spec.submissionMode", "SidecarMode not with spec.clusterSelector", F_JOB)]
    return []


def cluster_selector_no_backoff(obj: dict) -> list[str]:
    """backoffLimit is 0 with clusterSelector: a retry deletes the cluster (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if _selector_mode(spec) and (_int(spec.get("backoffLimit")) or 0) > 0:
        return [_msg("spec.backoffLimit", "must be 0 with spec.clusterSelector", F_JOB)]
    return []


def interactive_no_backoff(obj: dict) -> list[str]:
    """backoffLimit is 0 in InteractiveMode (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if _mode(spec) == "InteractiveMode" and (_int(spec.get("backoffLimit")) or 0) > 0:
        return [_msg("spec.backoffLimit", "must be 0 in InteractiveMode", F_JOB)]
    return []


def sidecar_mode_limits(obj: dict) -> list[str]:
    """SidecarMode: no submitter template/config, head restartPolicy Never (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    if _mode(spec) != "SidecarMode":
        return []
    found = [
        _msg(f"spec.{key}", "not in SidecarMode", F_JOB)
        for key in ("submitterPodTemplate", "submitterConfig")
        if spec.get(key) is not None
    ]
    policy = _pod_spec(_head(_dict(spec.get("rayClusterSpec")))).get("restartPolicy")
    if policy not in (None, "", "Never"):
        found.append(
            _msg(
                "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
                "must be Never or unset in SidecarMode",
                F_JOB,
            )
        )
    return found


def rayjob_no_k8s_token_auth(obj: dict) -> list[str]:
    """A RayJob's cluster cannot use enableK8sTokenAuth (validation.go ValidateRayJobSpec)."""
    if _k8s_token_auth(_dict(_job(obj).get("rayClusterSpec"))):
        return [
            _msg("spec.rayClusterSpec.authOptions.enableK8sTokenAuth", "not supported for a RayJob", F_JOB)
        ]
    return []


def rayjob_cluster_spec(obj: dict) -> list[str]:
    """spec.rayClusterSpec passes the cluster-spec rules (validation.go ValidateRayJobSpec -> ValidateRayClusterSpec)."""
    spec = _job(obj)
    if spec.get("rayClusterSpec") is None:
        return []
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    return cluster_spec_violations(spec["rayClusterSpec"], "spec.rayClusterSpec", annotations)


def runtime_env_yaml(obj: dict) -> list[str]:
    """runtimeEnvYAML is a YAML mapping (validation.go ValidateRayJobSpec -> UnmarshalRuntimeEnvYAML)."""
    text = _job(obj).get("runtimeEnvYAML")
    if not text:
        return []
    import yaml

    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [_msg("spec.runtimeEnvYAML", f"not valid YAML ({str(e).splitlines()[0]})", F_JOB)]
    if value is not None and not isinstance(value, dict):
        return [_msg("spec.runtimeEnvYAML", "must be a YAML mapping (pip, env_vars, ...)", F_JOB)]
    return []


def deadlines_positive(obj: dict) -> list[str]:
    """activeDeadlineSeconds, preRunningDeadlineSeconds are positive (validation.go ValidateRayJobSpec)."""
    spec = _job(obj)
    return [
        _msg(f"spec.{key}", "must be a positive integer", F_JOB)
        for key in ("activeDeadlineSeconds", "preRunningDeadlineSeconds")
        if _int(spec.get(key)) is not None and spec[key] <= 0
    ]


def backoff_not_negative(obj: dict) -> list[str]:
    """backoffLimit is not negative (validation.go ValidateRayJobSpec)."""
    if (_int(_job(obj).get("backoffLimit")) or 0) < 0:
        return [_msg("spec.backoffLimit", "must not be negative", F_JOB)]
    return []


RAYJOB_RULES = [
    rayjob_name,
    suspend_needs_shutdown,
    ttl_not_negative,
    ttl_needs_shutdown,
    deletion_strategy_shape,
    legacy_deletion_policies,
    deletion_rules,
    cluster_selector_no_suspend,
    cluster_spec_or_selector,
    cluster_selector_names_cluster,
    cluster_selector_not_sidecar,
    cluster_selector_no_backoff,
    interactive_no_backoff,
    sidecar_mode_limits,
    rayjob_no_k8s_token_auth,
    rayjob_cluster_spec,
    upgrade_strategy,
    runtime_env_yaml,
    deadlines_positive,
    backoff_not_negative,
]


# --- RayService --------------------------------------------------------------------------------------

F_SERVICE = "ValidateRayServiceSpec"


def initializing_timeout_annotation(obj: dict) -> list[str]:
    """ray.io/initializing-timeout is a positive duration or seconds (validation.go validateInitializingTimeout)."""
    value = _dict(_dict(obj.get("metadata")).get("annotations")).get("ray.io/initializing-timeout")
    if not value:
        return []
    value = str(value)
    seconds = _go_duration(value)
    if seconds is None and re.fullmatch(r"[-+]?\d+", value):  # Go strconv.Atoi
        seconds = int(value)
    if seconds is not None and seconds > 0:
        return []
    return [
        _msg(
            "metadata.annotations.ray.io/initializing-timeout",
            f"{value!r} is not a positive duration ('5m', '1h') or positive number of seconds",
            "validateInitializingTimeout",
        )
    ]


def rayservice_no_k8s_token_auth(obj: dict) -> list[str]:
    """A RayService's cluster cannot use enableK8sTokenAuth (validation.go ValidateRayServiceSpec)."""
    if _k8s_token_auth(_dict(_dict(obj.get("spec")).get("rayClusterConfig"))):
        return [
            _msg(
                "spec.rayClusterConfig.authOptions.enableK8sTokenAuth",
                "not supported for a RayService",
                F_SERVICE,
            )
        ]
    return []


def rayservice_cluster_spec(obj: dict) -> list[str]:
    """spec.rayClusterConfig passes the cluster-spec rules (validation.go ValidateRayServiceSpec -> ValidateRayClusterSpec)."""
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    return cluster_spec_violations(
        _dict(obj.get("spec")).get("rayClusterConfig"), "spec.rayClusterConfig", annotations
    )


def head_service_name_unset(obj: dict) -> list[str]:
    """No headService.metadata.name on a RayService (validation.go ValidateRayServiceSpec)."""
    cluster = _dict(_dict(obj.get("spec")).get("rayClusterConfig"))
    if _dict(_dict(_head(cluster).get("headService")).get("metadata")).get("name"):
        return [
            _msg(
                "spec.rayClusterConfig.headGroupSpec.headService.metadata.name",
                "must not be set on a RayService",
                F_SERVICE,
            )
        ]
    return []


def upgrade_type(obj: dict) -> list[str]:
    """upgradeStrategy.type is NewClusterWithIncrementalUpgrade, NewCluster or None (validation.go ValidateRayServiceSpec)."""
    value = _dict(_dict(obj.get("spec")).get("upgradeStrategy")).get("type")
    if value is not None and value not in ("NewClusterWithIncrementalUpgrade", "NewCluster", "None"):
        return [
            _msg(
                "spec.upgradeStrategy.type",
                f"{value!r} is not NewClusterWithIncrementalUpgrade, NewCluster or None",
                F_SERVICE,
            )
        ]
    return []


def deletion_delay_not_negative(obj: dict) -> list[str]:
    """rayClusterDeletionDelaySeconds is not negative (validation.go ValidateRayServiceSpec)."""
    if (_int(_dict(obj.get("spec")).get("rayClusterDeletionDelaySeconds")) or 0) < 0:
        return [_msg("spec.rayClusterDeletionDelaySeconds", "must not be negative", F_SERVICE)]
    return []


def incremental_upgrade_options(obj: dict) -> list[str]:
    """NewClusterWithIncrementalUpgrade: autoscaler and sane clusterUpgradeOptions (validation.go ValidateClusterUpgradeOptions)."""
    spec = _dict(obj.get("spec"))
    strategy = _dict(spec.get("upgradeStrategy"))
    if (
        strategy.get("type") != "NewClusterWithIncrementalUpgrade"
        or not FEATURE_GATES["RayServiceIncrementalUpgrade"]
    ):
        return []
    function, path = "ValidateClusterUpgradeOptions", "spec.upgradeStrategy.clusterUpgradeOptions"
    if not _autoscaling(_dict(spec.get("rayClusterConfig"))):
        return [
            _msg(
                "spec.rayClusterConfig.enableInTreeAutoscaling",
                "NewClusterWithIncrementalUpgrade needs the autoscaler",
                function,
            )
        ]
    options = strategy.get("clusterUpgradeOptions")
    if not isinstance(options, dict):
        return [_msg(path, "required with NewClusterWithIncrementalUpgrade", function)]
    surge, step = _int(options.get("maxSurgePercent")), _int(options.get("stepSizePercent"))
    surge = 100 if surge is None else surge  # the CRD's default
    found = []
    if not 0 <= surge <= 100:
        found.append(_msg(f"{path}.maxSurgePercent", "must be between 0 and 100", function))
    if step is None or not 0 <= step <= 100:
        found.append(_msg(f"{path}.stepSizePercent", "must be between 0 and 100", function))
    elif step > surge:
        found.append(_msg(f"{path}.stepSizePercent", "must not exceed maxSurgePercent", function))
    if (_int(options.get("intervalSeconds")) or 0) <= 0:
        found.append(_msg(f"{path}.intervalSeconds", "must be greater than 0", function))
    if not options.get("gatewayClassName"):
        found.append(
            _msg(f"{path}.gatewayClassName", "required with NewClusterWithIncrementalUpgrade", function)
        )
    return found


RAYSERVICE_RULES = [
    rayservice_name,
    initializing_timeout_annotation,
    rayservice_no_k8s_token_auth,
    rayservice_cluster_spec,
    head_service_name_unset,
    upgrade_type,
    upgrade_strategy,
    deletion_delay_not_negative,
    incremental_upgrade_options,
]


# --- entry points ------------------------------------------------------------------------------------


def raycluster_violations(obj: dict) -> list[str]:
    """Why the operator would refuse this RayCluster ([] when it would not)."""
    annotations = _dict(_dict(obj.get("metadata")).get("annotations"))
    return [
        *raycluster_name(obj),
        *cluster_spec_violations(obj.get("spec"), "spec", annotations),
        *upgrade_strategy(obj),
    ]


def rayjob_violations(obj: dict) -> list[str]:
    """Why the operator would mark this RayJob ValidationFailed ([] when it would not)."""
    return [m for rule in RAYJOB_RULES for m in rule(obj)]


def rayservice_violations(obj: dict) -> list[str]:
    """Why the operator would refuse this RayService ([] when it would not)."""
    return [m for rule in RAYSERVICE_RULES for m in rule(obj)]


def violations(obj: dict) -> list[str]:
    """The rules of obj's kind; [] for kinds that are not KubeRay's."""
    check = {
        "RayCluster": raycluster_violations,
        "RayJob": rayjob_violations,
        "RayService": rayservice_violations,
    }.get(_dict(obj).get("kind"))
    return check(obj) if check else []
