"""The study machinery: the pooled paired bootstrap against a plain per-resample loop, the patient
draw of the low-data arm, and `pairaug study` end to end on a tiny world (arms, seeds, the paired
differences, the table, the plot, and a rerun that trains nothing again)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.utils import resample

from pairaug_ray import storage
from pairaug_ray.config import load_config
from pairaug_ray.eval.metrics import (
    BASE_SEED_DRAWS,
    OTHER_SEED_DRAWS,
    holm,
    paired_auc_difference,
    pooled_auc,
    pooled_auc_difference,
    seed_draws,
    seed_t_difference,
)
from pairaug_ray.pairs import patient_subset


def _runs(n=240, labels=2, seeds=3, shift=0.0, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, labels)) < 0.3).astype(float)
    base = [np.round(rng.random((n, labels)) + 0.4 * y, 2) for _ in range(seeds)]
    other = [b + shift * (y - 0.5) + 0.05 * rng.normal(size=y.shape) for b in base]
    return y, base, other


def test_pooled_difference_equals_a_per_resample_loop():
    """Resample i: the rows CheXzero's resample i draws, each arm's seeds drawn with replacement;
    the replicate is the difference of the drawn seeds' mean macro AUCs."""
    y, base, other = _runs(shift=0.2)
    got = pooled_auc_difference(y, base, other, ["a", "b"], n_bootstrap=200)
    draws_b, draws_o = seed_draws(3, 200, BASE_SEED_DRAWS), seed_draws(3, 200, OTHER_SEED_DRAWS)
    reps = []
    for i in range(200):
        idx = resample(np.arange(len(y)), replace=True, random_state=i)

        def macro(runs, picks, idx=idx):
            return np.mean(
                [np.mean([roc_auc_score(y[idx, j], runs[s][idx, j]) for s in picks]) for j in range(2)]
            )

        reps.append(macro(other, draws_o[i]) - macro(base, draws_b[i]))
    ordered = sorted(reps)
    assert got["macro"]["mean"] == pytest.approx(np.mean(reps), abs=5e-5)
    assert got["macro"]["lower"] == pytest.approx(ordered[4], abs=5e-5)  # CheXzero's int(0.025 n) - 1
    assert got["macro"]["upper"] == pytest.approx(ordered[194], abs=5e-5)
    assert got["gain"] and not got["loss"]
    # With one seed per arm it is the paired bootstrap of two models.
    one = pooled_auc_difference(y, base[:1], other[:1], ["a", "b"], n_bootstrap=200)
    assert one["macro"] == paired_auc_difference(y, base[0], other[0], ["a", "b"], n_bootstrap=200)["macro"]


def test_pooled_interval_holds_the_seeds_spread():
    """Seeds that disagree widen an arm's interval beyond what the test set alone gives."""
    y, base, _ = _runs(seeds=3)
    agreeing = pooled_auc(y, [base[0]] * 3, ["a", "b"], n_bootstrap=200)["macro"]
    spread = [base[0], base[0] + 0.3 * (y - 0.5), base[0] - 0.3 * (y - 0.5)]
    disagreeing = pooled_auc(y, spread, ["a", "b"], n_bootstrap=200)["macro"]
    assert disagreeing["upper"] - disagreeing["lower"] > 1.5 * (agreeing["upper"] - agreeing["lower"])
    # No difference: the interval of an arm against itself straddles 0, and is no gain.
    same = pooled_auc_difference(y, base, base, ["a", "b"], n_bootstrap=200)
    assert same["macro"]["lower"] < 0 < same["macro"]["upper"] and not same["gain"] and not same["loss"]


def test_the_seed_t_interval_covers_the_truth_with_three_seeds_where_the_bootstrap_does_not():
    """80 simulated studies of 3 paired seeds per arm whose quality varies from seed to seed (score =
    s * y + noise, s drawn per seed): the true difference of the expected AUCs, Phi(s / sqrt 2)
    averaged over s, is known. The t-interval over seeds plus the test bootstrap holds it about 95% of
    the time; resampling 3 seeds with replacement shrinks their spread and covers it less often."""
    from scipy import stats

    rng = np.random.default_rng(0)
    mu_base, mu_other, sd_seed = 1.0, 1.2, 0.5
    z = rng.standard_normal(2_000_000)
    truth = float(np.mean(stats.norm.cdf((mu_other + sd_seed * z) / np.sqrt(2))))
    truth -= float(np.mean(stats.norm.cdf((mu_base + sd_seed * z) / np.sqrt(2))))

    def arm(y, mu):
        return [(mu + sd_seed * rng.standard_normal()) * y + rng.standard_normal(y.shape) for _ in range(3)]

    covered_t = covered_boot = 0
    for _ in range(80):
        y = (rng.random((600, 1)) < 0.4).astype(float)
        base, other = arm(y, mu_base), arm(y, mu_other)
        t = seed_t_difference(y, base, other, ["a"], n_bootstrap=100)["macro"]
        boot = pooled_auc_difference(y, base, other, ["a"], n_bootstrap=100)["macro"]
        covered_t += t["lower"] <= truth <= t["upper"]
        covered_boot += boot["lower"] <= truth <= boot["upper"]
    print(
        f"\n[coverage] truth {truth:+.4f}: t over seeds {covered_t / 80:.0%}, seed bootstrap {covered_boot / 80:.0%}"
    )
    assert covered_t / 80 >= 0.9
    assert covered_boot < covered_t


