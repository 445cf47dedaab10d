"""CheXzero-style CLIP pretraining: loss, DDP gradients, preprocessing, AugImg, Ray Train runs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ddp import finish, init_gloo
from ray.data.expressions import col

from pairaug_ray import schema, storage
from pairaug_ray.config import AugImgConfig, parse_config
from pairaug_ray.models.augimg import augment_image
from pairaug_ray.models.clip import CHEXZERO_MEAN_255, CHEXZERO_STD_255, build_clip, chexzero_pixels, tokenize
from pairaug_ray.models.contrastive import DualEncoder, clip_loss
from pairaug_ray.models.tokenizer import EOS_ID, build_clip_tokenizer
from pairaug_ray.text.train_text import training_text


def test_loss_equals_a_direct_computation():
    rng = np.random.default_rng(0)
    img, txt = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    scale = 2.3
    a = img / np.linalg.norm(img, axis=1, keepdims=True)
    b = txt / np.linalg.norm(txt, axis=1, keepdims=True)
    logits = np.exp(scale) * a @ b.T

    def ce(m):  # mean over rows of -log softmax(m)[i, i]
        m = m - m.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(m).sum(axis=1)) - np.diag(m)))

    want = (ce(logits) + ce(logits.T)) / 2
    got = clip_loss(torch.tensor(img), torch.tensor(txt), torch.tensor(scale))
    assert float(got) == pytest.approx(want, rel=1e-6)


def _batch(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randn(n, 3, 64, 64, generator=g)
    ids = torch.randint(0, 1000, (n, 77), generator=g)
    ids[:, 0], ids[:, 20] = 49406, EOS_ID
    ids[:, 21:] = EOS_ID
    mask = (torch.arange(77) <= 20).long().expand(n, 77).clone()
    return pixels, ids, mask


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, world: int, store: str, out: str) -> None:
    init_gloo(rank, world, store)
    model = torch.nn.parallel.DistributedDataParallel(DualEncoder(build_clip("tiny", seed=1)))
    pixels, ids, mask = _batch(8)
    part = slice(rank * 4, rank * 4 + 4)
    img, txt, scale = model(pixels[part], ids[part], mask[part])
    clip_loss(img, txt, scale).backward()
    if rank == 0:
        torch.save(_grads(model.module), out)
    finish()


def test_two_ddp_workers_give_the_single_process_gradient(tmp_path):
    single = DualEncoder(build_clip("tiny", seed=1))
    pixels, ids, mask = _batch(8)
    img, txt, scale = single(pixels, ids, mask)
    clip_loss(img, txt, scale).backward()
    want = _grads(single)

    out = str(tmp_path / "grads.pt")
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "store"), out), nprocs=2, join=True)
    got = torch.load(out)
    assert set(got) == set(want) and len(want) > 20
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-4, atol=1e-6, msg=k)
    # Without the gathered negatives each worker would see a 4x4 problem: a different gradient.
    local = DualEncoder(build_clip("tiny", seed=1))
    i, t, sc = local(pixels[:4], ids[:4], mask[:4])
    clip_loss(i, t, sc).backward()
    assert not torch.allclose(_grads(local)["clip.logit_scale"], want["clip.logit_scale"], rtol=1e-3)


def test_chexzero_preprocessing_by_hand():
    image = np.full((100, 200), 255, np.uint8)  # wide, white
    x = chexzero_pixels(image, size=320, pad_size=320)  # no final resize: the padded square itself
    assert x.shape == (3, 320, 320) and np.array_equal(x[0], x[2])
    black, white = (0 - CHEXZERO_MEAN_255) / CHEXZERO_STD_255, (255 - CHEXZERO_MEAN_255) / CHEXZERO_STD_255
    # Long side 200 -> 320, so 100 -> 160 rows of image, centred: rows 80..239; zero padding above and below.
    assert x[0, 40, 160] == pytest.approx(black) and x[0, 280, 160] == pytest.approx(black)
    assert x[0, 160, 5] == pytest.approx(white, abs=1e-3) and x[0, 100, 300] == pytest.approx(white, abs=1e-3)
    small = chexzero_pixels(image, size=64, pad_size=320)
    assert small.shape == (3, 64, 64)
    assert small[0, 2, 32] == pytest.approx(black, abs=1e-3) and small[0, 32, 32] == pytest.approx(
        white, abs=1e-2
    )


def test_tokenize_truncates_and_keeps_the_end_token(tmp_path):
    tok = build_clip_tokenizer(tmp_path)
    ids, mask = tokenize(tok, ["small left effusion.", " ".join(["there is mild pulmonary edema."] * 40)])
    assert ids.shape == (2, 77) and mask.shape == (2, 77)
    n = int(mask[0].sum())
    assert ids[0, n - 1] == EOS_ID and ids[0, 0] == 49406 and mask[0, n:].sum() == 0
    assert mask[1].sum() == 77 and ids[1, -1] == EOS_ID


def test_training_text():
    real = {
        schema.ORIGIN: "real",
        schema.REPORT: "FINDINGS: a. IMPRESSION: b.",
        schema.FINDINGS: "Small effusion.",
        schema.IMPRESSION: "Effusion.",
    }
    assert training_text(real, "impression") == "Effusion."
    assert training_text(real, "findings+impression") == "Small effusion. Effusion."
    assert training_text({**real, schema.IMPRESSION: None}, "impression") == real[schema.REPORT]
    assert (
        training_text({**real, schema.IMPRESSION: float("nan")}, "impression") == real[schema.REPORT]
    )  # pandas
    synthetic = {**real, schema.ORIGIN: "inter", schema.REPORT: "New report."}
    assert training_text(synthetic, "impression") == "New report."


def test_real_and_synthetic_texts_train_in_one_form():
    """train.text_form pairaug (the default): real prose and an LLM's PairAug-style rewrite reach the
    CLIP in the same form, so punctuation and case cannot tell real from synthetic; the sentences
    stay (MedCutMix cuts them)."""
    from pairaug_ray.config import TrainConfig
    from pairaug_ray.text.sections import split_sentences
    from pairaug_ray.text.train_text import pairaug_form

    assert TrainConfig().text_form == "pairaug"
    real = {
        schema.ORIGIN: "real",
        schema.IMPRESSION: "Mild pulmonary edema. No pleural effusion.",
        schema.REPORT: "",
    }
    synthetic = {schema.ORIGIN: "inter", schema.REPORT: "no pulmonary edema,small right pleural effusion"}
    r, s = (training_text(x, "impression", "pairaug") for x in (real, synthetic))
    assert r == "mild pulmonary edema,no pleural effusion"
    assert s == synthetic[schema.REPORT]
    allowed = set("abcdefghijklmnopqrstuvwxyz0123456789 ,")
    assert set(r) <= allowed and set(s) <= allowed
    assert [x.text for x in split_sentences(r)] == ["mild pulmonary edema", "no pleural effusion"]
    tricky = "FINDINGS: Heart size is normal.\n1. Small effusion, unchanged.\n2. No pneumothorax!"
    once = pairaug_form(tricky)
    assert once == pairaug_form(once) and once.islower() and "." not in once and "!" not in once
    assert training_text(real, "impression", "as_written") == real[schema.IMPRESSION]


def test_augimg_keeps_size_and_range():
    g = torch.Generator().manual_seed(0)
    x = torch.from_numpy(
        chexzero_pixels(np.random.default_rng(0).integers(0, 255, (80, 120), dtype=np.uint8), 64)
    )
    cfg = AugImgConfig(enabled=True, blur_p=1.0, grayscale_p=1.0)
    outs = [augment_image(x, cfg, g) for _ in range(8)]
    for y in outs:
        assert y.shape == x.shape
        assert float(y.min()) >= float(x.min()) - 1e-5 and float(y.max()) <= float(x.max()) + 1e-5
    assert not torch.allclose(outs[0], outs[1])  # random


# --- Ray Train runs ---------------------------------------------------------------------------------------------


def _train_cfg(out: str, corpus: str, **train):
    return parse_config(
        {
            "run": {"output_dir": out, "seed": 0},
            "corpus": {"kind": "manifest", "manifest": corpus},
            "train": {
                "preset": "tiny",
                "num_workers": 2,
                "cpus_per_worker": 0.5,
                "batch_size": 16,
                "epochs": 4,
                "optimizer": "adamw",
                "lr": 5e-4,
                "synthetic_origins": [],
                "checkpoint_every_steps": 2,
                "text": "findings+impression",
                **train,
            },
        }
    )


@pytest.mark.slow
def test_a_run_on_s3_learns_survives_a_failed_worker_group_and_checkpoints_usable_models(
    ray_local, phantom_root, s3_bucket, tmp_path
):
    """Two DDP workers, MedCutMix on every batch, a checkpoint on S3 at each epoch end; a worker fails once
    in the second epoch, the worker group restarts from the first epoch's checkpoint on S3, and the
    run goes on to learn."""
    from transformers import CLIPModel

    from pairaug_ray.models.scorers import load_scorer
    from pairaug_ray.pairs import read_columns
    from pairaug_ray.pipeline.train import train_job
    from pairaug_ray.testing.faults import FailOnceAtStep

    train_rows = read_columns(phantom_root, [schema.SPLIT, schema.STATUS]).to_pylist()
    steps_per_epoch = sum(r == {"split": "train", "status": "ok"} for r in train_rows) // 16
    steps = 6 * steps_per_epoch
    mcm = {"enabled": True, "p": 1.0, "layer": 1}
    cfg = _train_cfg(
        "/unused",
        phantom_root,
        storage_path=f"{s3_bucket}/train",
        epochs=6,
        max_failures=1,
        medcutmix=mcm,
        checkpoint_every_steps=100,  # epoch ends only: six uploads to S3
    )
    summary = train_job(cfg, step_hook=FailOnceAtStep(steps_per_epoch + 1, tmp_path / "failed-once"))
    assert summary["data"]["real"]["pairs"] // 16 == steps_per_epoch
    assert summary["restored_from"] == [steps_per_epoch]
    assert summary["metrics"]["step"] == steps
    history = summary["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5, 6]
    assert [h["step"] for h in history] == [steps_per_epoch * e for e in range(1, 7)]
    # Better than chance (ln 16 for a batch of 16, where a collapsed model sits), and falling.
    assert history[-1]["loss"] < math.log(16) - 0.03 < history[0]["loss"], history
    # Every step mixed its global batch (counted once per step over both workers' rows); the phantom
    # reports give most rows a partner with an eligible diagnostic sentence.
    m = summary["metrics"]
    assert m["medcutmix_batches"] == steps and 0.3 * 16 * steps < m["medcutmix_rows"] <= 16 * steps
    assert math.isfinite(m["loss"])
    assert summary["checkpoint"].startswith(f"{s3_bucket}/train/clip/")
    # The checkpoint is a transformers CLIP folder: it loads as a model and as a pair scorer.
    local = str(tmp_path / "ckpt")
    storage.download_tree(summary["model"], local)
    assert CLIPModel.from_pretrained(local).config.vision_config.image_size == 64
    scorer = load_scorer(local)
    emb = scorer.embed_texts(["small left pleural effusion."])
    assert emb.shape == (1, 32)
    assert json.loads(storage.read_text(f"{summary['run']}/train_summary.json"))["model"] == summary["model"]


@pytest.mark.slow
def test_local_mode_runs_in_the_driver_and_keeps_its_checkpoints(ray_local, phantom_root, tmp_path):
    """num_workers 0: Ray Train's local mode, for debugging; its checkpoints still land in storage."""
    from transformers import CLIPModel

    from pairaug_ray.pipeline.train import train_job

    summary = train_job(_train_cfg(str(tmp_path / "run"), phantom_root, num_workers=0, epochs=1))
    steps = summary["data"]["real"]["pairs"] // 16
    assert summary["metrics"]["step"] == steps
    assert summary["checkpoint"] == str(tmp_path / "run" / "train" / "clip" / f"checkpoint_step{steps:08d}")
    assert CLIPModel.from_pretrained(summary["model"]).config.projection_dim == 32


