"""Evaluation: metrics against direct per-resample computations, the threshold rule, ensembling,
linear probing, dataset adapters on the real label CSVs, the evaluate job and its HTML report."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import precision_recall_curve, roc_auc_score
from sklearn.utils import resample

from pairaug_ray import schema
from pairaug_ray.eval.metrics import best_f1_threshold, evaluate, f1_acc_from_counts, paired_auc_difference
from pairaug_ray.eval.probe import linear_probe
from pairaug_ray.eval.zeroshot import ensemble, zero_shot_probabilities

TXV_DATA = Path(__import__("sysconfig").get_paths()["purelib"]) / "torchxrayvision" / "data"


def _random_case(n=300, labels=2, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(float)
    s = np.round(rng.random((n, labels)) + 0.4 * y, 2)  # rounded: ties, as real probabilities have
    return y, s


def _medklip_f1_acc(y, s):
    """MedKLIP's recipe with sklearn: max F1 over the PR curve, its threshold, ACC at p >= threshold."""
    p, r, t = precision_recall_curve(y, s)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) != 0)
    best = int(np.argmax(f1[:-1]))  # the last PR point (recall 0) has no threshold
    return f1[best], float(((s >= t[best]) == y).mean()), t[best]


def test_auc_f1_acc_and_bootstrap_equal_chexzeros_per_resample_loop():
    y, s = _random_case()
    got = evaluate(y, s, ["a", "b"], n_bootstrap=1000)
    for j, name in enumerate(["a", "b"]):
        aucs, f1s, accs = [], [], []
        for i in range(1000):  # CheXzero's eval.bootstrap, one resample at a time
            idx = resample(np.arange(len(y)), replace=True, random_state=i)
            aucs.append(roc_auc_score(y[idx, j], s[idx, j]))
            f1, acc, _ = _medklip_f1_acc(y[idx, j], s[idx, j])
            f1s.append(f1)
            accs.append(acc)
        for key, reps in (("auc", aucs), ("f1", f1s), ("acc", accs)):
            ordered = sorted(reps)
            want = {"mean": np.mean(reps), "lower": ordered[24], "upper": ordered[974]}
            for k, v in want.items():
                assert got["per_label"][name][key][k] == pytest.approx(v, abs=5e-5), (name, key, k)
        assert got["per_label"][name]["auc"]["observed"] == pytest.approx(
            roc_auc_score(y[:, j], s[:, j]), abs=5e-5
        )
        f1, acc, thr = _medklip_f1_acc(y[:, j], s[:, j])
        assert got["per_label"][name]["f1"]["observed"] == pytest.approx(f1, abs=5e-5)
        assert got["per_label"][name]["acc"]["observed"] == pytest.approx(acc, abs=5e-5)
        assert got["per_label"][name]["threshold"] == pytest.approx(thr)


def test_paired_auc_difference_equals_a_per_resample_loop():
    """The study's paired bootstrap: both models on the same resampled images, one resample at a time."""
    y, s = _random_case()
    rng = np.random.default_rng(3)
    better = s + 0.3 * (y - 0.5) + 0.05 * rng.normal(size=s.shape)  # more separated: a gain
    got = paired_auc_difference(y, s, better, ["a", "b"], n_bootstrap=1000)
    macro = []
    for i in range(1000):
        idx = resample(np.arange(len(y)), replace=True, random_state=i)
        macro.append(
            np.mean(
                [
                    roc_auc_score(y[idx, j], better[idx, j]) - roc_auc_score(y[idx, j], s[idx, j])
                    for j in range(2)
                ]
            )
        )
    ordered = sorted(macro)
    assert got["macro"]["mean"] == pytest.approx(np.mean(macro), abs=5e-5)
    assert got["macro"]["lower"] == pytest.approx(ordered[24], abs=5e-5)
    assert got["macro"]["upper"] == pytest.approx(ordered[974], abs=5e-5)
    assert got["gain"] and got["macro"]["lower"] > 0
    # A model against itself: exactly no difference, and not a gain.
    same = paired_auc_difference(y, s, s, ["a", "b"])
    assert same["macro"]["mean"] == 0 and same["macro"]["upper"] == 0 and not same["gain"]


