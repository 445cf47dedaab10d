"""Scorers against hand-computed embeddings, PairAug's two pruning rules on hand-made score tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch

from pairaug_ray import schema
from pairaug_ray.models.scorers import MEDCLIP_MEAN, MEDCLIP_STD, detect_kind, load_scorer
from pairaug_ray.stages.prune import prune_batch
from pairaug_ray.stages.score import inter_score, intra_scores

REPORTS = [
    "There is a small left pleural effusion.",
    "No acute cardiopulmonary process. Heart size is normal.",
]


def _unit(x: torch.Tensor) -> np.ndarray:
    return (x / x.norm(dim=-1, keepdim=True)).detach().numpy()


@pytest.fixture(scope="module")
def medclip_dir(tmp_path_factory) -> str:
    from pairaug_ray.models.tiny import make_tiny_medclip

    return make_tiny_medclip(tmp_path_factory.mktemp("medclip"), seed=3)


def test_hf_clip_embeddings_match_a_direct_computation(tiny_models):
    from transformers import CLIPModel, CLIPTokenizer

    path = tiny_models["scorer"]
    assert detect_kind(path) == "hf-clip"
    scorer = load_scorer(path)
    model = CLIPModel.from_pretrained(path).eval()
    cfg = json.loads(Path(path, "processor_config.json").read_text())["image_processor"]
    size = cfg["crop_size"]["height"]
    rng = np.random.default_rng(0)
    square = rng.integers(0, 256, (size, size), dtype=np.uint8)
    tall = rng.integers(0, 256, (size + 32, size), dtype=np.uint8)  # shortest edge = size: only a centre crop
    # By hand: grey -> RGB, centre crop, rescale to [0, 1], normalise with the processor's statistics.
    mean, std = cfg["image_mean"][0], cfg["image_std"][0]
    crops = [square, tall[16 : 16 + size]]
    pixels = torch.stack(
        [torch.from_numpy((c / 255.0 - mean) / std).float().expand(3, size, size) for c in crops]
    )
    with torch.no_grad():
        pooled = model.vision_model(pixel_values=pixels).pooler_output
        want_img = _unit(model.visual_projection(pooled))
    got_img = scorer.embed_images([square, tall])
    np.testing.assert_allclose(got_img, want_img, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(got_img, axis=1), 1.0, atol=1e-6)

    # Text: the real CLIP BPE, the hidden state at the end token, the projection. Each report alone,
    # so the batch's padding must not change the scorer's embeddings.
    tok = CLIPTokenizer.from_pretrained(path)
    want_txt = []
    for report in REPORTS:
        ids = torch.tensor([tok(report)["input_ids"]])
        assert ids[0, 0] == tok.bos_token_id and ids[0, -1] == tok.eos_token_id
        with torch.no_grad():
            hidden = model.text_model(input_ids=ids).last_hidden_state[0, -1]
            want_txt.append(_unit(model.text_projection(hidden)))
    got_txt = scorer.embed_texts(REPORTS)
    np.testing.assert_allclose(got_txt, np.stack(want_txt), atol=2e-5)

    # The scores: cosine, and logit scale x cosine in `scaled` mode.
    scale = float(model.logit_scale.detach().exp())
    assert scorer.logit_scale == pytest.approx(scale)
    cos = float(np.dot(want_img[0], want_txt[0]))
    assert inter_score(got_img[0], got_txt[0], mode="cosine", logit_scale=scale) == pytest.approx(
        cos, abs=1e-5
    )
    assert inter_score(got_img[0], got_txt[0], mode="scaled", logit_scale=scale) == pytest.approx(
        cos * scale, abs=1e-4
    )


def test_medclip_checkpoint_layout_and_embeddings(medclip_dir):
    from transformers import AutoTokenizer, BertConfig, BertModel, SwinConfig, SwinModel

    assert detect_kind(medclip_dir) == "medclip"
    scorer = load_scorer(medclip_dir)
    state = torch.load(f"{medclip_dir}/pytorch_model.bin", weights_only=True)
    assert scorer.logit_scale == pytest.approx(1 / 0.07, rel=1e-5)

    swin = SwinModel(SwinConfig.from_pretrained(f"{medclip_dir}/swin")).eval()
    swin.load_state_dict(
        {k[len("vision_model.model.") :]: v for k, v in state.items() if k.startswith("vision_model.model.")}
    )
    bert = BertModel(BertConfig.from_pretrained(f"{medclip_dir}/bert")).eval()
    bert.load_state_dict(
        {k[len("text_model.model.") :]: v for k, v in state.items() if k.startswith("text_model.model.")},
        strict=False,
    )
    image = np.random.default_rng(1).integers(0, 256, (224, 224), dtype=np.uint8)  # already 224: no resize
    x = torch.from_numpy((image / 255.0 - MEDCLIP_MEAN) / MEDCLIP_STD).float().expand(1, 3, 224, 224)
    with torch.no_grad():
        want_img = _unit(swin(pixel_values=x).pooler_output @ state["vision_model.projection_head.weight"].T)
    np.testing.assert_allclose(scorer.embed_images([image]), want_img, atol=2e-5)

    # MedCLIP's text embedding: the mean over tokens of the mean of hidden layers 1, 2 and the last.
    tok = AutoTokenizer.from_pretrained(f"{medclip_dir}/bert")
    enc = tok([REPORTS[0]], return_tensors="pt")
    with torch.no_grad():
        hs = bert(**enc, output_hidden_states=True).hidden_states
        pooled = (hs[1] + hs[2] + hs[-1]).div(3).mean(dim=1)
        want_txt = _unit(pooled @ state["text_model.projection_head.weight"].T)
    np.testing.assert_allclose(scorer.embed_texts([REPORTS[0]]), want_txt, atol=2e-5)
    # Batched with a longer report (so padded): the same embedding as alone, as PairAug scored one
    # report at a time.
    np.testing.assert_allclose(scorer.embed_texts([REPORTS[0], REPORTS[1] * 3])[:1], want_txt, atol=2e-5)

    # A non-square image is squashed to 224 x 224 as PairAug's pruning scripts did (no black band
    # of MedCLIP's own pad-to-square): a white image stays white everywhere, and a left/right split
    # stays at the middle column.
    wide = np.full((100, 200), 255, np.uint8)
    pre = scorer.preprocess(wide)[0]
    assert pre.shape == (224, 224)
    white = (1 - MEDCLIP_MEAN) / MEDCLIP_STD
    assert float(pre.min()) == pytest.approx(white, abs=1e-4)  # no padding band
    wide[:, :100] = 0
    pre = scorer.preprocess(wide)[0]
    assert float(pre[5, 100]) < 0 < float(pre[5, 124]) and float(pre[112, 5]) < 0 < float(pre[112, 218])


def test_medclip_folder_with_missing_parts_is_named(medclip_dir, tmp_path):
    import shutil

    broken = tmp_path / "medclip"
    shutil.copytree(medclip_dir, broken)
    (broken / "pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        load_scorer(str(broken), kind="medclip")
    with pytest.raises(ValueError, match="score.kind"):
        detect_kind(str(tmp_path))


def test_intra_scores_by_hand():
    e = np.eye(4, dtype=np.float32)
    orig_img, orig_txt = e[0], e[1]
    new_img = (e[0] + e[2]) / math.sqrt(2)
    new_txt = (e[1] + e[2]) / math.sqrt(2)
    s1, s2, s3 = intra_scores(new_img, new_txt, orig_img, orig_txt)
    assert s1 == pytest.approx(0.5)  # share e2 only
    # image change = (e0 + e2)/sqrt2 - e0; text change = (e1 + e2)/sqrt2 - e1: same e2 part, opposite-sign rest
    d_img, d_txt = new_img - orig_img, new_txt - orig_txt
    assert s2 == pytest.approx(float(d_img @ d_txt / np.linalg.norm(d_img) / np.linalg.norm(d_txt)))
    assert s2 == pytest.approx(0.5 / (2 - math.sqrt(2)))
    assert s3 == pytest.approx(1 / math.sqrt(2))
    # No change at all: S2 is defined as 0 rather than NaN.
    assert intra_scores(orig_img, orig_txt, orig_img, orig_txt)[1] == 0.0


def _rows(*specs) -> pa.Table:
    rows = []
    for i, (origin, status, scores) in enumerate(specs):
        rows.append(
            {
                schema.PAIR_ID: f"p{i}",
                schema.ORIGIN: origin,
                schema.STATUS: status,
                schema.IMAGE_URI: f"/x/{i}.png",
                schema.REPORT: "r",
                **scores,
            }
        )
    return schema.rows_to_table(rows)


def test_prune_batch_applies_tau_and_the_hybrid_rule():
    means = {schema.SCORE_S1: 0.30, schema.SCORE_S2: 0.10, schema.SCORE_S3: 0.90}
    intra = lambda s1, s2, s3: {schema.SCORE_S1: s1, schema.SCORE_S2: s2, schema.SCORE_S3: s3}  # noqa: E731
    table = _rows(
        ("inter", "ok", {schema.SCORE_A: 0.31}),  # > tau: kept
        ("inter", "ok", {schema.SCORE_A: 0.30}),  # not strictly greater: pruned
        ("inter", "error", {}),  # errored: never kept
        ("intra", "ok", intra(0.298, 0.098, 0.898)),  # every S_k > mean - 0.003: kept
        ("intra", "ok", intra(0.296, 0.2, 0.95)),  # S1 below its threshold: pruned
        ("intra", "ok", intra(0.4, 0.096, 0.95)),  # S2 below: pruned
        ("intra", "ok", intra(0.4, 0.2, 0.896)),  # S3 below: pruned
        ("augtext", "ok", {}),  # paraphrases are not pruned
        ("augtext", "skipped", {}),
    )
    out = prune_batch(table, tau=0.3, epsilon=0.003, means=means).to_pylist()
    assert [r[schema.KEPT] for r in out] == [True, False, False, True, False, False, False, True, False]
    info = json.loads(out[0][schema.PRUNING])
    assert info["tau"] == 0.3 and info["epsilon"] == 0.003
    assert info["thresholds"][schema.SCORE_S1] == pytest.approx(0.297)
    # Other thresholds on the same scores: only the flags change.
    again = prune_batch(table, tau=0.0, epsilon=0.5, means=means).to_pylist()
    assert [r[schema.KEPT] for r in again] == [True, True, False, True, True, True, True, True, False]
    # Every row not kept says why; kept rows say nothing.
    reasons = [r[schema.PRUNE_REASON] for r in out]
    assert reasons[0] is None and reasons[3] is None and reasons[7] is None
    assert reasons[1] == "S_a 0.3 is not above tau 0.3" and reasons[2] == "status error"
    assert reasons[4].startswith(f"{schema.SCORE_S1} 0.296 is not above its mean - epsilon 0.29")
    # The near-duplicate rule: a pair above tau but a copy of a training image is dropped, with
    # the training pair named; one that fails both says both.
    ids = [r[schema.PAIR_ID] for r in table.to_pylist()]
    nearest = {ids[0]: (0.999, "train-7"), ids[1]: (0.999, "train-8")}
    near = prune_batch(
        table, tau=0.3, epsilon=0.003, means=means, nearest=nearest, near_threshold=0.99
    ).to_pylist()
    assert near[0][schema.KEPT] is False and near[0][schema.NEAREST_TRAIN_SIMILARITY] == 0.999
    assert near[0][schema.PRUNE_REASON] == "near-duplicate of training pair train-7 (cosine 0.9990 > 0.9900)"
    assert near[1][schema.PRUNE_REASON].count(";") == 1 and "train-8" in near[1][schema.PRUNE_REASON]
    assert [r[schema.KEPT] for r in near][2:] == [r[schema.KEPT] for r in out][2:]


def test_intra_means_are_global_across_files(tmp_path):
    """Two files with very different S1: a per-file mean would keep a row the global mean prunes."""
    import pyarrow.parquet as pq

    from pairaug_ray.pipeline.prune import intra_means

    def dataset(name: str, tables: list[pa.Table]) -> str:
        (tmp_path / name / "manifest").mkdir(parents=True)
        for i, t in enumerate(tables):  # as write_manifest leaves them: only the columns a block had
            pq.write_table(schema.conform(t), tmp_path / name / "manifest" / f"part-{i}.parquet")
        return str(tmp_path / name)

    low = [
        ("intra", "ok", {schema.SCORE_S1: v, schema.SCORE_S2: 0.0, schema.SCORE_S3: 0.5})
        for v in (0.0, 0.1, 0.2)
    ]
    high = [
        ("intra", "ok", {schema.SCORE_S1: v, schema.SCORE_S2: 0.0, schema.SCORE_S3: 0.5})
        for v in (0.6, 0.7, 0.8)
    ]
    blocks = [_rows(*low), _rows(*high).set_column(0, schema.PAIR_ID, pa.array(["q0", "q1", "q2"]))]
    blocks.append(
        _rows(("inter", "ok", {schema.SCORE_A: 0.9}), ("intra", "error", {})).set_column(
            0, schema.PAIR_ID, pa.array(["r0", "r1"])
        )
    )
    means = intra_means(dataset("scored", blocks))
    assert means[schema.SCORE_S1] == pytest.approx(0.4)  # over the six ok IntraAug rows only
    assert means[schema.SCORE_S3] == pytest.approx(0.5)
    pruned = pa.concat_tables(
        [prune_batch(b, tau=0.3, epsilon=0.003, means=means) for b in blocks[:2]]
    ).to_pylist()
    # 0.2 is above its own block's mean (0.1) but below the global one: pruned.
    assert [r[schema.KEPT] for r in pruned] == [False, False, False, True, True, True]
    # No IntraAug rows at all: no means, nothing to prune by them.
    assert intra_means(dataset("no-intra", blocks[2:])) == dict.fromkeys(
        [schema.SCORE_S1, schema.SCORE_S2, schema.SCORE_S3]
    )


def test_unreadable_images_are_row_errors_and_the_rest_is_scored(tiny_models, tmp_path):
    """The score stage on a batch with a missing image, a corrupt one and an IntraAug edit whose
    original is gone: those rows fail with the image named, the readable pair is scored."""

    from pairaug_ray import images as image_io
    from pairaug_ray.config import ScoreConfig
    from pairaug_ray.stages.score import ScorePairs

    good = image_io.write_png(np.full((64, 64), 120, np.uint8), str(tmp_path / "img"))[0]
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not image data")
    base = {
        schema.STATUS: "ok",
        schema.REPORT: "Small left pleural effusion.",
        schema.SOURCE_REPORT: "No effusion.",
    }
    rows = [
        {**base, schema.PAIR_ID: "good", schema.ORIGIN: "inter", schema.IMAGE_URI: good},
        {
            **base,
            schema.PAIR_ID: "missing",
            schema.ORIGIN: "inter",
            schema.IMAGE_URI: str(tmp_path / "gone.png"),
        },
        {**base, schema.PAIR_ID: "corrupt", schema.ORIGIN: "inter", schema.IMAGE_URI: str(corrupt)},
        {
            **base,
            schema.PAIR_ID: "no-original",
            schema.ORIGIN: "intra",
            schema.IMAGE_URI: good,
            schema.SOURCE_IMAGE_URI: str(tmp_path / "real-gone.png"),
        },
    ]
    stage = ScorePairs(ScoreConfig(), tiny_models["scorer"], str(tmp_path / "cache"))
    out = {r[schema.PAIR_ID]: r for r in stage(schema.rows_to_table(rows)).to_pylist()}
    assert out["good"][schema.STATUS] == "ok" and out["good"][schema.SCORE_A] is not None
    assert out["missing"][schema.STATUS] == "error" and "gone.png" in out["missing"][schema.ERROR]
    assert out["corrupt"][schema.STATUS] == "error" and "corrupt.png" in out["corrupt"][schema.ERROR]
    assert (
        out["no-original"][schema.STATUS] == "error" and "real-gone.png" in out["no-original"][schema.ERROR]
    )
