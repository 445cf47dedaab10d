"""`pairaug eval-generator` end to end on the phantom: the report card's files, what each section
holds, and a rerun that reuses the drawn images (the generate job resumes)."""

from __future__ import annotations

import csv
import json

import pytest

from pairaug_ray import storage
from pairaug_ray.config import parse_config

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def card_cfg(ray_local, phantom_root, tiny_models, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("card"))
    return parse_config(
        {
            "run": {"name": "card", "output_dir": out, "seed": 0},
            "ray": {"address": ray_local.get_runtime_context().gcs_address, "progress_bars": False},
            "corpus": {"kind": "manifest", "manifest": phantom_root},
            "models": {"diffusion": tiny_models["diffusion"], "scorer": tiny_models["scorer"]},
            "generate": {"num_gpus": 0, "num_cpus": 0.5, "max_actors": 1, "rows_per_file": 4},
            "eval_generator": {
                "reports": 6,
                "train_reports": 4,
                "edits": 3,
                "num_inference_steps": 2,
                "size": 64,
                "batch_size": 4,
                "encoder": {"kind": "clip", "path": tiny_models["scorer"]},
            },
        }
    )


# `long` (make test-all): trains and scores a generator (about 50 s); tests/test_t2i.py shows in CI that a
# generator learns to draw the finding.
@pytest.mark.long
def test_the_report_card_of_a_generator(card_cfg, capsys):
    from pairaug_ray.cli import main
    from pairaug_ray.pipeline.generator import eval_generator_job

    report = eval_generator_job(card_cfg)
    out = card_cfg.generator_card_dir()
    paths = report["paths"]
    for key in (
        "json",
        "html",
        "findings-grid",
        "findings-auc",
        "findings-roc",
        "memorization",
        "neighbours",
    ):
        assert storage.exists(paths[key]), key
    saved = json.loads(storage.read_text(storage.join(out, "generator_report.json")))
    assert saved["generator"] == card_cfg.models.diffusion and saved["encoder"]["kind"] == "clip"

    # Findings shown: per-finding AUC on generated and real held-out images, with intervals.
    fs = saved["findings_shown"]
    # By default the grader is a classifier on the images' own pixels: it shares nothing with the
    # scorer or any CLIP (here the encoder is the scorer).
    assert fs["classifier"].endswith("real training images' 32 px pixels"), fs["classifier"]
    assert set(fs["generated"]["per_finding"]) == set(card_cfg.eval_generator.findings)
    assert "drawn" not in fs  # this run has augmented nothing
    assert fs["generated"]["n"] == saved["counts"]["generated_held_out"] >= 2
    # Fidelity: the distance, its floor at the same sizes, their ratio.
    fid = saved["fidelity"]
    assert fid["frechet_distance"] > 0 and fid["floor"] > 0
    assert fid["ratio"] == pytest.approx(sum(s["ratio"] for s in fid["splits"]) / len(fid["splits"]))
    # Edits: each checked for the changed findings, the kept ones, and the patient.
    edits = saved["edits"]
    assert 1 <= edits["n"] <= 3 and 0 <= edits["same_patient_rate"] <= 1
    with open(paths["edits"]) as f:
        edit_rows = list(csv.DictReader(f))
    assert len(edit_rows) == edits["n"] and all(json.loads(r["change"]) for r in edit_rows)
    # Memorisation: every drawn image's nearest training image, with both distances.
    with open(paths["neighbours"]) as f:
        neighbours = list(csv.DictReader(f))
    sets = saved["memorization"]["sets"]
    assert len(neighbours) == sum(s["n"] for s in sets.values()) == 4 + saved["counts"]["generated_held_out"]
    assert all(0 <= float(r["pixel_distance"]) <= 1 and -1 <= float(r["cosine"]) <= 1 for r in neighbours)
    html = storage.read_text(paths["html"])
    for section in ("Findings shown", "Fidelity", "Patient identity", "IntraAug edits", "Memorisation"):
        assert section in html
    assert html.count("data:image/png;base64,") >= 5

    # The CLI reruns it: every image is already drawn, so none is drawn again.
    images = storage.list_files(storage.join(out, "generated", "images"), ".png")
    config = storage.join(card_cfg.run.output_dir, "job.yaml")
    import yaml

    storage.write_text(config, yaml.safe_dump(card_cfg.model_dump(mode="json")))
    # The rerun grades the same images with a zero-shot CLIP as the findings classifier instead, and
    # grades a generate output's text-to-image images against their own reports' labels (here the
    # card's own draws stand in for an augment job's).
    drawn = storage.join(out, "generated")
    assert (
        main(
            [
                "eval-generator",
                "--config",
                config,
                "--set",
                "eval_generator.classifier=zero-shot",
                "--set",
                f"eval_generator.drawn={drawn}",
            ]
        )
        == 0
    )
    captured = capsys.readouterr()
    printed = captured.out + captured.err  # stage lines go to the terminal's stderr
    assert "images already done" in printed, printed[-2000:]
    assert "findings shown  mean AUC" in printed and "generator_report.html" in printed
    assert sorted(storage.list_files(storage.join(out, "generated", "images"), ".png")) == sorted(images)
    again = json.loads(storage.read_text(storage.join(out, "generator_report.json")))
    assert again["findings_shown"]["classifier"].startswith("zero-shot CLIP")
    assert again["findings_shown"]["generated"]["n"] == fs["generated"]["n"]
    graded = again["findings_shown"]["drawn"]
    assert graded["source"] == drawn and graded["origins"] == {"inter": 4 + fs["generated"]["n"]}
    assert "images the augment job drew" in printed