def test_the_seed_t_difference_is_the_observed_one_and_holm_adjusts_over_arms():
    y, base, other = _runs(shift=0.2)
    got = seed_t_difference(y, base, other, ["a", "b"], n_bootstrap=200)
    observed = np.mean(
        [
            np.mean([roc_auc_score(y[:, j], o[:, j]) - roc_auc_score(y[:, j], b[:, j]) for j in range(2)])
            for b, o in zip(base, other, strict=True)
        ]
    )
    m = got["macro"]
    assert m["observed"] == pytest.approx(observed, abs=1e-6) and got["paired_seeds"]
    assert m["lower"] < m["observed"] < m["upper"] and got["gain"]
    assert m["se"] ** 2 == pytest.approx(m["se_seed"] ** 2 + m["se_test"] ** 2, rel=1e-3)
    assert m["df"] >= 2  # at least the seeds' n - 1
    with pytest.raises(ValueError, match="at least 2 seeds"):
        seed_t_difference(y, base[:1], other[:1], ["a", "b"], n_bootstrap=200)
    # Holm: the smallest p is multiplied by the family's size, the next by one less, kept monotone.
    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": None})
    assert adjusted["a"] == {"p_holm": 0.03, "rejected": True}
    assert adjusted["c"]["p_holm"] == pytest.approx(0.06) and not adjusted["c"]["rejected"]
    assert adjusted["b"]["p_holm"] == pytest.approx(0.06) and adjusted["d"] == {
        "p_holm": None,
        "rejected": False,
    }


def test_how_long_each_clip_trains_follows_study_training(tmp_path):
    """compute-matched: the same steps for every arm; data-matched: the same epochs (each real pair
    seen as often as by real-only); converged: until validation stops improving, under a step cap."""
    from pairaug_ray.config import parse_config
    from pairaug_ray.pipeline.study import Study

    def length(**study):
        return Study(parse_config({"run": {"output_dir": str(tmp_path)}, "study": study})).length()

    assert length(steps=300) == {"train.steps": 300}
    assert length(training="data-matched", epochs=12) == {"train.steps": None, "train.epochs": 12}
    assert length(training="converged", steps=3000, patience=5, check_every=40) == {
        "train.steps": 3000,
        "train.validation": True,
        "train.early_stopping_patience": 5,
        "train.checkpoint_every_steps": 40,
    }
    with pytest.raises(ValueError, match="data-matched needs study.epochs"):
        length(training="data-matched")


def test_the_low_data_draw_is_by_patient_seeded_and_nested():
    patients = [f"p{i:04d}" for i in range(4000)]
    tenth, half = patient_subset(patients, 0.1, 7), patient_subset(patients, 0.5, 7)
    assert 0.08 < tenth.mean() < 0.12 and 0.46 < half.mean() < 0.54
    assert not (tenth & ~half).any()  # a smaller fraction's patients are in every larger one
    assert (patient_subset(patients, 0.1, 7) == tenth).all()
    assert (patient_subset(patients, 0.1, 8) != tenth).any()


def test_quick_applies_the_configs_quick_settings_before_any_set():
    from argparse import Namespace

    from pairaug_ray.cli.common import load
    from pairaug_ray.config import ConfigError

    args = Namespace(config="configs/phantom-study.yaml", overrides=["study.steps=7"], quick=True)
    cfg = load(args)
    assert cfg.run.output_dir == "runs/study-quick" and cfg.study.seeds == [0] and cfg.study.steps == 7
    full = load(Namespace(config="configs/phantom-study.yaml", overrides=[], quick=False))
    assert full.study.seeds == [0, 1, 2] and len(full.study.arms) == 10
    with pytest.raises(ConfigError, match="baseline 'real' is not one of the arms"):
        load_config("configs/phantom-study.yaml", ["study.arms=[inter]"])