def test_missing_labels_are_left_out_per_label():
    y, s = _random_case(seed=1)
    y_nan = y.copy()
    y_nan[::7, 0] = np.nan
    got = evaluate(y_nan, s, ["a", "b"], n_bootstrap=50)
    keep = ~np.isnan(y_nan[:, 0])
    assert got["per_label"]["a"]["auc"]["observed"] == pytest.approx(
        roc_auc_score(y[keep, 0], s[keep, 0]), abs=5e-5
    )
    assert got["per_label"]["b"]["auc"]["observed"] == pytest.approx(
        roc_auc_score(y[:, 1], s[:, 1]), abs=5e-5
    )


def test_a_label_without_positives_is_null_with_its_reason_in_strict_json():
    from pairaug_ray import storage
    from pairaug_ray.eval.metrics import evaluate, format_interval

    rng = np.random.default_rng(0)
    y = np.stack([rng.integers(0, 2, 60), np.zeros(60)], axis=1).astype(float)  # "b" has no positives
    m = evaluate(y, rng.random((60, 2)), ["a", "b"], n_bootstrap=50)

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    back = json.loads(storage.json_text(m), parse_constant=refuse)  # what jq and JavaScript accept
    auc = back["per_label"]["b"]["auc"]
    assert (
        auc["mean"] is None and auc["observed"] is None and auc["undefined"] == "no positives in this split"
    )
    assert (
        back["per_label"]["a"]["auc"]["mean"] is not None and "undefined" not in back["per_label"]["a"]["auc"]
    )
    assert back["macro"]["auc"]["mean"] == pytest.approx(back["per_label"]["a"]["auc"]["mean"], abs=1e-4)
    assert format_interval(auc) == "n/a (no positives in this split)"


def test_threshold_rule_on_hand_made_cases():
    y = np.array([1, 1, 0, 0, 1.0])
    s = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    # F1 at each threshold: .9 -> 0.5, .8 -> 0.8, .7 -> 0.667, .6 -> 0.571, .5 -> 0.75
    f1, acc, thr = f1_acc_from_counts(y, s, np.ones((1, 5)))
    assert thr[0] == 0.8 and f1[0] == pytest.approx(0.8) and acc[0] == pytest.approx(0.8)
    # Equal best F1 at two thresholds: the lower one (np.argmax over sklearn's ascending thresholds).
    # F1: .9 -> 2/3, .8 -> 1/2, .7 -> 2/5, .6 -> 2/3.
    y2, s2 = np.array([1, 0, 0, 1.0]), np.array([0.9, 0.8, 0.7, 0.6])
    assert best_f1_threshold(y2, s2) == 0.6 == _medklip_f1_acc(y2, s2)[2]
    # A threshold fixed on validation: F1 and ACC at it, not re-chosen.
    f1v, accv, thrv = f1_acc_from_counts(y, s, np.ones((1, 5)), threshold=0.65)
    assert thrv[0] == 0.65 and f1v[0] == pytest.approx(2 * 2 / (3 + 3)) and accv[0] == pytest.approx(3 / 5)
    # All one class: no F1 (NaN), not a crash.
    assert np.isnan(f1_acc_from_counts(np.zeros(4), np.arange(4.0), np.ones((1, 4)))[0][0])


def test_positive_negative_softmax_and_ensemble():
    rng = np.random.default_rng(2)
    img = rng.standard_normal((7, 8))
    img /= np.linalg.norm(img, axis=1, keepdims=True)
    pos, neg = rng.standard_normal((3, 8)), rng.standard_normal((3, 8))
    p = zero_shot_probabilities(img, pos, neg)
    sp, sn = img @ pos.T, img @ neg.T
    np.testing.assert_allclose(p, np.exp(sp) / (np.exp(sp) + np.exp(sn)), rtol=1e-12)
    a, b = rng.random((5, 2)), rng.random((5, 2))
    np.testing.assert_allclose(ensemble([a, b]), (a + b) / 2)


