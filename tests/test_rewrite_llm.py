"""The real small LLM (SmolLM2-135M-Instruct) behind the local and openai back-ends. Slow."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from pairaug_ray import schema
from pairaug_ray.config import parse_config
from pairaug_ray.manifest import read_manifest, write_manifest
from pairaug_ray.pipeline.rewrite import rewrite_job

pytestmark = pytest.mark.slow
TEST_API_KEY_ENV = "PAIRAUG_TEST_API_KEY"  # set in conftest.py before Ray starts

REPORTS = [
    "There is a small left pleural effusion. Heart size is normal. No pneumothorax. No focal consolidation. No pulmonary edema.",
    "The heart is moderately enlarged. There is mild pulmonary edema. No pleural effusion or pneumothorax. No focal consolidation.",
    "Plate-like atelectasis at the right lung base. No pleural effusion. No pneumothorax. Heart size is normal. No pulmonary edema.",
]


@pytest.fixture(scope="module")
def smollm_dir(tmp_path_factory) -> str:
    from pairaug_ray.models.smollm import export_smollm2, find_gguf

    try:
        find_gguf()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    pytest.importorskip("gguf", reason="the gguf package (dev extra) reads the SmolLM2 GGUF file")
    return str(export_smollm2(tmp_path_factory.mktemp("smollm2")))


@pytest.fixture
def small_corpus(ray_local, tmp_path) -> str:
    root = str(tmp_path / "corpus")
    rows = [
        {schema.PAIR_ID: f"r{i}", schema.REPORT: r, schema.SPLIT: "train", schema.STATUS: "ok"}
        for i, r in enumerate(REPORTS)
    ]
    write_manifest(rows, root)
    return root


def _check(rows: list[dict], backend: str) -> None:
    assert len(rows) == len(REPORTS)
    for r in rows:
        assert r[schema.STATUS] in ("ok", "error")
        assert (r[schema.STATUS] == "ok") == (r[schema.ERROR] is None)
        p = r[schema.PROVENANCE]
        assert p["backend"] == backend and p["attempts"] >= 1 and p["tokens_out"] > 0 and p["latency_s"] > 0


# `long` (make test-all): loads SmolLM2 in-process (about 45 s); the OpenAI backend against a real small
# LLM server runs in CI below.
@pytest.mark.long
def test_local_backend_with_smollm2(small_corpus, smollm_dir, tmp_path):
    cfg = parse_config(
        {
            "run": {"output_dir": str(tmp_path / "run")},
            "corpus": {"kind": "manifest", "manifest": small_corpus},
            "rewrite": {
                "backend": "local",
                "modes": ["inter"],
                "max_attempts": 2,
                "min_words": 10,
                "max_tokens": 80,
                "local": {"model": smollm_dir, "batch_size": 3},
            },
        }
    )
    rewrite_job(cfg)
    _check(read_manifest(cfg.rewrite_dir()).take_all(), "local")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_openai_backend_against_llm_katan(small_corpus, smollm_dir, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "llm-katan")
    if not os.path.exists(exe):
        pytest.skip("llm-katan (dev extra) is not installed")
    port = _free_port()
    key = os.environ[TEST_API_KEY_ENV]  # the server validates it: the back-end must send it
    with open(tmp_path / "katan.log", "w") as log:
        server = subprocess.Popen(
            [
                exe,
                "-m",
                smollm_dir,
                "-n",
                "smollm2",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-d",
                "cpu",
                "--no-quantize",
                "--max-tokens",
                "80",
                "--validate-keys",
                "--api-keys",
                f"openai={key}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"},
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                probe = urllib.request.Request(
                    f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {key}"}
                )
                with urllib.request.urlopen(probe, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "katan.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "llm-katan did not come up"
            time.sleep(1)
        cfg = parse_config(
            {
                "run": {"output_dir": str(tmp_path / "run")},
                "corpus": {"kind": "manifest", "manifest": small_corpus},
                "rewrite": {
                    "backend": "openai",
                    "modes": ["inter"],
                    "max_attempts": 2,
                    "min_words": 10,
                    "max_tokens": 80,
                    "openai": {
                        "base_url": f"http://127.0.0.1:{port}/v1",
                        "model": "smollm2",
                        "api_key_env": TEST_API_KEY_ENV,
                        "concurrency": 1,
                        "timeout_s": 120,
                    },
                },
            }
        )
        rewrite_job(cfg)
        _check(read_manifest(cfg.rewrite_dir()).take_all(), "openai")
    finally:
        server.terminate()
        server.wait(30)