@pytest.mark.slow
def test_early_stopping_stops_every_worker_at_the_same_step_and_keeps_the_best(
    ray_local, phantom_root, tmp_path
):
    """train.early_stopping_patience with two DDP workers: rank 0 judges val_auc and every rank stops
    at the same checkpoint (a rank left training would hang in the next all-reduce). An improvement
    of 1.0 AUC is impossible, so the run stops at its third checkpoint (patience 2), long before the
    40-step cap, and its model is the best checkpoint by validation."""
    from pairaug_ray.pipeline.train import train_job

    cfg = _train_cfg(
        str(tmp_path / "run"),
        phantom_root,
        steps=40,
        early_stopping_patience=2,
        early_stopping_min_delta=1.0,
    )
    summary = train_job(cfg)
    assert summary["stopped_early"] == {"step": 6, "patience": 2}
    assert summary["metrics"]["step"] == 6 and [v["step"] for v in summary["val_history"]] == [2, 4, 6]
    best = max(summary["val_history"], key=lambda v: (v["val_auc"], -v["step"]))
    assert summary["best"]["step"] == best["step"] and summary["best"]["val_auc"] == best["val_auc"]
    assert summary["model"] == summary["best"]["model"]
    with pytest.raises(ValueError, match="needs validation"):
        _train_cfg(str(tmp_path / "x"), phantom_root, early_stopping_patience=2, validation=False)


