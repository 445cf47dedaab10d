"""`pairaug submit`: run a pipeline command as a job on a Ray cluster and follow it to its end.

Two ways to a cluster:

* ``--address http://HOST:8265``: the Ray job API of a running cluster (for example a KubeRay head
  behind `kubectl port-forward`), through Ray's JobSubmissionClient. ``--working-dir`` is uploaded
  and ``--runtime-env-json`` applied; the job's log is streamed here.
* ``--rayjob``: a RayJob custom resource created through the Kubernetes API (in-cluster credentials
  or a kubeconfig). It runs on an existing RayCluster (``--cluster``, e.g. the Helm release's) or on
  a cluster of its own described by a RayJob manifest (``--template``, e.g. k8s/rayjob-augment.yaml).
  Its status and the log of KubeRay's submitter pod are followed.

The exit status is 0 when the job SUCCEEDED, 1 when it FAILED or was STOPPED, 2 when it could not
be submitted or followed. The Ray token is read from RAY_AUTH_TOKEN and never printed; runtime
environments are never echoed either, since their env_vars may carry credentials.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import re
import shlex
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pairaug_ray.errors import UserError

EXIT_OK, EXIT_FAILED, EXIT_ERROR = 0, 1, 2

# KubeRay appends 6 characters to a RayJob's name for its cluster and refuses RayCluster names over 53.
MAX_RAYJOB_NAME = 47
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
# RayJob .status.jobDeploymentStatus values after which nothing more happens.
FINAL_DEPLOYMENT = {"Complete", "Failed", "ValidationFailed"}

EXAMPLES = """\
examples:
  # a port-forwarded KubeRay head (kubectl -n pairaug port-forward svc/pairaug-head-svc 8265:8265)
  export RAY_AUTH_TOKEN=...     # the cluster's token (see docs/deployment.md); never printed
  pairaug submit --address http://127.0.0.1:8265 -- \\
      pairaug augment --config /etc/pairaug/configs/demo.yaml --set run.output_dir=s3://bucket/demo

  # ship the working tree and extra environment with the job
  pairaug submit --address http://127.0.0.1:8265 --working-dir . \\
      --runtime-env-json '{"env_vars": {"AWS_REGION": "us-east-1"}}' -- pairaug train --config s3://bucket/train.yaml

  # a RayJob on the Helm release's RayCluster, or on a cluster of its own from a manifest
  pairaug submit --rayjob --namespace pairaug --cluster pairaug -- pairaug augment --config s3://bucket/job.yaml
  pairaug submit --rayjob --namespace pairaug --template k8s/rayjob-train.yaml \\
      --image registry.example.com/pairaug:0.1.0 -- pairaug train --config s3://bucket/train.yaml
