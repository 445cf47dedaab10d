"""`pairaug submit` (pairaug_ray/submit.py), through its own parser and cmd_submit.

* The Ray job API: a real `ray start --head` on loopback with token authentication (one per module);
  a job that succeeds (with an uploaded working dir and runtime env), one that fails, and a client
  without the token.
* RayJobs: kmock's in-memory Kubernetes API. Nothing runs the KubeRay operator there, so the test
  plays it: it waits for the RayJob, creates the submitter pod with a log, and moves the status on.

The pipeline's own jobs submitted to an autoscaling cluster (`ray job submit` and `pairaug submit`,
with the job's progress printed): tests/test_quickstart_cluster.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from pairaug_ray import submit
from pairaug_ray.submit import EXIT_ERROR, EXIT_FAILED, EXIT_OK, build_parser, build_rayjob, cmd_submit

REPO = Path(__file__).resolve().parents[1]


def run(argv: list[str]) -> int:
    return cmd_submit(build_parser().parse_args(argv))


# --- arguments and the RayJob body --------------------------------------------------------------------------


def test_usage_errors_exit_2(capsys):
    assert run(["--address", "http://127.0.0.1:9"]) == EXIT_ERROR
    assert "no command to run" in capsys.readouterr().err
    assert run(["--address", "http://x:8265", "--rayjob", "--", "true"]) == EXIT_ERROR
    assert "either --address or --rayjob" in capsys.readouterr().err
    # A malformed runtime env is refused without echoing it: it may hold credentials.
    assert (
        run(
            ["--address", "http://x:8265", "--runtime-env-json", '{"env_vars": {"K": "hunter2"', "--", "true"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "--runtime-env-json is not valid JSON" in err and "hunter2" not in err
    assert run(["--rayjob", "--working-dir", ".", "--cluster", "c", "--", "true"]) == EXIT_ERROR
    assert "cannot upload a local --working-dir" in capsys.readouterr().err
    assert run(["--rayjob", "--", "pairaug", "augment"]) == EXIT_ERROR
    assert "--cluster NAME" in capsys.readouterr().err


def test_unreachable_job_api_exits_2(capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")  # an explicit --address wins over it
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert run(["--address", f"http://127.0.0.1:{port}", "--", "true"]) == EXIT_ERROR
    assert f"cannot use the Ray job API at http://127.0.0.1:{port}" in capsys.readouterr().err
    assert os.environ["RAY_ADDRESS"] == "http://127.0.0.1:1"


def test_a_driver_kept_off_the_head():
    """--entrypoint-num-cpus: the RayJob reserves CPUs for its driver, so it runs on a worker."""
    from pairaug_ray.submit import build_rayjob

    body = build_rayjob(
        ["pairaug", "augment", "--config", "c.yaml"], "exp1", cluster="pairaug", entrypoint_num_cpus=1
    )
    assert body["spec"]["entrypointNumCpus"] == 1
    assert "entrypointNumCpus" not in build_rayjob(["pairaug", "augment"], "exp2", cluster="pairaug")["spec"]
    # --entrypoint-resources: on the chart's driver group (its pairaug-driver resource), nowhere else.
    from pairaug_ray.submit import build_parser

    args = build_parser().parse_args(
        [
            "--rayjob",
            "--cluster",
            "pairaug",
            "--entrypoint-num-cpus",
            "1",
            "--entrypoint-resources",
            '{"pairaug-driver": 1}',
            "--",
            "pairaug",
            "augment",
        ]
    )
    assert args.entrypoint_resources == {"pairaug-driver": 1}
    body = build_rayjob(
        ["pairaug", "augment"],
        "exp3",
        cluster="pairaug",
        entrypoint_num_cpus=1,
        entrypoint_resources=args.entrypoint_resources,
    )
    assert json.loads(body["spec"]["entrypointResources"]) == {"pairaug-driver": 1}
    for bad in ("{pairaug-driver: 1}", '{"pairaug-driver": 0}', '["x"]'):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["--entrypoint-resources", bad, "--", "pairaug", "augment"])


def test_build_rayjob_from_a_template():
    template = yaml.safe_load((REPO / "k8s" / "rayjob-train.yaml").read_text())
    cmd = ["pairaug", "train", "--config", "s3://b/train.yaml", "--set", "run.name=a b"]
    job = build_rayjob(
        cmd,
        "pairaug-train-1",
        template=template,
        image="reg.example/pairaug:9",
        runtime_env={"env_vars": {"A": "1"}},
    )
    assert job["metadata"] == {
        "name": "pairaug-train-1",
        "labels": {**template["metadata"]["labels"], "app.kubernetes.io/managed-by": "pairaug-submit"},
    }
    spec = job["spec"]
    assert spec["entrypoint"] == "pairaug train --config s3://b/train.yaml --set 'run.name=a b'"
    assert yaml.safe_load(spec["runtimeEnvYAML"]) == {"env_vars": {"A": "1"}}
    assert spec["shutdownAfterJobFinishes"] is True and spec["rayClusterSpec"]["rayVersion"] == "2.60.0"
    images = {c["image"] for c in submit._containers(spec)}
    # head, CPU workers, GPU workers, submitter: every container takes the image
    assert images == {"reg.example/pairaug:9"} and len(submit._containers(spec)) == 4
    # On an existing cluster, the template's own cluster and its lifetime settings go away.
    job = build_rayjob(cmd, "x", cluster="pairaug", template=template)
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "pairaug"}
    assert not {"rayClusterSpec", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished"} & set(job["spec"])
    assert job["spec"]["activeDeadlineSeconds"] == template["spec"]["activeDeadlineSeconds"]
    with pytest.raises(submit.SubmitError, match="at most 47"):
        build_rayjob(cmd, "p" * 48, cluster="c")
    assert submit._default_name(cmd).startswith("pairaug-train-")
    assert submit._default_name(["python", "-m", "pairaug_ray", "augment"]).startswith("pairaug-augment-")


# --- RayJobs against kmock's Kubernetes API emulator --------------------------------------------------------


class Emulator:
    """kmock's KubernetesEmulator on 127.0.0.1 in a thread of its own (the kubernetes client is sync)."""

    def __init__(self) -> None:
        import kmock

        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()

        async def start():
            self.kmock = kmock.KubernetesEmulator()
            await self.kmock.__aenter__()
            self.server = kmock.Server(self.kmock)
            await self.server.__aenter__()

        self.on_loop(start)
        self.url = str(self.server.url).rstrip("/")

    def on_loop(self, fn):
        async def call():
            result = fn()
            return await result if asyncio.iscoroutine(result) else result

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(10)

    def close(self) -> None:
        async def stop():
            await self.server.__aexit__(None, None, None)
            await self.kmock.__aexit__(None, None, None)

        with contextlib.suppress(Exception):
            self.on_loop(stop)
        self.loop.call_soon_threadsafe(self.loop.stop)