def test_real_fraction_draws_whole_patients_and_only_their_synthetic_pairs(ray_local, phantom_root, tmp_path):
    """train.real_fraction: the real pairs of a seeded, nested draw of patients, and only the
    synthetic pairs made from them (here: one fake AugText pair per real training pair)."""
    import pyarrow.compute as pc

    from pairaug_ray.manifest import write_manifest
    from pairaug_ray.pairs import read_columns
    from pairaug_ray.pipeline.train.data import training_pairs

    real = read_columns(phantom_root, [schema.PAIR_ID, schema.PATIENT_ID, schema.SPLIT, schema.STATUS])
    train = real.filter(pc.equal(real[schema.SPLIT], "train")).to_pylist()
    from ray.data.expressions import col

    from pairaug_ray.manifest import read_manifest

    rows = read_manifest(phantom_root).filter(expr=col(schema.SPLIT) == "train").take_all()
    syn = [
        {
            **r,
            schema.PAIR_ID: f"syn-{r[schema.PAIR_ID]}",
            schema.PARENT_ID: r[schema.PAIR_ID],
            schema.ORIGIN: "augtext",
            schema.KEPT: True,
        }
        for r in rows
    ]
    write_manifest(syn, str(tmp_path / "syn"))

    def pairs(fraction):
        cfg = _train_cfg(
            str(tmp_path / "run"),
            phantom_root,
            real_fraction=fraction,
            synthetic_origins=["augtext"],
            synthetic=str(tmp_path / "syn"),
        )
        pairs, info = training_pairs(cfg)
        got = pairs.one_epoch(pairs.real, pairs.synthetic, seed=0).take_all()
        return (
            {r[schema.PAIR_ID] for r in got if r[schema.ORIGIN] == "real"},
            {r[schema.PAIR_ID] for r in got if r[schema.ORIGIN] == "augtext"},
            info,
        )

    half_real, half_syn, info = pairs(0.5)
    all_real, all_syn, _ = pairs(1.0)
    assert info["real"]["fraction"] == 0.5 and info["pairs"] == len(half_real) + len(half_syn)
    assert all_real == {r[schema.PAIR_ID] for r in train if r[schema.STATUS] == "ok"}
    assert 0 < len(half_real) < len(all_real) and half_real < all_real
    assert half_syn == {f"syn-{p}" for p in half_real} and all_syn == {f"syn-{p}" for p in all_real}
    patient = {r[schema.PAIR_ID]: r[schema.PATIENT_ID] for r in train}
    drawn = {patient[p] for p in half_real}
    assert {p for p, who in patient.items() if who in drawn} == half_real  # whole patients


