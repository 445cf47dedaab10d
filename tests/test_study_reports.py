"""The report-rich study (study.regime: report-rich) end to end on a tiny world: the world split into
an image part and the other patients' reports, InterAug drawing those reports as written (by the
study's generator and by one trained elsewhere), the text-only control, the ceiling arm and the gap
share, seeds per arm, the decisions and the test ledger that keeps the test split held out."""

from __future__ import annotations

import json

import pytest

from pairaug_ray import schema, storage
from pairaug_ray.config import ConfigError, load_config
from pairaug_ray.pairs import read_columns


@pytest.mark.slow
@pytest.mark.long
def test_the_report_rich_study_on_a_tiny_world(ray_local, tiny_models, tmp_path):
    from pairaug_ray.pipeline.study import derive, study_job

    out = str(tmp_path / "reports")
    cfg = load_config(
        "configs/phantom-reports.yaml",  # the shipped config, shrunk to a tiny world
        [
            f"run.output_dir={out}",
            f"ray.address={ray_local.get_runtime_context().gcs_address}",
            "ray.progress_bars=false",
            "corpus.phantom.patients=30",
            "study.image_fraction=0.4",
            "rewrite.modes=[as_written]",
            f"study.generator={tiny_models['diffusion']}",
            f"study.elsewhere_generator={tiny_models['diffusion']}",
            "generate.inter.num_inference_steps=2",
            "generate.height=64",
            "generate.width=64",
            "train.num_workers=0",
            "train.batch_size=4",
            # The headline design: each CLIP until validation stops improving (here: after 1 check
            # without a gain, checked every 2 steps, at most 6 steps).
            "study.training=converged",
            "study.check_every=2",
            "study.patience=1",
            "study.arms=[real-low, real-all, text-control, reports-as-written, reports-elsewhere]",
            "study.seeds=[0, 1]",
            "study.seeds_per_arm={reports-elsewhere: 1}",
            "study.steps=6",
            "study.n_bootstrap=60",
            "study.probe_fractions=[1.0]",
            "study.split=test",
            "prune.tau=-100",  # a scorer of 4 steps: keep every pair the rule can keep
        ],
    )
    study = study_job(cfg)
    saved = json.loads(storage.read_text(study["outputs"]["study"]))
    arms = saved["arms"]
    # The world: an image part and the other training patients' reports, no patient in both.
    world = saved["world"]["report_rich"]
    image_part = read_columns(
        storage.join(out, "study", "image-part"), [schema.PATIENT_ID, schema.SPLIT]
    ).to_pandas()
    reports = [
        json.loads(line)
        for line in storage.read_text(storage.join(out, "study", "other-reports.jsonl")).splitlines()
    ]
    with_images = set(image_part.loc[image_part[schema.SPLIT] == "train", schema.PATIENT_ID])
    assert len(reports) == world["reports"]["rows"] > 0 and not with_images & {
        r[schema.PATIENT_ID] for r in reports
    }
    assert world["image_part"]["training_pairs"] + world["reports"]["rows"] == world["all_training_pairs"]
    # Each arm trains on what it says: the image part, every image, or the image part plus reports
    # drawn as written (report rows only, from each generator).
    assert (
        arms["real-low"]["pairs"]["real"]
        == arms["text-control"]["pairs"]["real"]
        == world["image_part"]["training_pairs"]
    )
    assert arms["real-all"]["pairs"]["real"] == world["all_training_pairs"]
    assert arms["reports-as-written"]["pairs"]["real"] == world["image_part"]["training_pairs"]
    drawn = read_columns(
        saved["augment"]["sets"]["pruned"], [schema.ORIGIN, schema.SOURCE_KIND, schema.KEPT]
    ).to_pandas()
    kept_reports = drawn[
        (drawn[schema.ORIGIN] == "as_written") & (drawn[schema.SOURCE_KIND] == "report") & drawn[schema.KEPT]
    ]
    assert arms["reports-as-written"]["pairs"]["synthetic"] == len(kept_reports) > 0
    elsewhere = saved["augment"]["elsewhere"]
    assert elsewhere["pipeline"] == tiny_models["diffusion"]
    assert 0 < arms["reports-elsewhere"]["pairs"]["synthetic"] <= len(reports)
    # Every run was scored on the validation split at its checkpoints and evaluated at its best one.
    for arm in arms.values():
        for run in arm["seeds"].values():
            assert run["best"] is not None and run["steps"] <= 6
    # Seeds per arm, differences against real-low, and the share of the real-low -> real-all gap.
    assert set(arms["reports-elsewhere"]["seeds"]) == {"0"} and set(arms["real-low"]["seeds"]) == {"0", "1"}
    for name in ("text-control", "reports-as-written", "reports-elsewhere"):
        share, diff = arms[name]["gap_share"], arms[name]["difference"]["macro"]
        gap = arms["real-all"]["difference"]["macro"]["observed"]
        if gap > 0:
            assert share["observed"] == pytest.approx(diff["observed"] / gap)
    assert "share of the gap" in study["table"]
    # The text-only control trained on the impressions with the findings' denial sentences.
    run = json.loads(
        storage.read_text(storage.join(arms["text-control"]["seeds"]["0"]["run"], "train_summary.json"))
    )
    assert run["text"] == "impression+denials"
    # Which split did what, and the test ledger: this design scored the test split once.
    used = saved["splits_used"]
    assert used["scored"] == "test" and used["decided_on_the_scored_split"] == []
    assert {d["setting"] for d in used["decisions"]} >= {"prune.tau"}
    assert used["test_ledger"]["designs_scored"] == 1
    # The same design again scores the same test split (a resumed run); another design is refused
    # before any work, unless it says it is a second look.
    again = study_job(cfg)
    assert (
        json.loads(storage.read_text(again["outputs"]["study"]))["splits_used"]["test_ledger"][
            "designs_scored"
        ]
        == 1
    )
    other = derive(cfg, {"prune.tau": -50})
    with pytest.raises(ConfigError, match="scored on .* by another design"):
        study_job(other)
    # Deciding on the validation split is always allowed.
    assert derive(other, {"study.split": "validate"}).study.split == "validate"