@pytest.fixture(scope="module")
def kube(tmp_path_factory):
    from kubernetes import client, config

    emu = Emulator()
    kubeconfig = tmp_path_factory.mktemp("kube") / "config"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emu", "cluster": {"server": emu.url}}],
                "users": [{"name": "me", "user": {}}],
                "contexts": [
                    {"name": "emu", "context": {"cluster": "emu", "user": "me", "namespace": "team"}}
                ],
                "current-context": "emu",
            }
        )
    )
    api = config.new_client_from_config(config_file=str(kubeconfig))
    emu.kubeconfig = str(kubeconfig)
    emu.custom, emu.core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    yield emu
    emu.close()


class FakeOperator:
    """Plays KubeRay for one RayJob: the submitter pod with a growing log, then status changes."""

    def __init__(self, kube, name: str, namespace: str = "team") -> None:
        self.kube, self.name, self.ns, self.log = kube, name, namespace, ""

    def wait_for_job(self, timeout: float = 20) -> dict:
        from kubernetes.client.exceptions import ApiException

        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.kube.custom.get_namespaced_custom_object(
                    "ray.io", "v1", self.ns, "rayjobs", self.name
                )
            except ApiException:
                assert time.monotonic() < deadline, f"RayJob {self.name} was not created"
                time.sleep(0.05)

    def start_submitter(self) -> None:
        pod = f"{self.name}-x7k2p"
        self.kube.on_loop(
            lambda: self.kube.kmock[f"get /api/v1/namespaces/{self.ns}/pods/{pod}/log"] << (lambda: self.log)
        )
        self.kube.core.create_namespaced_pod(
            self.ns,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": pod, "labels": {"job-name": self.name}},
                "spec": {"containers": [{"name": "ray-job-submitter", "image": "i"}]},
            },
        )

    def status(self, **status) -> None:
        self.kube.custom.patch_namespaced_custom_object_status(
            "ray.io", "v1", self.ns, "rayjobs", self.name, {"status": status}
        )
        time.sleep(0.3)  # several polls of the follower see each state


