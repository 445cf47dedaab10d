"""The capacity plan (pipeline/capacity.py): the work counted as the stages make it, in hours."""

from __future__ import annotations

import pytest

from pairaug_ray.config import parse_config
from pairaug_ray.pipeline import capacity


def cfg(**sections):
    return parse_config(sections)


def test_tasks_are_counted_as_the_rewrite_stage_makes_them():
    c = cfg(
        rewrite={"modes": ["as_written", "inter", "intra", "paraphrase"], "n": 2, "patient_fraction": 0.5}
    )
    # 1,000 pairs and 4,000 reports, half of each drawn: pairs get every mode (as_written once), a
    # report without an image only as_written and inter.
    assert capacity.count_tasks(c, 1000, 4000) == {
        "as_written": 500 + 2000,
        "inter": 1000 + 4000,
        "intra": 1000,
        "paraphrase": 1000,
    }


def test_interaug_rate_is_the_measured_one_at_the_measured_settings_and_scales():
    assert capacity.inter_rate(32, 50, 512 * 512) == pytest.approx(3.177)
    assert capacity.inter_rate(12, 50, 512 * 512) == pytest.approx((2.712 + 3.071) / 2)
    assert capacity.inter_rate(64, 50, 512 * 512) == pytest.approx(3.177)  # no extrapolation past 32
    assert capacity.inter_rate(32, 25, 256 * 256) == pytest.approx(3.177 * 2 * 4)


def test_mimic_sized_plan_in_gpu_hours():
    """227,835 MIMIC-CXR reports, report-only, drawn as written and rewritten at the template's
    settings (50 steps, 512 px, batch 32): 455,670 images at 3.177 images/s per GPU."""
    c = cfg(
        rewrite={"backend": "rules", "modes": ["as_written", "inter"]},
        generate={"branches": ["inter"], "height": 512, "width": 512, "inter": {"batch_size": 32}},
        score={"num_gpus": 1},
    )
    work = {w.stage: w for w in capacity.plan(c, 0, 227_835)}
    inter = work["generate: InterAug"]
    assert inter.units == 455_670 and inter.worker == "GPU"
    assert inter.worker_hours == pytest.approx(455_670 / 3.177 / 3600)
    assert work["rewrite"].units == 227_835  # as_written calls no model
    assert work["score"].units == 455_670
    lines = capacity.format_plan(list(work.values()), gpus=16, cpus=128)
    assert any(line.startswith("on 16 GPUs: about 2.5 h") for line in lines), lines
    assert any("H200" in line for line in lines)


def test_an_llm_back_end_is_counted_in_requests_not_hours():
    c = cfg(rewrite={"backend": "openai", "openai": {"model": "m"}, "modes": ["inter"]})
    (rewrite,) = [w for w in capacity.plan(c, 100, 0) if w.stage == "rewrite"]
    assert rewrite.units == 100 and rewrite.unit == "requests" and rewrite.worker_hours == 0.0
    assert "the endpoint's throughput decides" in capacity.format_plan([rewrite], None, None)[0]
