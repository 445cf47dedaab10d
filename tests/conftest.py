"""Shared fixtures. Everything stays on 127.0.0.1: a local Ray, a moto S3 server, tiny models.

The S3 server starts before Ray so that Ray's workers inherit AWS_ENDPOINT_URL; each server
stops at the end of the session.
"""

from __future__ import annotations

import os

# Before anything imports Ray or transformers: loopback only, no telemetry, no hub access.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")

import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(
            reason="needs a CUDA device: torch.cuda.is_available() is False on this machine"
        )
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 with the standard AWS variables pointing at it."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    env = {
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield env["AWS_ENDPOINT_URL"]
    server.stop()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh, empty bucket; returns its s3:// URI."""
    import s3fs

    name = f"test-{uuid.uuid4().hex[:10]}"
    s3fs.S3FileSystem(skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local(s3_server):
    import ray

    from pairaug_ray.config import RayConfig
    from pairaug_ray.runtime import init_ray

    # Two logical GPUs: GPU actor placement is scheduled as on a GPU node; the code itself runs on the
    # CPU because torch sees no CUDA device.
    init_ray(RayConfig(num_cpus=2, num_gpus=2, object_store_memory_mb=300, progress_bars=False))
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, str]:
    from pairaug_ray.models.tiny import make_tiny_models

    return make_tiny_models(tmp_path_factory.mktemp("models"), seed=0)


@pytest.fixture(scope="session")
def phantom_cfg():
    from pairaug_ray.config import PhantomCorpusConfig

    return PhantomCorpusConfig(patients=24, studies_per_patient=(2, 4), size=128, seed=7)


@pytest.fixture(scope="session")
def phantom_root(ray_local, phantom_cfg, tmp_path_factory) -> str:
    from pairaug_ray.corpora.phantom import build_phantom

    root = str(tmp_path_factory.mktemp("phantom"))
    build_phantom(phantom_cfg, root)
    return root


@pytest.fixture(scope="session")
def real_dicom_path() -> Path:
    """The real PA chest radiograph of the pydicom-data wheel (CR, 15-bit, MONOCHROME1)."""
    pydicom_data = pytest.importorskip("pydicom.data", reason="pydicom is not installed")
    try:
        return Path(pydicom_data.get_testdata_file("RG1_UNCR.dcm"))
    except Exception as e:  # the file comes from the pydicom-data wheel, installed by `make setup`
        pytest.skip(f"RG1_UNCR.dcm not available (install the pydicom-data wheel): {e}")


# An API key for tests of the openai back-end. It must be in the environment before Ray starts so
# that Ray's workers inherit it, as pods inherit a Kubernetes Secret mounted as an env variable.
TEST_API_KEY_ENV = "PAIRAUG_TEST_API_KEY"
os.environ.setdefault(TEST_API_KEY_ENV, "sk-pairaug-test-0123456789abcdef")


# --- kill a job half-way -------------------------------------------------------------------------------------


def rows_written(root: str) -> int:
    """Rows in the Parquet files under ROOT/manifest, counting only files that can be read."""
    import contextlib

    import pyarrow.parquet as pq

    from pairaug_ray import storage

    n = 0
    for f in storage.list_files(storage.join(root, "manifest"), ".parquet"):
        with contextlib.suppress(Exception):  # a file cut short by the kill; the rerun removes it
            n += pq.read_metadata(f).num_rows
    return n


@pytest.fixture(scope="session")
def kill_midway(tmp_path_factory):
    """kill_midway(["augment", "--config", path], watch=OUT, rows=N) starts `pairaug ...` in its own
    process group, SIGKILLs the whole group once OUT holds N rows, and returns the rows written by
    then. Fails if the job ends before it can be killed."""
    import signal
    import subprocess
    import sys
    import time

    def run(command: list[str], *, watch: str, rows: int, timeout: float = 300) -> int:
        log_path = tmp_path_factory.mktemp("killed") / "job.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pairaug_ray", *command],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while rows_written(watch) < rows and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, f"the job ended before it could be killed: {log_path.read_text()[-2000:]}"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        return rows_written(watch)

    return run