"""


class SubmitError(UserError):
    """The job could not be submitted or followed; the message is meant for a person."""


def add_submit_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `pairaug submit` (the command after `--` is the job's entrypoint)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EXAMPLES
    where = parser.add_argument_group("where to submit (one of)")
    where.add_argument(
        "--address",
        default=None,
        metavar="URL",
        help="Ray dashboard / job API, e.g. http://127.0.0.1:8265 "
        "(default: RAY_API_SERVER_ADDRESS or RAY_ADDRESS when set)",
    )
    where.add_argument(
        "--rayjob", action="store_true", help="create a RayJob custom resource through the Kubernetes API"
    )
    job = parser.add_argument_group("the job")
    job.add_argument(
        "--working-dir",
        default=None,
        metavar="DIR|URI",
        help="working directory of the job: a local folder (uploaded; --address only) or a remote "
        "URI such as s3://bucket/code.zip",
    )
    job.add_argument(
        "--runtime-env-json",
        default=None,
        metavar="JSON",
        help='Ray runtime environment, e.g. \'{"env_vars": {"AWS_REGION": "us-east-1"}}\'',
    )
    job.add_argument(
        "--submission-id",
        "--name",
        dest="name",
        default=None,
        help="job id / RayJob name (default: generated)",
    )
    job.add_argument(
        "--entrypoint-num-cpus",
        type=float,
        default=0.0,
        metavar="N",
        help="CPUs reserved for the job's driver; any N > 0 keeps it off the head (which has none), so "
        "with GCS fault tolerance the driver outlives a head restart (docs/operations.md)",
    )
    job.add_argument(
        "--entrypoint-resources",
        type=_resources_json,
        default=None,
        metavar="JSON",
        help="custom Ray resources the driver asks for, e.g. '{\"pairaug-driver\": 1}' to run it on the "
        "chart's driver group (driverWorkers), which node consolidation leaves alone (docs/operations.md)",
    )
    job.add_argument("--no-wait", action="store_true", help="submit and return without following the job")
    job.add_argument(
        "--progress",
        default=None,
        metavar="OUTPUT_DIR",
        help="where the job keeps its progress.json (its run.output_dir), to print stage, rows done, rows/s "
        "and ETA while following (default: the entrypoint's --set run.output_dir=..., or its --config "
        "when readable from here)",
    )
    job.add_argument(
        "--poll-interval", type=float, default=5.0, metavar="S", help="seconds between status checks"
    )
    kube = parser.add_argument_group("--rayjob options")
    kube.add_argument(
        "--namespace", "-n", default=None, help="namespace (default: the kubeconfig context's, or in-cluster)"
    )
    kube.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, else KUBECONFIG)"
    )
    kube.add_argument("--context", default=None, help="kubeconfig context")
    kube.add_argument("--cluster", default=None, help="run on this existing RayCluster (clusterSelector)")
    kube.add_argument(
        "--template",
        default=None,
        metavar="YAML",
        help="a RayJob manifest to start from (its rayClusterSpec, TTL, deadlines, submitter pod)",
    )
    kube.add_argument("--image", default=None, help="replace the image of every container of the template")
    parser.add_argument(
        "entrypoint",
        nargs=argparse.REMAINDER,
        metavar="-- COMMAND",
        help="the job's command, e.g. -- pairaug augment --config s3://bucket/job.yaml",
    )


def cmd_submit(args: argparse.Namespace) -> int:
    entrypoint = list(args.entrypoint)
    if entrypoint[:1] == ["--"]:
        entrypoint = entrypoint[1:]
    try:
        if not entrypoint:
            raise SubmitError("no command to run: put it after --, e.g. -- pairaug augment --config job.yaml")
        runtime_env = _runtime_env(args.runtime_env_json, args.working_dir)
        if args.rayjob:
            if args.address:
                raise SubmitError("use either --address or --rayjob, not both")
            return _submit_rayjob(args, entrypoint, runtime_env)
        return _submit_to_dashboard(args, entrypoint, runtime_env)
    except SubmitError as e:
        print(f"error: {e}", file=sys.stderr)  # as every command's refusal (cli.main)
        return EXIT_ERROR


def _runtime_env(runtime_env_json: str | None, working_dir: str | None) -> dict[str, Any]:
    env: dict[str, Any] = {}
    if runtime_env_json:
        try:
            env = json.loads(runtime_env_json)
        except json.JSONDecodeError as e:
            # Only the position: the text may hold env_vars that should not end up in logs.
            raise SubmitError(
                f"--runtime-env-json is not valid JSON ({e.msg} at character {e.pos})"
            ) from None
        if not isinstance(env, dict):
            raise SubmitError("--runtime-env-json must be a JSON object")
    if working_dir:
        env["working_dir"] = working_dir
    return env


def _job_label(entrypoint: list[str]) -> str:
    """'augment' for `pairaug augment ...` / `python -m pairaug_ray augment ...`, else 'job'."""
    words = [w for w in entrypoint if not w.startswith("-")]
    for i, word in enumerate(words[:-1]):
        if Path(word).name in ("pairaug", "pairaug_ray") and re.fullmatch(r"[a-z][a-z0-9-]*", words[i + 1]):
            return words[i + 1]
    return "job"


def _default_name(entrypoint: list[str]) -> str:
    return f"pairaug-{_job_label(entrypoint)}-{time.strftime('%Y%m%d-%H%M%S')}"[:MAX_RAYJOB_NAME]


def _say(message: str) -> None:
    print(f"[pairaug submit {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the Ray job API ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _explicit_address():
    """Ray's client lets RAY_ADDRESS / RAY_API_SERVER_ADDRESS override the address it is given; an
    explicit --address must win, so they are hidden while the client resolves it."""
    saved = {k: os.environ.pop(k) for k in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS") if k in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("RAY_AUTH_TOKEN", "").strip()
    return {"Authorization": f"Bearer {token}"} if token else {}


def _job_client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        with _explicit_address():
            return JobSubmissionClient(address, headers=_auth_headers())
    except Exception as e:  # connection refused, 401/403, not a Ray dashboard: all end the same way
        hint = ""
        if "401" in str(e) or "403" in str(e) or "uthentication" in str(e):
            hint = (
                "\nthe cluster uses token authentication: export RAY_AUTH_TOKEN (for a KubeRay cluster: "
                "kubectl get secret <cluster> -o jsonpath='{.data.auth_token}' | base64 -d)"
            )
        raise SubmitError(
            f"cannot use the Ray job API at {address}: {str(e).splitlines()[0]}{hint}"
        ) from None


def _submit_to_dashboard(args: argparse.Namespace, entrypoint: list[str], runtime_env: dict) -> int:
    from ray.job_submission import JobStatus

    address = args.address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address:
        raise SubmitError("say where to submit: --address http://HOST:8265 (the Ray dashboard) or --rayjob")
    client = _job_client(address)
    try:
        job_id = client.submit_job(
            entrypoint=shlex.join(entrypoint),
            runtime_env=runtime_env or None,
            submission_id=args.name,
            metadata={"submitted_by": "pairaug submit"},
            entrypoint_num_cpus=args.entrypoint_num_cpus or None,
            entrypoint_resources=args.entrypoint_resources or None,
        )
    except Exception as e:
        raise SubmitError(f"the job was not accepted: {str(e).splitlines()[0]}") from None
    _say(f"submitted job {job_id} to {address}: {shlex.join(entrypoint)}")
    if args.no_wait:
        _say(f"not waiting; follow it with: ray job logs --follow --address {address} {job_id}")
        return EXIT_OK
    try:
        with _ProgressWatcher(_progress_dir(args, entrypoint), args.poll_interval):
            asyncio.run(_stream_logs(client, job_id))
            status = _wait_for_end(client, job_id, args.poll_interval)
    except KeyboardInterrupt:
        _say(f"stopped following; the job goes on. Stop it with: ray job stop --address {address} {job_id}")
        return 130
    info = client.get_job_info(job_id)
    if status == JobStatus.SUCCEEDED:
        _say(f"job {job_id} SUCCEEDED")
        return EXIT_OK
    print(f"pairaug submit: job {job_id} {status.value}: {info.message or 'no message'}", file=sys.stderr)
    return EXIT_FAILED


async def _stream_logs(client, job_id: str) -> None:
    """Copy the job's log here until the job ends (the server closes the stream then)."""
    try:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
    except Exception as e:  # a dropped stream is not a failed job: the status below decides
        _say(
            f"log stream ended early ({str(e).splitlines()[0] if str(e) else type(e).__name__}); polling the status"
        )


