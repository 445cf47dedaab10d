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