def submit_in_thread(argv: list[str]) -> tuple[threading.Thread, dict]:
    result: dict = {}
    thread = threading.Thread(target=lambda: result.setdefault("rc", run(argv)), daemon=True)
    thread.start()
    return thread, result


def test_rayjob_on_an_existing_cluster_succeeds(kube, capsys):
    name = "pairaug-augment-t1"
    thread, result = submit_in_thread(
        [
            "--rayjob",
            "--kubeconfig",
            kube.kubeconfig,
            "--cluster",
            "pairaug",
            "--name",
            name,
            "--runtime-env-json",
            '{"env_vars": {"AWS_REGION": "eu-west-1"}}',
            "--poll-interval",
            "0.05",
            "--",
            "pairaug",
            "augment",
            "--config",
            "/etc/pairaug/configs/demo.yaml",
        ]
    )
    op = FakeOperator(kube, name)  # the namespace comes from the kubeconfig context
    job = op.wait_for_job()
    assert job["spec"]["clusterSelector"] == {"ray.io/cluster": "pairaug"}
    assert job["spec"]["entrypoint"] == "pairaug augment --config /etc/pairaug/configs/demo.yaml"
    assert job["spec"]["submissionMode"] == "K8sJobMode"
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"]) == {"env_vars": {"AWS_REGION": "eu-west-1"}}
    op.status(jobDeploymentStatus="Initializing")
    op.start_submitter()
    op.status(jobDeploymentStatus="Running", jobStatus="PENDING", rayClusterName="pairaug")
    op.log = "Job 'pairaug-augment-t1' submitted successfully\n"
    op.status(jobDeploymentStatus="Running", jobStatus="RUNNING", rayClusterName="pairaug")
    op.log += "rewrite: 120 ok\naugment job 'demo' finished\n"
    op.status(jobDeploymentStatus="Complete", jobStatus="SUCCEEDED", rayClusterName="pairaug")
    thread.join(20)
    assert result["rc"] == EXIT_OK
    out = capsys.readouterr().out
    assert f"created RayJob team/{name} on RayCluster pairaug" in out
    assert "deployment Initializing, job -" in out and "job RUNNING on RayCluster pairaug" in out
    assert out.count("rewrite: 120 ok") == 1 and "augment job 'demo' finished" in out  # each line once
    assert f"RayJob {name} SUCCEEDED" in out


def test_rayjob_from_a_template_that_fails(kube, capsys):
    name = "pairaug-train-t2"
    thread, result = submit_in_thread(
        [
            "--rayjob",
            "--kubeconfig",
            kube.kubeconfig,
            "-n",
            "ml",
            "--template",
            str(REPO / "k8s" / "rayjob-train.yaml"),
            "--image",
            "reg.example/pairaug:0.1.0",
            "--name",
            name,
            "--poll-interval",
            "0.05",
            "--",
            "pairaug",
            "train",
            "--config",
            "s3://b/train.yaml",
        ]
    )
    op = FakeOperator(kube, name, namespace="ml")
    job = op.wait_for_job()
    assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == (
        "reg.example/pairaug:0.1.0"
    )
    op.status(jobDeploymentStatus="Running", jobStatus="RUNNING", rayClusterName=f"{name}-abcde")
    op.status(
        jobDeploymentStatus="Failed",
        jobStatus="FAILED",
        reason="AppFailed",
        message="Job entrypoint command failed with exit code 1",
    )
    thread.join(20)
    assert result["rc"] == EXIT_FAILED
    captured = capsys.readouterr()
    assert f"on RayCluster {name}-abcde" in captured.out
    assert f"RayJob ml/{name} Failed: jobStatus=FAILED, reason=AppFailed" in captured.err
    assert "exit code 1" in captured.err


def test_rayjob_deleted_while_followed(kube, capsys):
    name = "pairaug-evaluate-t3"
    thread, result = submit_in_thread(
        [
            "--rayjob",
            "--kubeconfig",
            kube.kubeconfig,
            "--cluster",
            "pairaug",
            "--name",
            name,
            "--poll-interval",
            "0.05",
            "--",
            "pairaug",
            "evaluate",
            "--config",
            "s3://b/e.yaml",
        ]
    )
    op = FakeOperator(kube, name)
    op.wait_for_job()
    kube.custom.delete_namespaced_custom_object("ray.io", "v1", "team", "rayjobs", name)
    thread.join(20)
    assert result["rc"] == EXIT_ERROR
    assert f"RayJob team/{name} was deleted before it finished" in capsys.readouterr().err