def _three_augtext_pairs_per_real_pair(phantom_root: str, out: str) -> int:
    from pairaug_ray.manifest import read_manifest, write_manifest

    rows = read_manifest(phantom_root).filter(expr=col(schema.SPLIT) == "train").take_all()
    syn = [
        {
            **r,
            schema.PAIR_ID: f"syn{k}-{r[schema.PAIR_ID]}",
            schema.PARENT_ID: r[schema.PAIR_ID],
            schema.ORIGIN: "augtext",
            schema.KEPT: True,
        }
        for r in rows
        for k in range(3)
    ]
    write_manifest(syn, out)
    return len(rows)


def _sampled_epochs_cfg(phantom_root: str, tmp_path, **train):
    """A run on the real pairs plus a pool of three AugText pairs per real pair, of which each
    epoch samples half a real pair's worth (train.synthetic_ratio 0.5); and the real pairs' count."""
    n_rows = _three_augtext_pairs_per_real_pair(phantom_root, str(tmp_path / "syn"))
    cfg = _train_cfg(
        str(tmp_path / "run"),
        phantom_root,
        synthetic_origins=["augtext"],
        synthetic=str(tmp_path / "syn"),
        synthetic_ratio=0.5,
        **train,
    )
    return cfg, n_rows


def test_synthetic_ratio_draws_a_new_sample_every_epoch(ray_local, phantom_root, tmp_path):
    """train.synthetic_ratio: each epoch (an execution of the dataset, as Ray Train runs it through
    streaming_split) trains on a fresh sample of the synthetic pool, so a run sees all of it; the
    real pairs are in every epoch."""
    from pairaug_ray.pipeline.train.data import training_pairs

    cfg, n_rows = _sampled_epochs_cfg(phantom_root, tmp_path)
    pairs, info = training_pairs(cfg)
    n_real, n_pool = info["real"]["pairs"], info["synthetic"]["pool"]
    assert n_pool == 3 * n_rows and pairs.synthetic_fraction == pytest.approx(0.5 * n_real / n_pool)
    assert info["pairs"] == n_real + round(0.5 * n_real)
    (split,) = pairs.one_epoch(pairs.real, pairs.synthetic, seed=7).streaming_split(1, equal=True)
    epochs = []
    for _ in range(4):
        got = [r[schema.PAIR_ID] for r in split.iter_rows()]
        epochs.append({p for p in got if p.startswith("syn")})
        assert len(got) - len(epochs[-1]) == n_real  # every real pair, every epoch
    assert all(0.5 * n_real * 0.6 < len(e) < 0.5 * n_real * 1.4 for e in epochs)
    assert len({frozenset(e) for e in epochs}) == 4  # a different sample each epoch
    seen = set().union(*epochs)
    assert len(seen) > 1.6 * len(epochs[0])  # ... so the run sees far more of the pool than one sample