def test_ensemble_takes_the_top_k_checkpoints_by_validation_auc(tmp_path):
    from pairaug_ray.config import parse_config
    from pairaug_ray.pipeline.evaluate import model_rows

    run = tmp_path / "train" / "clip"
    for step, auc in [(10, 0.61), (20, 0.74), (30, 0.52), (40, 0.70)]:
        ck = run / f"checkpoint_step{step:08d}"
        (ck / "model").mkdir(parents=True)
        (ck / "train_meta.json").write_text(json.dumps({"step": step, "val_auc": auc}))
    cfg = parse_config({"run": {"output_dir": str(tmp_path)}, "evaluate": {"ensemble_k": 2}})
    last, ens = model_rows(cfg)
    assert last.checkpoints == [str(run / "checkpoint_step00000040" / "model")]
    assert ens.name == "pairaug ensemble" and ens.info["val_auc"] == [0.74, 0.70]


def test_linear_probe_separable_and_random_features():
    rng = np.random.default_rng(0)
    n = 600
    y = (rng.random((n, 2)) < 0.4).astype(float)
    separable = np.concatenate(
        [y * 2 - 1 + 0.3 * rng.standard_normal((n, 2)), rng.standard_normal((n, 6))], 1
    )
    good = linear_probe(separable, y, ["a", "b"], [0.1, 1.0], n_bootstrap=100)
    assert good["split"] == {"train": 480, "validate": 60, "test": 60}
    for frac in ("0.1", "1"):
        assert good["fractions"][frac]["macro"]["auc"]["observed"] > 0.97
    noise = linear_probe(rng.standard_normal((n, 8)), y, ["a", "b"], [1.0], n_bootstrap=100)
    assert abs(noise["fractions"]["1"]["macro"]["auc"]["observed"] - 0.5) < 0.15


def test_a_probe_split_by_patient_cannot_recognise_test_patients():
    """Each patient's images share an identity (their anatomy, in the phantom) and a label that the
    identity does not imply. Split by image, the probe meets its training patients again in the test
    part and reads their label from the identity; split by patient, it has nothing to go on."""
    rng = np.random.default_rng(1)
    patients, per_patient = 120, 6
    identity = rng.standard_normal((patients, 256))  # more dimensions than patients: any labels separate
    label = (rng.random(patients) < 0.5).astype(float)
    pid = np.repeat(np.arange(patients), per_patient)
    x = identity[pid] + 0.1 * rng.standard_normal((len(pid), 256))
    y = label[pid][:, None]
    by_image = linear_probe(x, y, ["a"], [1.0], n_bootstrap=50)
    by_patient = linear_probe(x, y, ["a"], [0.01, 1.0], n_bootstrap=50, groups=[f"p{i}" for i in pid])
    assert by_image["split_by"] == "image" and by_patient["split_by"] == "patient"
    assert by_patient["patients"] == {"train": 96, "validate": 12, "test": 12}
    assert by_image["fractions"]["1"]["macro"]["auc"]["observed"] > 0.85  # the leak
    assert by_patient["fractions"]["1"]["macro"]["auc"]["observed"] < 0.75
    # 1% of 576 training images would be 6: the smallest fraction holds at least 20, in whole patients.
    assert by_patient["fractions"]["0.01"]["train_rows"] == 24


# --- adapters on the real label files in the torchxrayvision wheel ---------------------------------------------


def _head_csv(src: Path, dst: Path, rows: int) -> Path:
    """The first rows of a real label file, written where the test can point an adapter (not committed)."""
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as z:
            text = z.read(z.namelist()[0]).decode()
    else:
        text = gzip.decompress(src.read_bytes()).decode("utf-8", "replace")
    df = pd.read_csv(io.StringIO(text), nrows=rows, low_memory=False)
    df.to_csv(dst, index=False)
    return dst


@pytest.fixture(scope="module")
def txv_data() -> Path:
    if not (TXV_DATA / "chexpert_train.csv.gz").exists():
        pytest.fail(
            "torchxrayvision's label CSVs are missing: `make setup` installs the torchxrayvision wheel"
        )
    return TXV_DATA


def _stand_in_images(uris: list[str], picture: np.ndarray) -> None:
    from PIL import Image

    for u in uris:
        Path(u).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(u, format="PNG")


