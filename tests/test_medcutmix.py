"""MedCutMix units: sentence choice follows the labels; the patch mask follows lambda; only the
chosen patches change; the manual ViT forward equals CLIP's own."""

from __future__ import annotations

import math
import random

import pytest
import torch

from pairaug_ray.models.clip import build_clip
from pairaug_ray.models.medcutmix import (
    finish_from,
    hidden_states_at,
    last_hidden_from,
    mixed_image_features,
    patch_attention,
    top_patch_mask,
)
from pairaug_ray.text.cutmix import diagnostic_sentences, sentence_cutmix
from pairaug_ray.text.labeler import label_report

REPORT = "Heart size is normal. No pleural effusion. No pneumothorax."
PARTNER = "There is a moderate right pleural effusion. Mild cardiomegaly. Support devices in place. No pneumothorax."


def test_diagnostic_sentences_are_positive_findings_only():
    found = {d.text: d.findings for d in diagnostic_sentences(PARTNER)}
    assert found == {
        "There is a moderate right pleural effusion.": {"Pleural Effusion"},
        "Mild cardiomegaly.": {"Cardiomegaly"},
    }


def test_sentence_cutmix_respects_the_labels():
    for seed in range(10):
        mix = sentence_cutmix(REPORT, PARTNER, random.Random(seed))
        assert mix is not None and mix.finding in {"Pleural Effusion", "Cardiomegaly"}
        # The negated sentence about the same finding is replaced, so the report does not contradict
        # itself, and the mixed report now states the finding as present.
        assert mix.replaced in {"No pleural effusion.", "Heart size is normal."}
        assert mix.replaced not in mix.text and mix.sentence in mix.text
        assert label_report(mix.text, findings_impression_only=False).labels[mix.finding] == 1
    # A partner whose findings the report already states: nothing to mix.
    assert sentence_cutmix(PARTNER, "Moderate right pleural effusion.", random.Random(0)) is None
    # Without a contradicting sentence the partner's sentence is appended.
    appended = sentence_cutmix(
        "No pneumothorax.", "Mild cardiomegaly.", random.Random(0), replace_contradiction=False
    )
    assert appended.text == "No pneumothorax. Mild cardiomegaly." and appended.replaced is None
    # In PairAug's form (train.text_form pairaug) the sentence is joined with a comma, so it stays a
    # sentence of its own and the mixed text stays in that form.
    from pairaug_ray.text.train_text import pairaug_form

    mixed = sentence_cutmix(pairaug_form(REPORT), pairaug_form(PARTNER), random.Random(0))
    assert mixed is not None and mixed.text == pairaug_form(mixed.text)
    assert label_report(mixed.text, findings_impression_only=False).labels[mixed.finding] == 1
    appended = sentence_cutmix(
        "no pneumothorax", "mild cardiomegaly", random.Random(0), replace_contradiction=False
    )
    assert appended.text == "no pneumothorax,mild cardiomegaly"