@pytest.mark.timeout(400)  # before the fix this waited forever: fail instead (generous: a loaded machine)
def test_a_sampled_epoch_runs_while_the_training_workers_hold_every_cpu(ray_local, phantom_root, tmp_path):
    """The epoch's synthetic draw runs inside Ray Train, after its workers took their CPUs (in the
    study one worker holds 1.5 of 2): with the ops at Ray Data's default of 1 CPU the draw never ran
    and training waited forever (found by the study's synthetic-ratio experiment)."""
    import ray

    from pairaug_ray.pipeline.train.data import training_pairs

    cfg, _ = _sampled_epochs_cfg(phantom_root, tmp_path)
    pairs, info = training_pairs(cfg)

    @ray.remote(num_cpus=ray.cluster_resources()["CPU"])
    class TrainingWorkers:
        def ready(self) -> bool:
            return True

    holder = TrainingWorkers.remote()
    try:
        ray.get(holder.ready.remote())
        (split,) = pairs.one_epoch(pairs.real, pairs.synthetic, seed=3).streaming_split(1, equal=True)
        got = [r[schema.PAIR_ID] for r in split.iter_rows()]
    finally:
        ray.kill(holder)
    assert info["real"]["pairs"] < len(got) < info["real"]["pairs"] + info["synthetic"]["pool"]