def test_chexpert_adapter_on_the_real_csv(txv_data, tmp_path):
    from pairaug_ray.eval.datasets import from_chexpert

    csv = _head_csv(txv_data / "chexpert_train.csv.gz", tmp_path / "chexpert.csv", 400)
    raw = pd.read_csv(csv)
    labels = ["Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"]
    data = from_chexpert(str(csv), str(tmp_path / "img"), labels)
    frontal = raw[raw["Frontal/Lateral"] == "Frontal"]
    studies = frontal["Path"].str.rsplit("/", n=1).str[0].nunique()
    assert len(data.frame) == studies  # first frontal view per study
    assert data.frame["image_uri"].str.startswith(str(tmp_path / "img") + "/train/patient").all()
    row = data.frame.iloc[0]
    src = raw[raw["Path"] == row["image_id"]].iloc[0]
    for lb in labels:
        v = src[lb]
        want = 0.0 if pd.isna(v) else (np.nan if v == -1 else v)
        assert (np.isnan(want) and np.isnan(row[lb])) or row[lb] == want
    assert np.isnan(data.y()).any() and set(np.unique(data.y()[~np.isnan(data.y())])) == {0.0, 1.0}
    # Sex and age for subgroup evaluation, from the CSV's Sex ("Male"/"Female") and Age.
    assert row[schema.SEX] == {"Male": "M", "Female": "F"}.get(src["Sex"]) and row[schema.AGE] == src["Age"]
    assert set(data.frame[schema.SEX].dropna()) == {"F", "M"}


def test_chexpert_test_ground_truth_layout(tmp_path):
    """CheXzero's test labels (groundtruth.csv of the CheXpert test set): one row per study."""
    from pairaug_ray.eval.datasets import from_chexpert

    header = (
        "Study,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,Lung Lesion,Edema,"
        "Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,Support Devices"
    )
    rows = [
        "CheXpert-v1.0/test/patient64741/study1,0,1,1,1,0,0,0,0,1,0,0,0,0,1",
        "CheXpert-v1.0/test/patient64742/study1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
    ]
    (tmp_path / "groundtruth.csv").write_text("\n".join([header, *rows]) + "\n")
    data = from_chexpert(
        str(tmp_path / "groundtruth.csv"), "s3://b/chexpert", ["Atelectasis", "Cardiomegaly"]
    )
    assert data.frame["image_uri"].tolist() == [
        "s3://b/chexpert/test/patient64741/study1/view1_frontal.jpg",
        "s3://b/chexpert/test/patient64742/study1/view1_frontal.jpg",
    ]
    assert data.y().tolist() == [[1.0, 1.0], [0.0, 0.0]]


def test_padchest_adapter_on_the_real_csv(txv_data, tmp_path):
    from pairaug_ray.eval.datasets import from_padchest

    csv = _head_csv(
        txv_data / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", tmp_path / "pc.csv", 3000
    )
    data = from_padchest(str(csv), str(tmp_path / "img"), min_positives=20)
    raw = pd.read_csv(csv, low_memory=False)
    physician = raw[
        (raw["MethodLabel"] == "Physician") & raw["Projection"].isin(["PA", "AP", "AP_horizontal"])
    ]
    assert len(data.frame) == len(physician)
    assert (
        data.labels == sorted(data.labels)
        and "normal" not in data.labels
        and all(lb == lb.lower() for lb in data.labels)
    )
    assert all(data.info["positives"][lb] >= 20 for lb in data.labels)
    first = physician.iloc[0]
    assert data.frame["image_uri"].iloc[0] == f"{tmp_path}/img/{int(first['ImageDir'])}/{first['ImageID']}"
    assert data.frame[schema.SEX].iloc[0] == first["PatientSex_DICOM"]
    assert data.frame[schema.AGE].iloc[0] == int(str(first["StudyDate_DICOM"])[:4]) - first["PatientBirth"]
    assert (
        set(data.frame[schema.SEX].dropna()) == {"F", "M"}
        and data.frame[schema.AGE].between(0, 110).mean() > 0.95
    )
    chosen = from_padchest(str(csv), str(tmp_path / "img"), labels=["Cardiomegaly", " Pleural Effusion"])
    assert chosen.labels == ["cardiomegaly", "pleural effusion"]


