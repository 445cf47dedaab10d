"""Kill a rewrite job half-way, rerun it, and find every row exactly once."""

from __future__ import annotations

import yaml

from pairaug_ray import schema
from pairaug_ray.config import load_config
from pairaug_ray.manifest import read_manifest
from pairaug_ray.pipeline.rewrite import rewrite_job
from pairaug_ray.testing.fake_openai import FakeOpenAIServer, FaultPlan


def test_kill_and_resume(ray_local, phantom_root, tmp_path, kill_midway):
    train = [r for r in read_manifest(phantom_root).take_all() if r[schema.SPLIT] == "train"]
    expected = 2 * len(train)
    with FakeOpenAIServer(FaultPlan(latency_s=0.1, rate_500=0.1, seed=4)) as server:
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
                        "openai": {
                            "base_url": server.base_url,
                            "api_key_env": None,
                            "concurrency": 2,
                            "backoff_initial_s": 0.05,
                            "timeout_s": 5,
                        },
                    },
                }
            )
        )
        cfg = load_config(cfg_path)
        out = cfg.rewrite_dir()
        partial = kill_midway(["rewrite", "--config", str(cfg_path)], watch=out, rows=6, timeout=180)
        assert 0 < partial < expected, (partial, expected)

        summary = rewrite_job(cfg)  # the rerun, in this process, on the same cluster
    rows = read_manifest(out).take_all()
    ids = [r[schema.PAIR_ID] for r in rows]
    assert len(ids) == len(set(ids)) == expected == summary["rows"]
    assert {r[schema.STATUS] for r in rows} <= {"ok", "error", "skipped"}
    # The rerun only requested what was missing: far fewer prompts than a full second run.
    assert len({r.key for r in server.requests}) < 2 * expected