def _wait_for_end(client, job_id: str, poll: float):
    while True:
        status = client.get_job_status(job_id)
        if status.is_terminal():
            return status
        time.sleep(poll)


# --- RayJob through the Kubernetes API ---------------------------------------------------------------------


def _resources_json(text: str) -> dict[str, float]:
    """--entrypoint-resources: a JSON object of resource name -> amount."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON ({e.msg}): {text!r}") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) and v > 0
        for k, v in value.items()
    ):
        raise argparse.ArgumentTypeError(
            f'expected an object of resource name -> amount > 0, e.g. {{"pairaug-driver": 1}}; got {text!r}'
        )
    return value


def build_rayjob(
    entrypoint: list[str],
    name: str,
    *,
    cluster: str | None = None,
    template: dict | None = None,
    image: str | None = None,
    runtime_env: dict | None = None,
    entrypoint_num_cpus: float = 0.0,
    entrypoint_resources: dict[str, float] | None = None,
) -> dict:
    """The RayJob to create: the template's spec (or a bare one) with this entrypoint and name."""
    if not (cluster or template):
        raise SubmitError(
            "a RayJob needs --cluster NAME (an existing RayCluster, e.g. the Helm release's) or "
            "--template FILE (a RayJob manifest with a rayClusterSpec, e.g. k8s/rayjob-augment.yaml)"
        )
    if len(name) > MAX_RAYJOB_NAME or not DNS1035.match(name):
        raise SubmitError(
            f"RayJob name {name!r} must be at most {MAX_RAYJOB_NAME} characters of a-z, 0-9 and '-', starting with a letter"
        )
    source = copy.deepcopy(template) if template else {"spec": {}}
    labels = dict(source.get("metadata", {}).get("labels") or {})
    labels["app.kubernetes.io/managed-by"] = "pairaug-submit"
    spec = source.get("spec") or {}
    spec["entrypoint"] = shlex.join(entrypoint)
    spec.setdefault("submissionMode", "K8sJobMode")
    spec.pop("jobId", None)  # a fresh job each time
    if cluster:
        # An existing cluster outlives the job: nothing of the template's own cluster applies, and
        # KubeRay refuses retries (each would bring up a fresh cluster) and suspension there.
        for key in (
            "rayClusterSpec",
            "shutdownAfterJobFinishes",
            "ttlSecondsAfterFinished",
            "backoffLimit",
            "suspend",
        ):
            spec.pop(key, None)
        if spec["submissionMode"] == "SidecarMode":  # runs in the head of the job's own cluster
            spec["submissionMode"] = "K8sJobMode"
        spec["clusterSelector"] = {"ray.io/cluster": cluster}
    elif not spec.get("rayClusterSpec"):
        raise SubmitError("the --template RayJob has no spec.rayClusterSpec (or pass --cluster NAME)")
    else:
        label_node_kinds(spec["rayClusterSpec"])
    if runtime_env:
        import yaml

        spec["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=False)
    if entrypoint_num_cpus:
        spec["entrypointNumCpus"] = entrypoint_num_cpus
    if entrypoint_resources:
        spec["entrypointResources"] = json.dumps(entrypoint_resources, sort_keys=True)
    if image:
        for container in _containers(spec):
            container["image"] = image
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }


