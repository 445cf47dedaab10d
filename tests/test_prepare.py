"""The prepare job: corpus + models + summary, and reuse of finished work on a rerun."""

from __future__ import annotations

import json
import os

from pairaug_ray.config import parse_config
from pairaug_ray.pipeline.prepare import format_summary, prepare


def test_prepare_builds_then_reuses(ray_local, tmp_path):
    cfg = parse_config(
        {
            "run": {"name": "t", "output_dir": str(tmp_path / "run")},
            "corpus": {"phantom": {"patients": 5, "size": 64, "studies_per_patient": [1, 2]}},
            "models": {"build_tiny": True},
        }
    )
    summary = prepare(cfg)
    assert summary["corpus"]["patients"] == 5 and summary["corpus"]["status"] == {
        "ok": summary["corpus"]["rows"]
    }
    assert set(summary["models"]) == {"diffusion", "scorer"}
    assert summary["models"]["diffusion"]["components"]["parameters"]["unet"] > 1_000_000
    on_disk = json.loads((tmp_path / "run" / "prepare.json").read_text())
    assert on_disk["corpus"]["rows"] == summary["corpus"]["rows"]
    assert "pleural effusion" in format_summary(summary).lower()

    info = tmp_path / "run" / "corpus" / "dataset.json"
    weights = next((tmp_path / "run" / "models" / "tiny-sd" / "unet").glob("*.safetensors"))
    stamps = (os.path.getmtime(info), os.path.getmtime(weights))
    again = prepare(cfg)
    assert again["corpus"]["rows"] == summary["corpus"]["rows"]
    assert (os.path.getmtime(info), os.path.getmtime(weights)) == stamps  # reused, not rebuilt

    # Changing the corpus parameters rebuilds it.
    bigger = cfg.model_copy(
        update={
            "corpus": cfg.corpus.model_copy(
                update={"phantom": cfg.corpus.phantom.model_copy(update={"patients": 6})}
            )
        }
    )
    assert prepare(bigger)["corpus"]["patients"] == 6


def test_stage_model_ref_precedence_and_error():
    import pytest

    from pairaug_ray.config import ConfigError, parse_config
    from pairaug_ray.pipeline.generate import model_ref
    from pairaug_ray.pipeline.score import scorer_ref

    both = parse_config(
        {"models": {"scorer": "/m/clip", "diffusion": "/m/sd"}, "score": {"model": "/m/medclip"}}
    )
    assert scorer_ref(both) == "/m/medclip" and model_ref(both) == "/m/sd"
    assert scorer_ref(parse_config({"models": {"scorer": "/m/clip"}})) == "/m/clip"
    with pytest.raises(ConfigError, match=r"no scorer model configured: set score.model or models.scorer"):
        scorer_ref(parse_config({}))
    with pytest.raises(ConfigError, match=r"set generate.model or models.diffusion"):
        model_ref(parse_config({}))