# `long` (make test-all): every arm trained and scored (about 80 s); tests/test_train.py's S3 run shows in CI
# that a model trained on the pipeline's output learns.
@pytest.mark.long
@pytest.mark.slow
def test_the_study_on_a_tiny_world(ray_local, tiny_models, tmp_path):
    from pairaug_ray.config import ConfigError
    from pairaug_ray.pipeline.study import Study, derive, format_study, study_job

    out = str(tmp_path / "study")
    cfg = load_config(
        "configs/phantom-study.yaml",  # the shipped config, shrunk to a tiny world
        [
            f"run.output_dir={out}",
            f"ray.address={ray_local.get_runtime_context().gcs_address}",
            "ray.progress_bars=false",
            "corpus.phantom.patients=14",
            # Paraphrases only: the study's machinery is the same for every synthetic origin, and
            # drawing images would double this test's time (the generation stages have their own).
            "rewrite.modes=[paraphrase]",
            f"study.generator={tiny_models['diffusion']}",  # training one is test_t2i's and finetune's
            "train.num_workers=0",
            "train.batch_size=4",
            "study.arms=[real, augtext]",  # real_fraction's draw is tested in test_train
            "study.seeds=[0, 1]",
            "study.steps=6",
            "study.training=compute-matched",  # every run the same 6 steps (converged: test_study_reports)
            "study.n_bootstrap=100",
            "study.probe_fractions=[0.5, 1.0]",
        ],
    )
    study = study_job(cfg)
    saved = json.loads(storage.read_text(study["outputs"]["study"]))
    assert list(saved["arms"]) == ["real", "augtext"] and saved["baseline"] == "real"
    real, augtext = saved["arms"]["real"], saved["arms"]["augtext"]
    # The arms trained on what they say: AugText on the real pairs plus the paraphrases, every run
    # for study.steps steps.
    assert real["pairs"]["real"] == augtext["pairs"]["real"] > 0
    assert real["pairs"]["synthetic"] == 0 < augtext["pairs"]["synthetic"]
    assert augtext["pairs"]["synthetic"] == saved["augment"]["prune"]["by_origin"]["augtext"]["kept"]
    for arm in saved["arms"].values():
        assert set(arm["seeds"]) == {"0", "1"}
        for run in arm["seeds"].values():
            summary = json.loads(storage.read_text(storage.join(run["run"], "train_summary.json")))
            assert summary["metrics"]["step"] == 6
            assert set(run["probe"]) == {"0.5", "1"}
        pooled = arm["pooled"]["macro"]
        assert pooled["lower"] <= pooled["mean"] <= pooled["upper"]
    # The scorer is the baseline's first seed (real pairs only), and scored the synthetic pairs.
    assert saved["scorer"]["run"] == "real-seed0"
    assert "difference" not in real and {"difference", "pooled"} <= set(augtext)
    # The paired difference is computed from the saved predictions as the study says.
    labels = saved["labels"]
    pred = {
        name: _csv(storage.join(out, "study", "predictions", f"{name}.csv"), labels)
        for name in ("real-seed0", "real-seed1", "augtext-seed0", "augtext-seed1")
    }
    y = _csv(storage.join(out, "study", "predictions", "labels.csv"), labels)
    again = seed_t_difference(
        y,
        [pred["real-seed0"], pred["real-seed1"]],
        [pred["augtext-seed0"], pred["augtext-seed1"]],
        labels,
        100,
    )
    assert again["macro"] == augtext["difference"]["macro"] and augtext["difference"]["paired_seeds"]
    table = storage.read_text(study["outputs"]["table"])
    assert table.count("\n") == 2 + 2 and "(baseline)" in table and "| + AugText |" in table
    assert "| p (Holm) |" in table
    assert storage.read_bytes(study["outputs"]["plot"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert "+ AugText" in format_study(study)

    # A rerun trains nothing again: each finished run with the same settings is reused as it is.
    summaries = storage.list_files(storage.join(out, "study", "runs"), "train_summary.json")
    assert len(summaries) == 4
    mtimes = {p: os.path.getmtime(p) for p in summaries}
    st = Study(cfg)
    again_run = st.train("augtext-seed1", st.arm_settings("augtext", 1, study["augment"]["sets"]))
    assert again_run["run"] == augtext["seeds"]["1"]["run"]
    assert {p: os.path.getmtime(p) for p in summaries} == mtimes
    # Pairs made again in place with other settings (here the rewrites' sampling) train the arms
    # again: a run's identity holds how its synthetic pairs were made, not only their path.
    from pairaug_ray.pairs import read_info, write_info

    rewrites = read_info(cfg.rewrite_dir())
    write_info(
        cfg.rewrite_dir(), {**rewrites, "rewrite": {**rewrites["rewrite"], "sampling": {"temperature": 1}}}
    )
    with pytest.raises(ConfigError, match=r"\(the synthetic pairs' lineage differ\)"):
        st.train("augtext-seed1", st.arm_settings("augtext", 1, study["augment"]["sets"]))
    write_info(cfg.rewrite_dir(), rewrites)
    # Another design may not score the test split this one scored (study_world.py's ledger), and
    # even as a recorded second look, runs trained with other settings are refused, not mixed in.
    with pytest.raises(ConfigError, match=r"scored on .* by another design"):
        study_job(derive(cfg, {"train.lr": 0.001}))
    with pytest.raises(ConfigError, match=r"trained with other settings \(lr differ\)"):
        study_job(derive(cfg, {"train.lr": 0.001, "study.rescore_test": True}))

    # A job that trains its own scorer (models.train_scorer, as `make demo`): the train block's CLIP
    # on the real pairs only, trained once, then reused; the evaluation shows it beside the model.
    from pairaug_ray.pipeline.evaluate import model_specs
    from pairaug_ray.pipeline.trained_models import SCORER_RUN, with_trained_models

    job = derive(cfg, {"models.train_scorer": True, "train.steps": 4, "train.synthetic_origins": ["augtext"]})
    scored_cfg, trained = with_trained_models(job)
    scorer = trained["scorer"]
    assert scorer["run"] == storage.join(job.train_dir(), SCORER_RUN) and scorer["metrics"]["step"] == 4
    assert (
        scorer["data"]["synthetic"] == {} and scorer["data"]["pairs"] == scorer["data"]["real"]["pairs"] > 0
    )
    assert scored_cfg.models.scorer == scorer["model"] and not scored_cfg.models.train_scorer
    mtime = os.path.getmtime(storage.join(scorer["run"], "train_summary.json"))
    assert with_trained_models(job)[1]["scorer"]["model"] == scorer["model"]
    assert os.path.getmtime(storage.join(scorer["run"], "train_summary.json")) == mtime
    with pytest.raises(ConfigError, match=r"scorer was trained with other settings \(steps differ\)"):
        with_trained_models(derive(job, {"models.scorer_steps": 5}))
    assert model_specs(job)[-1] == {"name": "real only", "path": scorer["run"]}


def _csv(uri: str, labels: list[str]) -> np.ndarray:
    import io

    import pandas as pd

    return pd.read_csv(io.StringIO(storage.read_text(uri)))[labels].to_numpy(float)


def test_a_run_recorded_before_a_setting_existed_matches_only_its_old_behaviour(tmp_path):
    """train.text_form arrived after runs were recorded: such a run was trained on texts as written,
    so it is reused for text_form as_written and refused, naming the key, for pairaug."""
    import json

    from pairaug_ray.config import ConfigError
    from pairaug_ray.pipeline.trained_models import RUN_IDENTITY, refuse_other_settings

    old = {"lr": 0.1, "text": "impression"}
    (tmp_path / RUN_IDENTITY).write_text(json.dumps({"train": old, "seed": 0}))
    refuse_other_settings(str(tmp_path), "train", {**old, "text_form": "as_written"}, 0)
    with pytest.raises(ConfigError, match=r"\(text_form differ\)"):
        refuse_other_settings(str(tmp_path), "train", {**old, "text_form": "pairaug"}, 0)
    with pytest.raises(ConfigError, match=r"\(lr differ\)"):
        refuse_other_settings(str(tmp_path), "train", {**old, "lr": 0.2, "text_form": "as_written"}, 0)


def test_lineage_follows_a_pair_dataset_back_through_its_stages(tmp_path):
    """lineage: each stage's settings from the pruned pairs back to the rewrites, input paths left
    out (a copy of the same chain elsewhere has the same lineage)."""
    from pairaug_ray.pairs import lineage, write_info

    for root in ("a", "b"):
        base = tmp_path / root
        write_info(
            str(base / "rewrites"), {"rewrite": {"backend": "rules"}, "input": str(base / "validated")}
        )
        write_info(str(base / "generated"), {"generate": {"seed": 0}, "input": str(base / "rewrites")})
        write_info(str(base / "scored"), {"score": {"mode": "scaled", "input": str(base / "generated")}})
        write_info(str(base / "synthetic"), {"prune": {"tau": 0.3, "input": str(base / "scored")}})
    made = lineage(str(tmp_path / "a" / "synthetic"))
    assert made == {
        "prune": {"tau": 0.3},
        "score": {"mode": "scaled"},
        "generate": {"seed": 0},
        "rewrite": {"backend": "rules"},
    }
    assert lineage(str(tmp_path / "b" / "synthetic")) == made
    assert lineage(str(tmp_path / "nothing")) == {}