@pytest.mark.slow
def test_a_synthetic_ratio_run_trains_every_epoch_on_cached_tensors(ray_local, phantom_root, tmp_path):
    """The loop with sampled epochs: each epoch runs until its sample ends, from the cached tensors."""
    from pairaug_ray.pipeline.train import train_job

    cfg, _ = _sampled_epochs_cfg(
        phantom_root,
        tmp_path,
        num_workers=0,  # Ray Train's local mode: the same loop and data, no worker group to start
        epochs=2,
        cache_preprocessed="always",
        checkpoint_every_steps=1000,
    )
    summary = train_job(cfg)
    data = summary["data"]
    assert (
        data["sampled_epochs"] and data["cached"] and data["synthetic"]["pool"] == 3 * data["real"]["pairs"]
    )
    per_epoch = data["pairs"] // 16
    assert [h["epoch"] for h in summary["history"]] == [1, 2]
    steps = np.diff([0] + [h["step"] for h in summary["history"]]).tolist()
    assert all(abs(n - per_epoch) <= max(2, per_epoch // 4) for n in steps), (steps, per_epoch)
    assert summary["metrics"]["step"] == sum(steps)


def test_validation_images_are_a_seeded_sample_of_whole_patients():
    """The checkpoint-ranking images: whole patients drawn at random (seeded), not the first rows."""
    import random

    from pairaug_ray.pairs import first_patients

    rows = [
        {schema.PATIENT_ID: f"p{p:03d}", schema.IMAGE_URI: f"p{p:03d}/{k}.png"}
        for p in range(200)
        for k in range(1 + p % 3)
    ]
    picked = first_patients(rows, 50, seed=0)
    patients = {r[schema.PATIENT_ID] for r in picked}
    assert 47 <= len(picked) <= 50
    assert sorted(r[schema.IMAGE_URI] for r in picked) == sorted(
        r[schema.IMAGE_URI] for r in rows if r[schema.PATIENT_ID] in patients
    )  # whole patients
    assert max(patients) > "p100" and min(patients) < "p050"  # spread over the file, not its start
    shuffled = random.Random(1).sample(rows, len(rows))
    assert first_patients(shuffled, 50, seed=0) == picked  # file order does not matter
    assert patients < {r[schema.PATIENT_ID] for r in first_patients(rows, 100, seed=0)}  # nested
    assert {r[schema.PATIENT_ID] for r in first_patients(rows, 50, seed=1)} != patients
    assert len(first_patients(rows[:3], 1, seed=0)) >= 1  # at least one patient, even past the limit


def test_checkpoints_since_best_counts_from_the_first_checkpoint_near_the_best():
    """Early stopping's count, with the default min_delta 0 (which raised on every run until
    2026-12-06: no checkpoint was *above* the best), ties, and unscored checkpoints."""
    from pairaug_ray.pipeline.train.loop import checkpoints_since_best

    assert checkpoints_since_best([], 0.0) is None and checkpoints_since_best([None], 0.0) is None
    assert checkpoints_since_best([0.6], 0.0) == 0
    assert checkpoints_since_best([0.6, 0.7, 0.65, 0.68], 0.0) == 2
    assert checkpoints_since_best([0.6, 0.7, 0.7], 0.0) == 1  # a tie is not an improvement
    assert checkpoints_since_best([0.6, 0.7, 0.69], 0.02) == 1  # within min_delta of the best
    assert checkpoints_since_best([0.6, 0.7, float("nan"), None], 0.0) == 2
