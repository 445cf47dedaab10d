"""The reader study's statistics (pairaug_ray/eval/readers.py) against hand computations and a
published worked example."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pairaug_ray.eval import readers


def _wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_accuracy_and_sensitivity_with_wilson_intervals():
    # The paper's task 1: 50 cases, 61% accuracy; here 25 real and 25 synthetic, 31 right.
    truth = ["real"] * 25 + ["synthetic"] * 25
    answers = ["real"] * 20 + ["synthetic"] * 5 + ["synthetic"] * 11 + ["real"] * 14
    s = readers.turing_scores(truth, answers)
    assert s["accuracy"]["value"] == pytest.approx(31 / 50)
    assert (s["accuracy"]["low"], s["accuracy"]["high"]) == pytest.approx(_wilson(31, 50), abs=1e-4)
    assert s["sensitivity_synthetic"]["value"] == pytest.approx(11 / 25)
    assert s["specificity_real"]["value"] == pytest.approx(20 / 25)
    assert readers.proportion(0, 0)["value"] is None


def test_cohens_kappa_equals_the_hand_computation():
    # Two readers, 10 cases: they agree on 7 (4 real, 3 synthetic).
    a = ["real"] * 5 + ["synthetic"] * 5
    b = ["real"] * 4 + ["synthetic"] + ["real", "real"] + ["synthetic"] * 3
    p_o = 7 / 10
    p_e = (5 / 10) * (6 / 10) + (5 / 10) * (4 / 10)  # reader a: 5/5; reader b: 6 real, 4 synthetic
    answers = {"a": {f"c{i}": x for i, x in enumerate(a)}, "b": {f"c{i}": x for i, x in enumerate(b)}}
    got = readers.agreement(answers, ["real", "synthetic"])
    assert got["method"] == "cohen" and got["cases"] == 10
    assert got["value"] == pytest.approx((p_o - p_e) / (1 - p_e))
    assert got["low"] <= got["value"] <= got["high"]


def test_fleiss_kappa_reproduces_the_published_worked_example():
    # Fleiss (1971) as worked in the literature: 10 subjects, 14 raters, 5 categories -> 0.210.
    table = np.array(
        [
            [0, 0, 0, 0, 14],
            [0, 2, 6, 4, 2],
            [0, 0, 3, 5, 6],
            [0, 3, 9, 2, 0],
            [2, 2, 8, 1, 1],
            [7, 7, 0, 0, 0],
            [3, 2, 6, 3, 0],
            [2, 5, 3, 2, 2],
            [6, 5, 2, 1, 0],
            [0, 2, 2, 3, 7],
        ]
    )
    assert readers.fleiss_kappa(table) == pytest.approx(0.210, abs=5e-4)
    with pytest.raises(ValueError):
        readers.fleiss_kappa(np.array([[1, 1], [2, 1]]))


def test_three_readers_use_fleiss_and_perfect_agreement_is_one():
    cases = {f"c{i}": ("good" if i % 3 else "poor") for i in range(12)}
    got = readers.agreement({"a": cases, "b": dict(cases), "c": dict(cases)}, ["good", "poor", "unsure"])
    assert got["method"] == "fleiss" and got["value"] == pytest.approx(1.0)


def test_agreement_counts_only_cases_every_reader_answered():
    got = readers.agreement({"a": {"x": "real", "y": "synthetic"}, "b": {"x": "real"}}, ["real", "synthetic"])
    assert got["cases"] == 1 and got["value"] is None
    assert readers.agreement({"a": {"x": "real"}}, ["real"])["method"] is None


def test_the_pruning_score_ranks_rejected_pairs():
    # Rejected pairs score lowest: a threshold on the score would remove them (AUC 1).
    assert readers.score_auc_for_rejected([0.1, 0.2, 0.8, 0.9], [True, True, False, False])["auc"] == 1.0
    assert readers.score_auc_for_rejected([0.9, 0.1, 0.8, 0.2], [True, True, False, False])["auc"] == 0.5
    assert readers.score_auc_for_rejected([0.5, float("nan")], [True, False])["auc"] is None


def test_rating_shares():
    shares = readers.rating_shares(["good"] * 6 + ["poor"] * 3 + ["unsure"])
    assert shares["good"]["value"] == pytest.approx(0.6) and shares["unsure"]["n"] == 10
