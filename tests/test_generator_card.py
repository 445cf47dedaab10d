"""The generator report card's measures (pairaug_ray/eval/generator.py) on constructed cases whose
answers are known: identical sets, shuffled labels, a copied training image, an edit that changes
nothing."""

from __future__ import annotations

import numpy as np
import pytest

from pairaug_ray.eval import generator as card

FINDINGS = ["Cardiomegaly", "Edema", "Pleural Effusion"]


def test_frechet_distance_of_identical_sets_is_zero_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 8))
    assert card.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    floor = card.real_floor(real, seed=1)
    same_kind = card.frechet_distance(real, rng.normal(size=(400, 8)))
    shifted = card.frechet_distance(real, rng.normal(loc=1.0, size=(400, 8)))
    # Sampling alone: small, of the order of the floor; a mean shift of 1 in 8 dims adds ~8.
    assert 0 < floor < 1.0 and same_kind < 1.0
    assert shifted == pytest.approx(8.0, rel=0.2)
    # Covariance counts too: the same mean, twice the spread.
    assert card.frechet_distance(real, 2 * rng.normal(size=(400, 8))) > 3 * floor
    with pytest.raises(ValueError, match="same D"):
        card.frechet_distance(real, real[:, :4])


def test_finding_aucs_know_signal_from_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(2000, 3)).astype(float)
    scores = labels + rng.normal(scale=0.5, size=labels.shape)
    aucs = card.finding_aucs(scores, labels, FINDINGS)
    assert all(a > 0.9 for a in aucs.values())
    shuffled = card.finding_aucs(scores, rng.permutation(labels), FINDINGS)
    assert all(abs(a - 0.5) < 0.05 for a in shuffled.values()), shuffled
    # Unknown labels are left out; a finding with one class left has no AUC.
    labels[:, 2] = np.nan
    labels[:5, 2] = 1
    assert card.finding_aucs(scores, labels, FINDINGS)["Pleural Effusion"] is None


def test_a_copied_training_image_is_flagged_a_near_duplicate():
    rng = np.random.default_rng(0)
    # 60 patients, 3 studies each: a patient's studies are near each other, patients are apart.
    centres = rng.normal(size=(60, 32))
    train = np.concatenate([c + 0.3 * rng.normal(size=(3, 32)) for c in centres])
    patients = [f"p{i}" for i in range(60) for _ in range(3)]
    threshold = card.calibrate_threshold(train, patients, quantile=0.99)
    # New patients (fresh centres), and one copy of a training image.
    generated = np.concatenate([rng.normal(size=(19, 32)), train[[17]]])
    rate, flags, sim = card.near_duplicate_rate(generated, train, threshold)
    assert flags.tolist() == [False] * 19 + [True]
    assert rate == pytest.approx(1 / 20) and sim[-1] == pytest.approx(1.0)
    idx, _ = card.nearest(generated[-1:], train)
    assert idx.tolist() == [17]


def test_an_edit_that_changes_nothing_fails_the_edit_check():
    source = np.array([[0.2, 0.1, 0.1]] * 3)
    edited = np.array(
        [
            [0.2, 0.1, 0.1],  # nothing changed
            [0.2, 0.1, 0.8],  # the effusion appeared, the rest stayed
            [0.7, 0.1, 0.8],  # the effusion appeared, and so did cardiomegaly, which the report kept
        ]
    )
    change = {"Pleural Effusion": +1}
    result = card.edit_moves(source, edited, [change] * 3, FINDINGS)
    assert [r["passed"] for r in result] == [False, True, False]
    assert result[0]["changed"] is False and result[0]["kept"] is True
    assert result[2]["changed"] is True and result[2]["kept"] is False
    # A removal moves the score down.
    assert card.edit_moves(edited[1:2], source[1:2], [{"Pleural Effusion": -1}], FINDINGS)[0]["passed"]