def test_rsna_adapter_and_stand_in_images_embed(txv_data, tmp_path, real_dicom_path):
    from pairaug_ray.eval.datasets import from_rsna
    from pairaug_ray.models.clip import build_clip, make_processor, save_clip
    from pairaug_ray.stages.embed import EmbedImages

    csv = _head_csv(txv_data / "kaggle_stage_2_train_labels.csv.zip", tmp_path / "rsna.csv", 60)
    raw = pd.read_csv(csv)
    data = from_rsna(str(csv), str(tmp_path / "dcm"))
    assert len(data.frame) == raw["patientId"].nunique() and data.labels == ["Pneumonia"]
    boxed = raw.groupby("patientId")["Target"].max()
    assert (data.frame.set_index("image_id")["Pneumonia"] == boxed).all()
    # Stand-in images: the real radiograph as each patient's DICOM, then embed them with a tiny CLIP.
    (tmp_path / "dcm").mkdir()
    for uri in data.frame["image_uri"][:4]:
        shutil.copy(real_dicom_path, uri)
    model = save_clip(build_clip("tiny"), make_processor(64), tmp_path / "clip")
    out = EmbedImages([model], pad_size=320)(data.frame.head(5))
    assert out["embed_error"].iloc[:4].isna().all() and "file not found" in out["embed_error"].iloc[4]
    emb = np.stack(out["emb_0"].iloc[:4])
    assert emb.shape == (4, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_bad_label_file_names_the_column(tmp_path):
    from pairaug_ray.eval.datasets import DatasetFormatError, from_chexpert

    (tmp_path / "x.csv").write_text("Path,Edema\na/view1_frontal.jpg,1\n")
    with pytest.raises(DatasetFormatError, match="Atelectasis"):
        from_chexpert(str(tmp_path / "x.csv"), str(tmp_path), ["Atelectasis", "Edema"])


# --- `pairaug metrics` and `pairaug compare` ---------------------------------------------------------------------


def test_metrics_cli_matches_ids_and_rejects_bad_input(tmp_path, capsys):
    from pairaug_ray.cli import main

    y, s = _random_case(n=120, seed=3)
    ids = [f"img{i:03d}" for i in range(120)]
    pd.DataFrame({"image_id": ids, "a": y[:, 0], "b": y[:, 1]}).to_csv(tmp_path / "labels.csv", index=False)
    order = np.random.default_rng(0).permutation(120)  # rows in another order: matched by id
    pd.DataFrame({"image_id": np.array(ids)[order], "a": s[order, 0], "b": s[order, 1]}).to_csv(
        tmp_path / "scores.csv", index=False
    )
    out = tmp_path / "m.json"
    assert (
        main(
            [
                "metrics",
                "--labels",
                str(tmp_path / "labels.csv"),
                "--scores",
                str(tmp_path / "scores.csv"),
                "--bootstrap",
                "200",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    m = json.loads(out.read_text())
    assert m["per_label"]["a"]["auc"]["observed"] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]), abs=5e-5)
    assert "macro" in capsys.readouterr().out
    pd.DataFrame({"image_id": ids[:100], "a": s[:100, 0], "b": s[:100, 1]}).to_csv(
        tmp_path / "short.csv", index=False
    )
    assert (
        main(["metrics", "--labels", str(tmp_path / "labels.csv"), "--scores", str(tmp_path / "short.csv")])
        == 2
    )
    assert "no scores for 20 id(s)" in capsys.readouterr().err
    assert (
        main(
            [
                "metrics",
                "--labels",
                str(tmp_path / "labels.csv"),
                "--scores",
                str(tmp_path / "scores.csv"),
                "--id-column",
                "study",
            ]
        )
        == 2
    )
    assert "no id column 'study'" in capsys.readouterr().err
    # Scores for finding a only: refused, then evaluated with --allow-missing, naming what was left out.
    pd.DataFrame({"image_id": ids, "a": s[:, 0]}).to_csv(tmp_path / "only_a.csv", index=False)
    argv = ["metrics", "--labels", str(tmp_path / "labels.csv"), "--scores", str(tmp_path / "only_a.csv")]
    assert main([*argv, "--bootstrap", "50"]) == 2
    assert "no scores for the finding(s) 'b'" in capsys.readouterr().err
    assert main([*argv, "--bootstrap", "50", "--allow-missing", "--out", str(out)]) == 0
    assert "not evaluated (labels without scores): b" in capsys.readouterr().out
    m = json.loads(out.read_text())
    assert m["labels"] == ["a"] and m["left_out"] == {
        "labels_without_scores": ["b"],
        "scores_without_labels": [],
    }


# --- the evaluate job and its report in a real browser -------------------------------------------------------------


@pytest.fixture(scope="module")
def evaluated(ray_local, phantom_root, tmp_path_factory):
    from pairaug_ray.config import parse_config
    from pairaug_ray.models.clip import build_clip, make_processor, save_clip
    from pairaug_ray.pipeline.evaluate import evaluate_job

    tmp = tmp_path_factory.mktemp("evaluate")
    a = save_clip(build_clip("tiny", seed=1), make_processor(64), tmp / "a")
    b = save_clip(build_clip("tiny", seed=2), make_processor(64), tmp / "b")
    cfg = parse_config(
        {
            "run": {"output_dir": str(tmp / "run")},
            "corpus": {"kind": "manifest", "manifest": phantom_root},
            "train": {"synthetic_origins": []},
            "evaluate": {
                "models": [{"name": "base", "path": a}, {"name": "+PairAug", "path": b}],
                "n_bootstrap": 200,
                "num_cpus": 0.5,
                "max_actors": 1,
                "tsne_per_origin": 30,
                "grid_pairs": 4,
                "linear_probe": {"enabled": True, "fractions": [0.1, 1.0]},
                "subgroup_min_images": 3,
            },
        }
    )
    return evaluate_job(cfg)


@pytest.mark.slow
def test_evaluate_job_writes_metrics_predictions_and_report(evaluated, capsys):
    from pairaug_ray.cli import main
    from pairaug_ray.eval.tables import metrics_from_csvs

    out = Path(evaluated["output"])
    metrics = json.loads((out / "metrics.json").read_text())
    ds = metrics["datasets"]["phantom-test"]
    assert set(ds["models"]) == {"base", "+PairAug"} and ds["info"]["images"] > 10
    # The written predictions give the same numbers through `pairaug metrics`.
    again = metrics_from_csvs(
        str(out / "predictions" / "phantom-test--labels.csv"),
        str(out / "predictions" / "phantom-test---PairAug.csv"),
        n_bootstrap=200,
    )
    assert again["macro"]["auc"] == ds["models"]["+PairAug"]["macro"]["auc"]
    assert set(metrics["linear_probe"]["fractions"]) == {"0.1", "1"}
    assert {"roc-phantom-test", "tsne", "pairs-real"} <= {Path(p).stem for p in metrics["figures"].values()}
    # compare: two evaluate runs side by side.
    assert main(["compare", str(out), str(out), "--names", "run1,run2", "--out", str(out / "cmp")]) == 0
    table = capsys.readouterr().out
    assert "run1 / base" in table and "run2 / +PairAug" in table
    # Subgroups: the phantom's sex and age reach metrics.json, and compare shows the gap beside the AUC.
    sub = ds["models"]["base"]["subgroups"]
    assert set(sub["sex"]["groups"]) == {"F", "M"} and set(sub["age band"]["groups"]) <= {
        "0-39",
        "40-59",
        "60-79",
        "80+",
    }
    assert sum(g["n"] for g in sub["sex"]["groups"].values()) == ds["info"]["images"]
    for g in sub["sex"]["groups"].values():
        assert {"macro_auc", "underdiagnosis"} <= set(g) or "too_few" in g
    assert {"mean", "lower", "upper", "observed"} <= set(sub["sex"]["underdiagnosis_gap"])
    assert "gap: sex" in table and "gap: age band" in table
    assert (out / "cmp" / "compare.html").exists()


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "chromium is not installed: `make test` installs Debian's chromium package (make browser)"
        )
    return path