def test_the_gap_share_is_the_difference_over_the_ceilings_gap():
    from pairaug_ray.eval.study import gap_share

    gap = {"observed": 0.08, "lower": 0.05, "upper": 0.11}
    share = gap_share({"observed": 0.04, "lower": 0.01, "upper": 0.07}, gap)
    assert share["observed"] == pytest.approx(0.5) and share["lower"] == pytest.approx(0.125)
    assert share["upper"] == pytest.approx(0.875) and share["gap"] == gap
    # No gap to recover (the ceiling is no better): no share.
    assert gap_share({"observed": 0.01}, {"observed": -0.01})["observed"] is None


def test_the_text_only_control_adds_the_findings_denials_to_the_impression():
    from pairaug_ray.text.train_text import training_text

    row = {
        schema.IMPRESSION: "Small left pleural effusion.",
        schema.FINDINGS: "No pneumothorax. There is a small left pleural effusion. No focal consolidation.",
        schema.REPORT: "x",
        schema.ORIGIN: schema.ORIGIN_REAL,
    }
    assert training_text(row, "impression+denials") == (
        "Small left pleural effusion. No pneumothorax. No focal consolidation."
    )
    # A synthetic pair's text is its report, whatever the mode.
    assert training_text({**row, schema.ORIGIN: schema.ORIGIN_INTER}, "impression+denials") == "x"


