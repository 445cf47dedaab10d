"""`pairaug finetune-t2i` (pairaug_ray/pipeline/generator/): the generator trained with Ray Train on
the phantom corpus, two DDP workers, from scratch (the VAE, then the UNet and text encoder); a worker
fails once and the group restarts from the last checkpoint; a rerun with more steps resumes; every
checkpoint holds a pipeline folder the generation stages load and a grid of samples. That the maths
learns is tests/test_t2i.py."""

from __future__ import annotations

import json

import pytest

from pairaug_ray import storage
from pairaug_ray.config import parse_config

pytestmark = pytest.mark.slow


def _cfg(out: str, corpus: str, **finetune):
    return parse_config(
        {
            "run": {"name": "t2i-test", "output_dir": out, "seed": 0},
            "ray": {"num_cpus": 2, "progress_bars": False},
            "corpus": {"kind": "manifest", "manifest": corpus},
            "finetune_t2i": {
                "image_size": 32,
                "vae_steps": 6,
                "steps": 12,
                "batch_size": 8,
                "num_workers": 2,
                "cpus_per_worker": 0.5,
                "checkpoint_every_steps": 4,
                "keep_checkpoints": 10,
                "max_failures": 1,
                "sample_steps": 3,
                "sample_reports": ["Large right pleural effusion.", "No acute cardiopulmonary process."],
                **finetune,
            },
        },
        "test",
    )


def _checkpoints(run: str) -> list[dict]:
    return [
        json.loads(storage.read_text(p))
        for p in storage.list_files(run, "t2i_meta.json")
        if "/checkpoint_" in p
    ]


# `long` (make test-all): a Ray Train finetune with a failure and a resume (about 95 s); tests/test_t2i.py
# trains a generator in CI.
@pytest.mark.long
def test_the_generator_trains_survives_a_failed_worker_and_resumes(ray_local, phantom_root, tmp_path):
    from PIL import Image

    from pairaug_ray.models.diffusion import load_sd_pipeline
    from pairaug_ray.pipeline.generator import finetune_t2i_job
    from pairaug_ray.testing.faults import FailOnceAtStep

    out = str(tmp_path / "run")
    summary = finetune_t2i_job(_cfg(out, phantom_root), step_hook=FailOnceAtStep(7, tmp_path / "failed-once"))
    # The VAE's 6 steps, then the UNet's 12; the failure at UNet step 7 restarted the workers from
    # the checkpoint at step 4, which they reached again.
    assert summary["from_scratch"] and summary["metrics"]["step"] == 12
    assert summary["restored_from"] == [["unet", 6, 4]]
    assert [h["phase"] for h in summary["history"]] == ["vae", "unet"]
    # One checkpoint per (phase, step): the restart made none twice.
    saved = [
        (c["phase"], c.get("vae_step") if c["phase"] == "vae" else c["step"])
        for c in _checkpoints(summary["run"])
    ]
    assert (
        sorted(saved)
        == sorted(set(saved))
        == [
            ("unet", 4),
            ("unet", 8),
            ("unet", 12),
            ("vae", 4),
            ("vae", 6),
        ]
    )

    # The checkpoint's pipeline loads as the generation stages load it, with the VAE's own measured
    # latent scale, and draws at the training size; its grid is one tile per sample report.
    pipe = load_sd_pipeline(summary["pipeline"])
    assert pipe.vae.config.scaling_factor != pytest.approx(0.18215)
    image = pipe("Large right pleural effusion.", num_inference_steps=2, height=32, width=32).images[0]
    assert image.size == (32, 32)
    grid = Image.open(summary["samples"])
    assert grid.size[0] == 2 * 128
    assert storage.exists(f"{summary['run']}/t2i_summary.json")

    # A rerun of the same run with more steps resumes from its last checkpoint and goes on.
    more = finetune_t2i_job(_cfg(out, phantom_root, steps=16))
    assert more["metrics"]["step"] == 16
    assert more["restored_from"][-1] == ["unet", 6, 12]

    # A job that trains its own generator (models.train_generator, as `make demo`) reuses the
    # finished run: no new checkpoint, and the stages get that run's pipeline.
    from pairaug_ray.pipeline.trained_models import derive, with_trained_models

    before = _checkpoints(more["run"])
    job_cfg, trained = with_trained_models(
        derive(_cfg(out, phantom_root, steps=16), {"models.train_generator": True})
    )
    assert job_cfg.models.diffusion == more["pipeline"] == trained["generator"]["pipeline"]
    assert not job_cfg.models.train_generator and _checkpoints(more["run"]) == before
    # A generator trained with other settings is refused, not silently reused (more steps are not
    # other settings: they continue the run, as above).
    from pairaug_ray.config import ConfigError

    with pytest.raises(ConfigError, match=r"trained with other settings \(lr differ\)"):
        with_trained_models(
            derive(_cfg(out, phantom_root, steps=16, lr=0.002), {"models.train_generator": True})
        )