def group_gpus(group: dict) -> float:
    """The GPUs a worker group's pods offer Ray: its `resources.GPU`, `rayStartParams.num-gpus`, or
    the containers' GPU limits (nvidia.com/gpu, amd.com/gpu, ...), in KubeRay's order."""
    for value in (
        (group.get("resources") or {}).get("GPU"),
        (group.get("rayStartParams") or {}).get("num-gpus"),
    ):
        if value is not None:
            return float(value)
    pod = (group.get("template") or {}).get("spec") or {}
    return sum(
        float(v)
        for c in pod.get("containers") or []
        for k, v in ((c.get("resources") or {}).get("limits") or {}).items()
        if k.endswith("/gpu")
    )


def label_node_kinds(cluster_spec: dict) -> None:
    """Label each worker group `pairaug.io/node-kind: cpu|gpu`, as the Helm chart does, unless the
    template already labels it: the job's CPU stages then keep off GPU nodes (runtime.py). With no
    group that can run CPU work, no group is labelled gpu (CPU stages use the GPU nodes' CPUs)."""
    from pairaug_ray.runtime import NODE_KIND_LABEL

    groups = [g for g in cluster_spec.get("workerGroupSpecs") or [] if isinstance(g, dict)]
    has_cpu_group = any(group_gpus(g) == 0 and int(g.get("maxReplicas") or 0) > 0 for g in groups)
    for g in groups:
        labels = g.get("labels") or {}
        if NODE_KIND_LABEL in labels:
            continue
        kind = "gpu" if group_gpus(g) else "cpu"
        if kind == "gpu" and not has_cpu_group:
            continue
        g["labels"] = {**labels, NODE_KIND_LABEL: kind}


def _containers(spec: dict) -> list[dict]:
    cluster = spec.get("rayClusterSpec") or {}
    templates = [cluster.get("headGroupSpec", {}).get("template", {})]
    templates += [g.get("template", {}) for g in cluster.get("workerGroupSpecs", [])]
    templates.append(spec.get("submitterPodTemplate") or {})
    return [c for t in templates for c in (t.get("spec") or {}).get("containers", [])]


def _read_template(path: str) -> dict:
    import yaml

    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except (OSError, yaml.YAMLError) as e:
        raise SubmitError(f"cannot read --template {path}: {e}") from None
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "RayJob"]
    if not jobs:
        raise SubmitError(f"--template {path} holds no RayJob")
    if jobs[0].get("apiVersion") != "ray.io/v1":
        raise SubmitError(
            f"--template {path}: apiVersion must be ray.io/v1, got {jobs[0].get('apiVersion')!r}"
        )
    return jobs[0]


