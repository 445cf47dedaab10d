"""`pairaug run --dry-run` on the real-data template: ready when every file, model and bucket is
there (a fake MIMIC tree and datasets on a loopback S3), and every problem named on a broken copy."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_mimic import (  # the fake trees with the real file names and headers
    PATIENTS_COLUMNS,
    _write_csv_gz,
    mimic_iv_tree,  # noqa: F401 (a fixture)
    mimic_tree,  # noqa: F401 (a fixture)
)

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "configs" / "mimic-cxr.yaml"
VALUES = REPO / "helm" / "pairaug" / "values.yaml"
PRODUCTION = REPO / "helm" / "pairaug" / "presets" / "production.yaml"


def _dry_run(config: Path) -> subprocess.CompletedProcess:
    exe = shutil.which("pairaug", path=os.path.dirname(sys.executable))
    return subprocess.run(
        [
            exe,
            "run",
            "--dry-run",
            "--config",
            str(config),
            "--values",
            str(VALUES),
            "--values",
            str(PRODUCTION),
        ],
        capture_output=True,
        text=True,
        env=os.environ.copy(),  # the loopback S3's endpoint and keys (conftest's s3_server)
        timeout=120,
    )


@pytest.fixture
def filled_template(mimic_tree, mimic_iv_tree, s3_bucket, tmp_path):  # noqa: F811
    """The template with YOUR-BUCKET replaced by a bucket that holds everything it names."""
    import pandas as pd

    from pairaug_ray import storage

    bucket = s3_bucket
    storage.upload_tree(str(mimic_tree), f"{bucket}/physionet/mimic-cxr-jpg/2.0.0")
    storage.upload_tree(str(mimic_tree), f"{bucket}/physionet/mimic-cxr/2.0.0")  # the reports' layout
    storage.upload_tree(str(mimic_iv_tree), f"{bucket}/physionet/mimiciv/2.2")
    for name in ("pytorch_model.bin", "swin/config.json", "bert/config.json"):
        storage.write_text(f"{bucket}/models/medclip-vit/{name}", "{}")
    storage.write_text(f"{bucket}/chexpert/test/groundtruth.csv", "Study,Cardiomegaly\n")
    storage.write_text(f"{bucket}/chexpert/test/test/patient64741/study1/view1_frontal.jpg", "x")
    local = tmp_path / "padchest.csv.gz"
    _write_csv_gz(local, pd.DataFrame({"ImageID": ["a.png"]}))
    storage.write_bytes(
        f"{bucket}/padchest/PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", local.read_bytes()
    )
    storage.write_text(f"{bucket}/padchest/images/0/a.png", "x")
    storage.write_text(f"{bucket}/rsna/stage_2_train_labels.csv", "patientId,Target\n")
    storage.write_text(f"{bucket}/rsna/stage_2_train_images/a.dcm", "x")
    config = tmp_path / "my-mimic.yaml"
    config.write_text(TEMPLATE.read_text().replace("s3://YOUR-BUCKET", bucket))
    assert PATIENTS_COLUMNS  # the MIMIC-IV tree has the published headers
    return config, bucket


def test_the_template_passes_with_everything_in_place(filled_template):
    config, _ = filled_template
    out = _dry_run(config)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "the job looks ready" in out.stdout and "PROBLEM" not in out.stdout
    for key in (
        "corpus.mimic.root",
        "corpus.mimic.mimic_iv_root",
        "models.scorer",
        "run.output_dir",
        "resources",
    ):
        assert any(line.startswith("ok") and key in line for line in out.stdout.splitlines()), key
    # Hub ids are named, not fetched: the dry run loads no weight.
    assert "stanfordmimi/RoentGen-v2: a hub id" in out.stdout
    # What the job costs: the fake tree's train pairs, counted from MIMIC's tables, in GPU-hours.
    capacity = [line for line in out.stdout.splitlines() if line.startswith("note") and "capacity" in line]
    assert "2 pairs (MIMIC-CXR-JPG's metadata and split tables) in rewrite.splits ['train']" in capacity[0]
    assert any("generate: InterAug: 2 images at 3.18 images/s per GPU" in line for line in capacity), capacity
    assert any("generate: IntraAug: 20 edits" in line for line in capacity), capacity
    assert any(line.endswith("h of GPU stages") and "on 16 GPUs" in line for line in capacity), capacity


def test_a_broken_copy_names_every_problem(filled_template, tmp_path):
    from pairaug_ray import storage

    config, bucket = filled_template
    storage.remove(f"{bucket}/physionet/mimic-cxr-jpg/2.0.0/mimic-cxr-2.0.0-split.csv.gz")
    storage.remove(f"{bucket}/physionet/mimiciv/2.2/hosp/patients.csv.gz")
    data = yaml.safe_load(config.read_text())
    data["models"]["scorer"] = f"{bucket}/models/not-synced"
    data["train"]["init"] = "./no/such/folder"
    data["train"]["num_workers"] = 32
    data["train"]["cpus_per_worker"] = 200
    data["rewrite"]["openai"]["base_url"] = "https://api.example.com/v1"
    data["evaluate"]["datasets"][0]["path"] = f"{bucket}/chexpert/test/missing.csv"
    data["corpus"]["out"] = "s3://YOUR-BUCKET/pairaug/corpora/x"
    data["run"]["output_dir"] = "s3://no-such-bucket-pairaug-test/runs/x"
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data))
    out = _dry_run(broken)
    assert out.returncode == 2, out.stdout + out.stderr
    problems = [line for line in out.stdout.splitlines() if line.startswith("PROBLEM")]
    named = {
        "corpus.mimic.root": "mimic-cxr-2.0.0-split.csv.gz not found",
        "corpus.mimic.mimic_iv_root": "hosp/patients.csv.gz not found",
        "models.scorer": "no objects under",
        "train.init": "'./no/such/folder' is not a folder here",
        "train.num_workers": "32 GPU workers, but gpuWorkers offers at most 16 GPUs",
        "train (one worker)": "asks for 200 CPUs",
        "rewrite.openai.base_url": "api.example.com",
        "evaluate dataset chexpert-test: path": "missing.csv",
        "corpus.out": "placeholder",
        "run.output_dir": "cannot write to s3://no-such-bucket-pairaug-test",
    }
    for key, says in named.items():
        assert any(key in line and says in line for line in problems), (key, says, out.stdout, out.stderr)
    assert len(problems) == len(named), out.stdout
    assert f"{len(named)} problem(s)" in out.stdout and "Traceback" not in out.stderr


def test_values_files_merge_as_helm_does(tmp_path):
    from pairaug_ray.pipeline.dry_run import load_values

    base = tmp_path / "values.yaml"
    base.write_text(yaml.safe_dump({"gpuWorkers": {"maxReplicas": 1, "gpusPerPod": 1, "tolerations": ["a"]}}))
    preset = tmp_path / "preset.yaml"
    preset.write_text(
        yaml.safe_dump({"gpuWorkers": {"maxReplicas": 2, "gpusPerPod": 8, "tolerations": None}})
    )
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"gpuWorkers": {"maxReplicas": 4}}))
    merged = load_values([str(base), str(preset), str(mine)])
    # Later files win key by key inside maps; null drops what an earlier file set.
    assert merged == {"gpuWorkers": {"maxReplicas": 4, "gpusPerPod": 8}}