@pytest.mark.slow
def test_report_renders_in_headless_chromium_with_its_images(evaluated, tmp_path):
    report = Path(evaluated["output"]) / "report.html"
    # Load the report as it is, plus a script that counts decoded images once the page has loaded.
    probe = tmp_path / "probe.html"
    probe.write_text(
        report.read_text().replace(
            "</body>",
            "<script>addEventListener('load', () => { const imgs = [...document.images];"
            " document.title = 'IMAGES ' + imgs.length + ' DECODED ' + imgs.filter(i => i.naturalWidth > 0).length"
            " + ' TABLES ' + document.querySelectorAll('table').length; });</script></body>",
        )
    )
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=5000",
    ]
    dom = subprocess.run(
        [_chromium(), *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120
    )
    title = dom.stdout.split("<title>", 1)[1].split("</title>", 1)[0]
    n_images, decoded, tables = (int(x) for x in title.split()[1::2])
    figures = [k for k in evaluated["figures"] if k != "report"]  # ROC, t-SNE, the pair grid
    assert n_images == len(figures) >= 3 and decoded == n_images, title  # all present and decodable
    assert tables >= 3
    shot = tmp_path / "shot.png"
    subprocess.run(
        [_chromium(), *flags, f"--screenshot={shot}", "--window-size=1200,2000", report.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one


def test_subgroup_auc_and_underdiagnosis_equal_a_per_resample_loop():
    """Underdiagnosis: sick patients called healthy (no label at its threshold), per group, with
    CheXzero's resamples of the whole test set; the gap is max - min over the groups."""
    from pairaug_ray.eval.metrics import resample_counts
    from pairaug_ray.eval.subgroups import age_band, called_healthy, subgroup_metrics

    rng = np.random.default_rng(3)
    n = 240
    sex = np.where(np.arange(n) % 3 == 0, "F", "M")
    y = (rng.random((n, 2)) < 0.4).astype(float)
    probs = rng.random((n, 2)) * 0.6 + 0.4 * y
    probs[sex == "F"] *= 0.7  # the model misses more in one group
    thresholds = [0.5, 0.55]
    frame = pd.DataFrame({schema.SEX: sex, schema.AGE: rng.integers(20, 95, n)})
    got = subgroup_metrics(frame, y, probs, thresholds, n_bootstrap=100, min_group=10)
    healthy = ~((probs[:, 0] >= 0.5) | (probs[:, 1] >= 0.55))
    assert (called_healthy(probs, thresholds) == healthy).all()
    sick = y.max(axis=1) > 0
    rates = {}
    for g in ("F", "M"):
        member = sex == g
        per = []
        for counts in resample_counts(n, 100):
            w = counts * member
            per.append((w * (sick & healthy)).sum() / (w * sick).sum())
        rates[g] = np.array(per)
        e = got["sex"]["groups"][g]
        assert e["underdiagnosis"]["observed"] == pytest.approx(
            (member & sick & healthy).sum() / (member & sick).sum(), abs=1e-4
        )
        assert e["underdiagnosis"]["mean"] == pytest.approx(rates[g].mean(), abs=1e-4)
        want_auc = np.mean([roc_auc_score(y[member, j], probs[member, j]) for j in range(2)])
        assert e["macro_auc"]["observed"] == pytest.approx(want_auc, abs=1e-4)
    gap = np.abs(rates["F"] - rates["M"])
    assert got["sex"]["underdiagnosis_gap"]["mean"] == pytest.approx(gap.mean(), abs=1e-4)
    assert got["sex"]["highest"] == "F" and got["sex"]["groups"]["F"]["underdiagnosis"]["lower"] > 0.3
    assert [age_band(a) for a in (20, 40, 59, 60, 85, None)] == [
        "0-39",
        "40-59",
        "40-59",
        "60-79",
        "80+",
        None,
    ]
    small = subgroup_metrics(frame, y, probs, thresholds, n_bootstrap=100, min_group=200)
    assert "too_few" in small["sex"]["groups"]["F"] and "underdiagnosis_gap" not in small["sex"]