def _kube_api(kubeconfig: str | None, context: str | None, namespace: str | None):
    """An API client and namespace: in-cluster when running in a pod, else from the kubeconfig."""
    from kubernetes import client, config

    sa_namespace = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    try:
        if not (kubeconfig or context) and os.environ.get("KUBERNETES_SERVICE_HOST"):
            configuration = client.Configuration()
            config.load_incluster_config(client_configuration=configuration)
            api = client.ApiClient(configuration)
            namespace = namespace or (
                sa_namespace.read_text().strip() if sa_namespace.exists() else "default"
            )
        else:
            api = config.new_client_from_config(config_file=kubeconfig, context=context)
            if not namespace:
                contexts, active = config.list_kube_config_contexts(config_file=kubeconfig)
                if context:
                    active = next(c for c in contexts if c["name"] == context)
                namespace = active["context"].get("namespace") or "default"
    except (config.ConfigException, OSError, StopIteration) as e:
        raise SubmitError(f"no Kubernetes credentials: {e}") from None
    return api, namespace


def _submit_rayjob(args: argparse.Namespace, entrypoint: list[str], runtime_env: dict) -> int:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    wd = runtime_env.get("working_dir")
    if wd and "://" not in wd:
        raise SubmitError(
            "a RayJob cannot upload a local --working-dir: bake the code into the image, or give a "
            "remote URI (s3://bucket/code.zip)"
        )
    template = _read_template(args.template) if args.template else None
    name = args.name or _default_name(entrypoint)
    body = build_rayjob(
        entrypoint,
        name,
        cluster=args.cluster,
        template=template,
        image=args.image,
        runtime_env=runtime_env,
        entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_resources=args.entrypoint_resources,
    )
    from pairaug_ray.kuberay_rules import violations

    problems = violations(body)
    if problems:  # KubeRay would accept the object, then mark it ValidationFailed: say why now
        raise SubmitError(f"the KubeRay operator would refuse RayJob {name}:\n  " + "\n  ".join(problems))
    api, namespace = _kube_api(args.kubeconfig, args.context, args.namespace)
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    try:
        custom.create_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", body)
    except ApiException as e:
        raise SubmitError(
            f"creating RayJob {namespace}/{name} failed: {e.status} {e.reason}: {_api_message(e)}"
        ) from None
    where = f"RayCluster {args.cluster}" if args.cluster else "a RayCluster of its own"
    _say(f"created RayJob {namespace}/{name} on {where}: {body['spec']['entrypoint']}")
    if args.no_wait:
        _say(f"not waiting; follow it with: kubectl -n {namespace} get rayjob {name} -w")
        return EXIT_OK
    try:
        with _ProgressWatcher(_progress_dir(args, entrypoint), args.poll_interval):
            status = follow_rayjob(custom, core, namespace, name, args.poll_interval)
    except KeyboardInterrupt:
        _say(f"stopped following; the job goes on. Stop it with: kubectl -n {namespace} delete rayjob {name}")
        return 130
    if status.get("jobDeploymentStatus") == "Complete" and status.get("jobStatus") == "SUCCEEDED":
        _say(f"RayJob {name} SUCCEEDED")
        return EXIT_OK
    detail = ", ".join(f"{k}={status[k]}" for k in ("jobStatus", "reason", "message") if status.get(k))
    print(
        f"pairaug submit: RayJob {namespace}/{name} {status.get('jobDeploymentStatus')}: {detail or 'no detail'}",
        file=sys.stderr,
    )
    return EXIT_FAILED


def _api_message(e) -> str:
    try:
        return json.loads(e.body).get("message", "")
    except (TypeError, ValueError, AttributeError):
        return ""


