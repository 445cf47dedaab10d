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


def _patients(rng: np.random.Generator, n: int, per: int, dim: int, spread: float = 0.3):
    centres = rng.normal(size=(n, dim))
    x = np.concatenate([c + spread * rng.normal(size=(per, dim)) for c in centres])
    return x, [f"p{i}" for i in range(n) for _ in range(per)]


def test_the_finding_classifier_learns_features_and_not_shuffled_labels():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, size=(600, 3)).astype(float)
    x = np.concatenate([labels + 0.5 * rng.normal(size=labels.shape), rng.normal(size=(600, 5))], axis=1)
    clf = card.FindingClassifier(x[:400], labels[:400], FINDINGS)
    held = card.auc_summary(clf.scores(x[400:]), labels[400:], FINDINGS, n_resamples=200)
    assert held["mean"] > 0.9
    lo, hi = held["interval"]
    assert lo <= held["mean"] <= hi and hi - lo < 0.1
    shuffled = card.FindingClassifier(x[:400], rng.permutation(labels[:400]), FINDINGS)
    assert abs(card.auc_summary(shuffled.scores(x[400:]), labels[400:], FINDINGS)["mean"] - 0.5) < 0.1
    # A finding with one class in training predicts its prior; uncertain (NaN) labels are left out.
    one_class = labels[:400].copy()
    one_class[:, 0] = 0
    one_class[:10, 1] = np.nan
    scores = card.FindingClassifier(x[:400], one_class, FINDINGS).scores(x[400:])
    assert np.allclose(scores[:, 0], 0.0) and scores.shape == (200, 3)


def test_label_matrix_reads_chexpert_coding():
    from pairaug_ray.schema import label_column

    rows = [{label_column("Edema"): 1}, {label_column("Edema"): -1}, {label_column("Edema"): None}, {}]
    m = card.label_matrix(rows, ["Edema"])
    assert m[0, 0] == 1 and np.isnan(m[1, 0]) and m[2, 0] == 0 and m[3, 0] == 0


def test_the_patient_verifier_tells_patients_apart():
    rng = np.random.default_rng(1)
    train, patients = _patients(rng, 40, 3, 16)
    verifier = card.PatientVerifier(train, patients)
    assert verifier.equal_error_rate < 0.05
    # Searching all 120 training images, a stricter threshold keeps false matches as rare.
    assert verifier.identification_error_rate < 0.05
    assert verifier.identification_threshold >= verifier.threshold - 0.05
    held, held_patients = _patients(rng, 20, 3, 16)
    assert verifier.auc(held, held_patients) > 0.95
    # Another study of the same patient is the same patient; a new patient is not.
    same, _ = verifier.same(held[0:1], held[1:2])
    other, _ = verifier.same(held[0:1], held[3:4])
    assert same.tolist() == [True] and other.tolist() == [False]
    # Features that carry no identity: the verifier is at chance.
    noise = rng.normal(size=(120, 16))
    assert abs(card.PatientVerifier(noise, patients).equal_error_rate - 0.5) < 0.1


def test_fidelity_compares_at_equal_sizes_against_the_real_floor():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(300, 6))
    ids = [f"r{i}" for i in range(300)]
    # A generator that draws from the real distribution: about the floor.
    good = card.fidelity(real, ids, rng.normal(size=(300, 6)), ids, seed=0)
    assert 0.5 < good["ratio"] < 2.0 and len(good["splits"]) == 5
    assert all(s["n"] == 150 for s in good["splits"])
    # One off by a mean shift of 1 per dimension: far above the floor.
    bad = card.fidelity(real, ids, rng.normal(loc=1.0, size=(300, 6)), ids, seed=0)
    assert bad["ratio"] > 10 * good["ratio"]
    assert bad["ratio_range"][0] <= bad["ratio"] <= bad["ratio_range"][1]


def test_followup_pairs_are_consecutive_studies_whose_findings_changed():
    labels = np.array([[0, 1], [1, 1], [1, 1], [0, np.nan], [0, 0]], float)
    pairs, changes = card.followup_pairs(
        ["a", "a", "a", "b", "b"], ["s1", "s2", "s3", "s1", "s2"], labels, ["X", "Y"]
    )
    # a: s1 -> s2 turns X present; s2 -> s3 changes nothing; b: Y unknown then absent is no change.
    assert pairs == [(0, 1)] and changes == [{"X": 1}]


def test_pixel_distance_is_on_a_zero_to_one_scale():
    a = np.zeros((8, 8), np.uint8)
    assert card.pixel_distance(a, a) == 0.0
    assert card.pixel_distance(a, np.full((16, 16), 255, np.uint8)) == pytest.approx(1.0)
    assert card.pixel_distance(a, np.full((8, 8), 65535 // 2, np.uint16)) == pytest.approx(0.5, abs=0.01)


def test_the_zero_shot_classifier_scores_by_prompt_similarity():
    # Two findings with orthogonal prompt embeddings in 4 dimensions; "no X" points the other way.
    pos = np.array([[1.0, 0, 0, 0], [0, 1.0, 0, 0]])
    clf = card.ZeroShotClassifier(pos, -pos, ["Edema", "Pleural Effusion"])
    scores = clf.scores(np.array([[2.0, 0, 1, 0], [0, -1.0, 0, 1], [0, 0, 0, 1.0]]))
    assert scores[0, 0] > 0.8 and scores[1, 1] < 0.2
    assert np.allclose(scores[2], 0.5)  # unrelated to both prompts: undecided