def test_top_patch_mask_follows_lambda():
    attention = torch.softmax(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    lam = torch.tensor([0.0, 0.1, 0.25, 0.5, 1.0])
    mask = top_patch_mask(attention, lam)
    assert mask.sum(1).tolist() == [math.ceil(v * 16) for v in lam.tolist()]
    # The chosen patches are the most attended ones.
    for row in range(5):
        k = int(mask[row].sum())
        if k:
            assert set(mask[row].nonzero().flatten().tolist()) == set(attention[row].topk(k).indices.tolist())


@pytest.fixture(scope="module")
def clip():
    return build_clip("tiny", seed=2).eval()


def test_manual_vit_forward_equals_clips(clip):
    pixels = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = clip.get_image_features(pixel_values=pixels)
        want = want if isinstance(want, torch.Tensor) else want.pooler_output
        for layer in (0, 1):
            got = finish_from(clip, hidden_states_at(clip, pixels, layer), layer)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        nothing = torch.zeros(2, 16, dtype=torch.bool)
        torch.testing.assert_close(
            mixed_image_features(clip, pixels, pixels.flip(0), nothing, 0), want, rtol=1e-5, atol=1e-5
        )


def test_only_the_chosen_patches_change(clip):
    g = torch.Generator().manual_seed(3)
    pixels, partner = torch.randn(2, 3, 64, 64, generator=g), torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        text = torch.randn(2, 32, generator=g)
        att = patch_attention(clip, text, hidden_states_at(clip, partner, 0))
        assert att.shape == (2, 16) and torch.allclose(att.sum(1), torch.ones(2))
        mask = top_patch_mask(att, torch.tensor([0.25, 0.5]))
        h, hp = hidden_states_at(clip, pixels, 0), hidden_states_at(clip, partner, 0)
        m = torch.cat([torch.zeros(2, 1, dtype=torch.bool), mask], 1)
        mixed = torch.where(m.unsqueeze(-1), hp, h)
        changed = (mixed != h).any(-1)
        assert torch.equal(changed, m & (hp != h).any(-1)) and changed[:, 0].sum() == 0  # CLS kept
        assert changed.sum(1).tolist() == [4, 8]
        out = mixed_image_features(clip, pixels, partner, mask, 0)
        torch.testing.assert_close(out, finish_from(clip, mixed, 0))
        assert not torch.allclose(out, finish_from(clip, h, 0))


# --- a mixed batch: text and image sides come from the same partner and the same finding ----------------------

BATCH_TEXTS = [
    "Heart size is normal. No pleural effusion. No pneumothorax.",
    "There is a moderate right pleural effusion. No pneumothorax.",
    "Mild cardiomegaly. Lungs are clear.",
    "Right lower lobe consolidation. No pleural effusion.",
    "Small left apical pneumothorax. Heart size is normal.",
    "No acute cardiopulmonary process.",
]


def _collate_batch(p: float, seed: int = 0, rank: int = 0, texts: list[str] = BATCH_TEXTS):
    import tempfile

    import numpy as np

    from pairaug_ray.config import MedCutMixConfig
    from pairaug_ray.models.clip import tokenize
    from pairaug_ray.models.tokenizer import build_clip_tokenizer
    from pairaug_ray.stages.train_data import MedCutMixCollate
    from pairaug_ray.text.cutmix import analyse

    with tempfile.TemporaryDirectory() as tmp:
        tok = build_clip_tokenizer(tmp)
    ids, mask = tokenize(tok, texts)
    n = len(texts)
    batch = {
        "pixel_values": np.random.default_rng(seed).standard_normal((n, 3, 64, 64)).astype("float32"),
        "input_ids": ids,
        "attention_mask": mask,
        "origin": np.zeros(n, np.int64),
        "text": np.asarray(texts, dtype=object),
        "text_analysis": np.asarray([analyse(t).to_json() for t in texts], dtype=object),
    }
    collate = MedCutMixCollate(MedCutMixConfig(enabled=True, p=p, lam=(0.25, 0.5)), tok, seed, rank)
    return batch, collate, tok


def test_cached_analysis_gives_the_same_mix_as_the_labeler():
    from pairaug_ray.text.cutmix import ReportAnalysis, analyse, cutmix_analysed

    for seed in range(5):
        a = sentence_cutmix(REPORT, PARTNER, random.Random(seed))
        cached = [ReportAnalysis.from_json(analyse(t).to_json()) for t in (REPORT, PARTNER)]
        b = cutmix_analysed(REPORT, cached[0], cached[1], random.Random(seed))
        assert a == b


def test_collate_mixes_whole_batches_with_probability_p():
    batch, never, _ = _collate_batch(p=0.0)
    out = never(batch)
    assert out["mix"] is None and torch.equal(out["input_ids"], torch.as_tensor(batch["input_ids"]))
    # The per-batch coin is the same on every worker (same seed, different rank): a global batch is
    # mixed or not as a whole.
    _, c0, _ = _collate_batch(p=0.5, seed=4, rank=0)
    _, c1, _ = _collate_batch(p=0.5, seed=4, rank=1)
    flips0 = [c0(batch)["mix"] is not None for _ in range(40)]
    flips1 = [c1(batch)["mix"] is not None for _ in range(40)]
    assert flips0 == flips1 and 8 < sum(flips0) < 32


def test_text_and_image_sides_refer_to_the_same_finding(clip):
    from pairaug_ray.models.clip import tokenize
    from pairaug_ray.models.contrastive import DualEncoder
    from pairaug_ray.text.labeler import label_report

    batch, collate, tok = _collate_batch(p=1.0, seed=1)
    out = collate(batch)
    mix = out["mix"]
    partner, active = mix["partner"].tolist(), mix["active"].tolist()
    assert sum(active) >= 2
    # The tokens the model sees are the mixed reports' and the inserted sentences'.
    assert torch.equal(out["input_ids"], torch.from_numpy(tokenize(tok, mix["texts"])[0]))
    inserted = [s or " " for s in mix["sentences"]]
    assert torch.equal(mix["sentence_ids"], torch.from_numpy(tokenize(tok, inserted)[0]))
    for i, finding in enumerate(mix["findings"]):
        if not active[i]:
            assert mix["texts"][i] == BATCH_TEXTS[i] and finding is None
            continue
        # Text side: the inserted sentence is one of the partner's, states the finding, and the mixed
        # report now states it as present where the original did not.
        sentence = mix["sentences"][i]
        assert sentence in BATCH_TEXTS[partner[i]] and sentence in mix["texts"][i]
        assert label_report(sentence, findings_impression_only=False).labels[finding] == 1
        assert label_report(BATCH_TEXTS[i], findings_impression_only=False).labels.get(finding) != 1
        assert label_report(mix["texts"][i], findings_impression_only=False).labels[finding] == 1
    # Image side: row i's patches come from the same partner row, chosen by that sentence's embedding.
    pixels = out["pixel_values"]
    with torch.no_grad():
        img, _, _ = DualEncoder(clip)(pixels, out["input_ids"], out["attention_mask"], mix)
        plain = clip.get_image_features(pixel_values=pixels)
        plain = plain if isinstance(plain, torch.Tensor) else plain.pooler_output
        query = clip.get_text_features(input_ids=mix["sentence_ids"], attention_mask=mix["sentence_mask"])
        query = query if isinstance(query, torch.Tensor) else query.pooler_output
        h = hidden_states_at(clip, pixels, 0)
        for i in range(len(partner)):
            if not active[i]:
                torch.testing.assert_close(img[i], plain[i], rtol=1e-5, atol=1e-5)
                continue
            last = last_hidden_from(clip, h[partner[i] : partner[i] + 1], 0)
            att = patch_attention(clip, query[i : i + 1], last)
            chosen = top_patch_mask(att, mix["lam"][i : i + 1])[0]
            assert 0.25 * 16 <= int(chosen.sum()) <= 0.5 * 16
            m = torch.cat([torch.tensor([False]), chosen]).unsqueeze(-1)
            want = finish_from(clip, torch.where(m, h[partner[i]], h[i]).unsqueeze(0), 0)[0]
            torch.testing.assert_close(img[i], want, rtol=1e-5, atol=1e-5)


def test_mixed_forward_trains_both_images_and_the_text(clip):
    from pairaug_ray.models.contrastive import DualEncoder, clip_loss

    batch, collate, _ = _collate_batch(p=1.0, seed=1)
    out = collate(batch)
    model = DualEncoder(build_clip("tiny", seed=5))
    img, txt, scale = model(out["pixel_values"], out["input_ids"], out["attention_mask"], out["mix"])
    clip_loss(img, txt, scale).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert grads["clip.vision_model.embeddings.patch_embedding.weight"].abs().sum() > 0
    assert grads["clip.text_model.embeddings.token_embedding.weight"].abs().sum() > 0


def test_a_sentence_the_context_would_cut_off_is_not_mixed():
    long_report = "The lungs are clear bilaterally without focal opacity. " * 12  # > 77 tokens, no negations
    texts = [long_report, "Moderate cardiomegaly.", long_report, "Small left pleural effusion."]
    for seed in range(6):
        batch, collate, _ = _collate_batch(p=1.0, seed=seed, texts=texts)
        mix = collate(batch)["mix"]
        for i in (0, 2):  # an appended sentence would fall beyond 77 tokens: the row stays as it is
            assert not bool(mix["active"][i]) and mix["texts"][i] == long_report


def test_lambda_distributions():
    from pairaug_ray.models.medcutmix import sample_lam

    g = torch.Generator().manual_seed(0)
    u = sample_lam(4000, (0.1, 0.5), "uniform", 1.0, g)
    assert float(u.min()) >= 0.1 and float(u.max()) <= 0.5 and abs(float(u.mean()) - 0.3) < 0.01
    b = sample_lam(4000, (0.1, 0.5), "beta", 2.0, g)
    assert float(b.min()) >= 0 and float(b.max()) <= 1 and abs(float(b.mean()) - 0.5) < 0.02
    assert abs(float(b.var()) - 1 / 20) < 0.005  # Beta(2, 2): variance 1/20