def follow_rayjob(custom, core, namespace: str, name: str, poll: float) -> dict:
    """Print status changes and the submitter's new log lines until the RayJob is final; its status."""
    from kubernetes.client.exceptions import ApiException

    last, printed = None, {}
    while True:
        try:
            job = custom.get_namespaced_custom_object("ray.io", "v1", namespace, "rayjobs", name)
        except ApiException as e:
            if e.status == 404:
                raise SubmitError(f"RayJob {namespace}/{name} was deleted before it finished") from None
            raise SubmitError(f"reading RayJob {namespace}/{name} failed: {e.status} {e.reason}") from None
        status = job.get("status") or {}
        state = (status.get("jobDeploymentStatus"), status.get("jobStatus"), status.get("rayClusterName"))
        if state != last:
            deployment, job_status, ray_cluster = state
            on = f" on RayCluster {ray_cluster}" if ray_cluster else ""
            _say(f"RayJob {name}: deployment {deployment or 'New'}, job {job_status or '-'}{on}")
            last = state
        _print_submitter_log(core, namespace, name, printed)
        if status.get("jobDeploymentStatus") in FINAL_DEPLOYMENT:
            return status
        time.sleep(poll)


def _print_submitter_log(core, namespace: str, name: str, printed: dict[str, int]) -> None:
    """New output of KubeRay's submitter pod (a Job named like the RayJob that runs `ray job submit`
    and tails the job's log). Best effort: pods that are starting or gone are skipped quietly."""
    from kubernetes.client.exceptions import ApiException

    try:
        pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={name}").items
    except ApiException:
        return
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        if (pod.metadata.labels or {}).get("job-name") != name:
            continue
        try:
            text = core.read_namespaced_pod_log(pod.metadata.name, namespace)
        except ApiException:
            continue
        done = printed.get(pod.metadata.name, 0)
        if len(text) > done:
            sys.stdout.write(text[done:])
            sys.stdout.flush()
            printed[pod.metadata.name] = len(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pairaug submit",
        description="Run a pipeline command as a Ray job (job API or RayJob) and follow it to its end.",
    )
    add_submit_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return cmd_submit(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())


# --- progress ------------------------------------------------------------------------------------------------


def _progress_dir(args: argparse.Namespace, entrypoint: list[str]) -> str | None:
    """Where the job keeps its progress.json, when it can be read from here: --progress, else the
    entrypoint's `--set run.output_dir=...`, else the output_dir of its --config if that file is
    readable from here. Relative paths are the job's (on the cluster): not readable here."""
    if args.progress:
        return args.progress
    sets = [entrypoint[i + 1] for i, w in enumerate(entrypoint[:-1]) if w == "--set"]
    out = next((v.split("=", 1)[1] for v in sets if v.startswith("run.output_dir=")), None)
    if out is None:
        config = next(
            (entrypoint[i + 1] for i, w in enumerate(entrypoint[:-1]) if w in ("--config", "-c")), None
        )
        if config and (config.startswith("s3://") or os.path.isfile(config)):
            from pairaug_ray.config import load_config

            with contextlib.suppress(Exception):  # unreadable or invalid here: no progress, not an error
                out = load_config(config, sets).run.output_dir
    return out if out and (out.startswith("s3://") or os.path.isabs(out)) else None


class _ProgressWatcher:
    """While the job is followed, prints its progress.json in one line when the stage changes and
    at most every 30 s otherwise (the job's log shows its stage lines too; this adds rows, rate and
    ETA, and works for RayJobs whose log is the submitter pod's)."""

    EVERY_S = 30.0

    def __init__(self, output_dir: str | None, poll: float):
        self.output_dir, self.poll = output_dir, max(0.5, poll)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _ProgressWatcher:
        if self.output_dir:
            self._thread = threading.Thread(target=self._run, name="pairaug-submit-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.poll + 5)

    def _run(self) -> None:
        from pairaug_ray import progress

        last_key, last_at = None, 0.0
        while not self._stop.wait(self.poll):
            try:
                doc = progress.read_progress(self.output_dir)
            except Exception:  # S3 unreachable from here, a file being rewritten: try again later
                continue
            if doc is None or doc.get("state") != "running":
                continue
            key = (doc.get("stage") or {}).get("name")
            if key == last_key and time.monotonic() - last_at < self.EVERY_S:
                continue
            last_key, last_at = key, time.monotonic()
            lines = progress.format_progress(doc).splitlines()
            rows = [
                ln.strip()
                for ln in lines[1:]
                if (doc.get("stage") or {}).get("name", "\0") in ln and "done:" not in ln
            ]
            _say("progress: " + "; ".join([lines[0], *rows[:1]]))