def test_report_rich_arms_need_the_report_rich_world_and_seeds_per_arm_fit():
    from pairaug_ray.config import StudyConfig

    with pytest.raises(ValueError, match="need study.regime: report-rich"):
        StudyConfig(arms=["real", "reports-as-written"])
    with pytest.raises(ValueError, match=r"seeds_per_arm\['real'\] is 4"):
        StudyConfig(arms=["real"], seeds=[0, 1], seeds_per_arm={"real": 4})
    s = StudyConfig(
        regime="report-rich",
        arms=["real-low", "real-all"],
        baseline="real-low",
        ceiling="real-all",
        seeds=[3, 5, 8],
        seeds_per_arm={"real-all": 2},
    )
    assert s.arm_seeds("real-all") == [3, 5] and s.arm_seeds("real-low") == [3, 5, 8]


def test_the_test_ledger_lets_one_design_score_the_test_split(tmp_path):
    from pairaug_ray.config import parse_config
    from pairaug_ray.pipeline.trained_models import derive
    from pairaug_ray.pipeline.study_world import check_test_ledger, record_test_scoring

    cfg = parse_config({"run": {"output_dir": str(tmp_path)}, "study": {"split": "test"}})
    out = str(tmp_path / "study")
    entries = check_test_ledger(cfg, out)
    assert entries == []
    assert record_test_scoring(cfg, out, entries)["designs_scored"] == 1
    # The same design again (a resumed or repeated run): allowed, still one design.
    assert record_test_scoring(cfg, out, check_test_ledger(cfg, out))["designs_scored"] == 1
    # Where and how it runs is not the design: more CPUs, more actors, another cache, more workers.
    bigger = parse_config(
        {
            "run": {"output_dir": str(tmp_path)},
            "ray": {"num_cpus": 16},
            "generate": {"max_actors": 8, "num_gpus": 1},
            "train": {"num_workers": 4, "batch_size": 128},
            "study": {"split": "test"},
        }
    )
    with pytest.raises(ConfigError, match=r"another design \(train.batch_size differ"):
        check_test_ledger(bigger, out)  # the batch size is the design's: it changes what is learned
    bigger = derive(bigger, {"train.batch_size": cfg.train.batch_size})
    assert check_test_ledger(bigger, out)
    # A setting the recorded design did not have (added to the code since) is no difference.
    ledger_path = f"{out}/test_ledger.json"
    recorded = json.loads(storage.read_text(ledger_path))
    recorded[0]["settings"].pop("prune.tau")
    storage.write_json(ledger_path, recorded)
    assert check_test_ledger(cfg, out)
    other = parse_config(
        {"run": {"output_dir": str(tmp_path)}, "study": {"split": "test"}, "prune": {"epsilon": 0.5}}
    )
    with pytest.raises(ConfigError, match=r"another design \(prune.epsilon differ"):
        check_test_ledger(other, out)
    # Scoring the validation split is never refused; a second look at the test split is recorded.
    check_test_ledger(
        other.model_copy(update={"study": other.study.model_copy(update={"split": "validate"})}), out
    )
    again = other.model_copy(update={"study": other.study.model_copy(update={"rescore_test": True})})
    ledger = record_test_scoring(again, out, check_test_ledger(again, out))
    assert ledger["designs_scored"] == 2 and ledger["entries"][-1]["rescore"] is True


def test_arms_with_fewer_seeds_are_compared_on_the_baselines_same_seeds():
    """study.seeds_per_arm: an arm of 3 seeds is compared with the baseline's seeds 0-2, paired."""
    import numpy as np

    from pairaug_ray.eval.metrics import seed_t_difference
    from pairaug_ray.eval.study import compare_arms

    rng = np.random.default_rng(0)
    y = (rng.random((200, 2)) < 0.4).astype(float)
    runs = [np.round(rng.random((200, 2)) + 0.5 * y, 3) for _ in range(5)]
    other = [r + 0.1 * y for r in runs[:3]]
    out = compare_arms(y, {"base": runs, "other": other}, ["a", "b"], "base", 60)
    assert out["other"]["seeds_compared"] == 3 and out["other"]["difference"]["paired_seeds"]
    again = seed_t_difference(y, runs[:3], other, ["a", "b"], 60)
    assert out["other"]["difference"]["macro"] == again["macro"]
