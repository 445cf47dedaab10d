"""Kill a rewrite job half-way, rerun it, and find every row exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import yaml

from pairaug_ray import schema, storage
from pairaug_ray.config import load_config
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pipeline.rewrite import rewrite_job
from pairaug_ray.testing.fake_openai import FakeOpenAIServer, FaultPlan


def _written_rows(out: str) -> int:
    n = 0
    for f in storage.list_files(storage.join(out, "manifest"), ".parquet"):
        with contextlib.suppress(Exception):  # a file cut short by the kill; the rerun removes it
            n += pq.read_metadata(f).num_rows
    return n


def test_kill_and_resume(ray_local, phantom_root, tmp_path):
    train = [r for r in read_manifest(phantom_root).take_all() if r[schema.SPLIT] == "train"]
    expected = 2 * len(train)
    with FakeOpenAIServer(FaultPlan(latency_s=0.3, rate_500=0.1, seed=4)) as server:
        cfg_path = tmp_path / "job.yaml"
        cfg_path.write_text(
            yaml.safe_dump(
                {
                    "run": {"name": "resume", "output_dir": str(tmp_path / "run"), "seed": 1},
                    "ray": {"address": ray_local.get_runtime_context().gcs_address, "progress_bars": False},
                    "corpus": {"kind": "manifest", "manifest": phantom_root},
                    "rewrite": {
                        "backend": "openai",
                        "modes": ["inter", "intra"],
                        "min_words": 10,
                        "batch_size": 2,
                        "rows_per_file": 4,
                        "openai": {"base_url": server.base_url, "api_key_env": None, "concurrency": 2,
                                   "backoff_initial_s": 0.05, "timeout_s": 5},
                    },
                }
            )
        )  # fmt: skip
        cfg = load_config(cfg_path)
        out = cfg.rewrite_dir()
        with open(tmp_path / "job.log", "w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "pairaug_ray", "rewrite", "--config", str(cfg_path)],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + 180
        while _written_rows(out) < 6 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, (
            f"the job ended before it could be killed: {(tmp_path / 'job.log').read_text()[-2000:]}"
        )
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        partial = _written_rows(out)
        assert 0 < partial < expected, (partial, expected)

        summary = rewrite_job(cfg)  # the rerun, in this process, on the same cluster
    rows = read_manifest(out).take_all()
    ids = [r[schema.PAIR_ID] for r in rows]
    assert len(ids) == len(set(ids)) == expected == summary["rows"]
    assert {r[schema.STATUS] for r in rows} <= {"ok", "error", "skipped"}
    # The rerun only requested what was missing: far fewer prompts than a full second run.
    assert len({r.key for r in server.requests}) < 2 * expected