def test_rayjob_no_wait_and_name_clash(kube, capsys):
    argv = [
        "--rayjob",
        "--kubeconfig",
        kube.kubeconfig,
        "--cluster",
        "pairaug",
        "--name",
        "pairaug-job-t4",
        "--no-wait",
        "--",
        "pairaug",
        "augment",
        "--config",
        "s3://b/a.yaml",
    ]
    assert run(argv) == EXIT_OK
    assert (
        "not waiting; follow it with: kubectl -n team get rayjob pairaug-job-t4 -w" in capsys.readouterr().out
    )
    assert run(argv) == EXIT_ERROR  # the name is taken
    assert "creating RayJob team/pairaug-job-t4 failed: 409" in capsys.readouterr().err


# --- the Ray job API of a real head node --------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` on loopback with token auth and its own token, in its own process group and
    temp dir (so that it is stopped without touching any other Ray of this test session)."""
    bin_dir = Path(sys.executable).parent
    gcs, dash, agent, client, metrics, env_agent = _free_ports(6)
    token = secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    env.pop("RAY_ADDRESS", None)
    temp_dir = tempfile.mkdtemp(prefix="rs", dir="/tmp")  # short: Ray's socket paths live under it
    head = subprocess.Popen(
        [
            str(bin_dir / "ray"),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(gcs),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dash),
            "--dashboard-agent-listen-port",
            str(agent),
            "--ray-client-server-port",
            str(client),
            "--metrics-export-port",
            str(metrics),
            "--runtime-env-agent-port",
            str(env_agent),
            "--num-cpus",
            "2",
            "--object-store-memory",
            "300000000",
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
            "--temp-dir",
            temp_dir,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{dash}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/version", timeout=2)
                break
            except urllib.error.HTTPError:  # 401 without the token: the dashboard is up
                break
            except OSError:
                assert head.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "the Ray dashboard did not come up in 120 s"
                time.sleep(0.5)
        yield url, token
    finally:
        # SIGTERM to `ray start --block` alone: it stops its processes in about 2 s (the whole group
        # at once takes 30 s); then whatever is left of the group is killed.
        head.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            head.wait(4)
        # Then whatever is left of the group (workers, the dashboard) is killed at once: it is this
        # test's own cluster, and its state dies with its temp dir.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.mark.slow
def test_job_api_success_with_working_dir_and_runtime_env(ray_head, tmp_path, capsys, monkeypatch):
    url, token = ray_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    (tmp_path / "marker.txt").write_text("from the working dir")
    code = "import os; print('job says', os.environ['PROBE'], '|', open('marker.txt').read())"
    rc = run(
        [
            "--address",
            url,
            "--working-dir",
            str(tmp_path),
            "--runtime-env-json",
            '{"env_vars": {"PROBE": "hi"}}',
            "--poll-interval",
            "0.2",
            "--",
            "python",
            "-c",
            code,
        ]
    )
    out = capsys.readouterr().out
    assert rc == EXIT_OK, out
    assert "job says hi | from the working dir" in out and "SUCCEEDED" in out
    assert token not in out


@pytest.mark.slow
def test_job_api_failure_exits_nonzero(ray_head, capsys, monkeypatch):
    url, token = ray_head
    monkeypatch.setenv("RAY_AUTH_TOKEN", token)
    rc = run(
        [
            "--address",
            url,
            "--submission-id",
            "pairaug-fails",
            "--poll-interval",
            "0.2",
            "--",
            "python",
            "-c",
            "import sys; print('about to fail'); sys.exit(3)",
        ]
    )
    captured = capsys.readouterr()
    assert rc == EXIT_FAILED
    assert "about to fail" in captured.out
    assert "job pairaug-fails FAILED" in captured.err and "exit code 3" in captured.err


@pytest.mark.slow
def test_job_api_without_the_token(ray_head, capsys, monkeypatch):
    url, _ = ray_head
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert run(["--address", url, "--", "python", "-c", "print(1)"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"cannot use the Ray job API at {url}" in err and "export RAY_AUTH_TOKEN" in err
    assert "not-the-token" not in err
