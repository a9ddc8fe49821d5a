"""Metrics, calibration and the threshold rule against hand-checked values."""

from __future__ import annotations

import numpy as np
import pytest

from training import calibration, metrics


def test_confusion_uses_greater_or_equal():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.5, 0.5, 0.9])
    assert metrics.confusion(labels, probs, 0.5) == (1, 1, 0, 2)


def test_roc_auc_counts_pairs_and_ties_half():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([0.1, 0.4, 0.35, 0.8])
    assert metrics.roc_auc(labels, probs) == pytest.approx(0.75)
    assert metrics.roc_auc(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_misordered_pairs_count_each_films_wrong_pairs_and_sum_to_the_auc_loss():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([0.1, 0.6, 0.35, 0.6, 0.8])
    # normal 0.6 outranks pneumonia 0.35 and ties 0.6; pneumonia 0.35 is below normal 0.6, 0.6 ties it
    np.testing.assert_allclose(metrics.misordered_pairs(labels, probs), [0, 1.5, 1, 0.5, 0])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = np.round(rng.random(200) * 0.5 + 0.4 * labels, 2)  # overlapping classes, with ties
    pairs = metrics.misordered_pairs(labels, probs)
    lost = (1 - metrics.roc_auc(labels, probs)) * (labels == 0).sum() * (labels == 1).sum()
    assert pairs[labels == 0].sum() == pytest.approx(lost)
    assert pairs[labels == 1].sum() == pytest.approx(lost)


def test_average_precision_matches_hand_computation():
    labels = np.array([1, 0, 1, 0])
    probs = np.array([0.9, 0.8, 0.7, 0.1])
    # ranks: P (p=1, r=.5), N, P (p=2/3, r=1) -> AP = .5*1 + .5*2/3
    assert metrics.average_precision(labels, probs) == pytest.approx(0.5 + 1 / 3)


def test_ece_is_zero_when_calibrated_and_large_when_not():
    labels = np.array([0] * 50 + [1] * 50)
    assert metrics.expected_calibration_error(labels, np.full(100, 0.5)) == pytest.approx(0.0)
    assert metrics.expected_calibration_error(labels, np.full(100, 0.95)) == pytest.approx(0.45)


def test_ece_weighs_each_bins_gap_by_its_share_of_films():
    labels, probs = np.array([0, 1, 1, 1]), np.array([0.1, 0.2, 0.3, 0.9])
    # bin [0, 0.5): |2/3 - 0.2| x 3/4; bin [0.5, 1]: |1 - 0.9| x 1/4 (unweighted, the mean would be 0.283)
    assert metrics.expected_calibration_error(labels, probs, n_bins=2) == pytest.approx(0.35 + 0.025)


def test_ece_if_calibrated_is_the_floor_a_calibrated_model_shows_and_shrinks_with_more_films():
    rng = np.random.default_rng(1)
    probs = rng.beta(0.5, 0.5, 300)
    floor = metrics.ece_if_calibrated(probs, n_sim=300)
    # label sets calibrated by construction, drawn apart from the function's own: about 95% under its p95
    calibrated = [(rng.random(300) < probs).astype(int) for _ in range(200)]
    under = np.mean([metrics.expected_calibration_error(labels, probs) <= floor["p95"] for labels in calibrated])
    assert 0.90 <= under <= 0.99
    overconfident = np.clip(probs * 1.6 - 0.3, 0, 1)  # the same labels, probabilities pushed apart
    assert metrics.expected_calibration_error(calibrated[0], overconfident) > floor["p95"]
    assert metrics.ece_if_calibrated(np.tile(probs, 10), n_sim=100)["mean"] < floor["mean"] / 2


def test_full_report_has_the_evaluate_contract():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    probs = np.clip(labels * 0.6 + rng.normal(0.2, 0.2, 200), 0, 1)
    report = metrics.full_report(labels, probs, 0.5, n_boot=50)
    for key in ("n", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "ece",
                "threshold", "confusion_matrix", "accuracy_ci95", "roc_auc_ci95", "ece_if_calibrated"):
        assert key in report
    (tn, fp), (fn, tp) = report["confusion_matrix"]
    assert tn + fp + fn + tp == 200
    assert report["accuracy_ci95"][0] <= report["accuracy"] <= report["accuracy_ci95"][1]


def test_platt_recovers_the_generating_parameters():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, 20000)
    labels = (rng.random(20000) < 1 / (1 + np.exp(-(0.5 * logits - 1.0)))).astype(int)
    a, b = calibration.fit_platt(logits, labels)
    assert a == pytest.approx(0.5, abs=0.05)
    assert b == pytest.approx(-1.0, abs=0.08)


def test_platt_stays_finite_on_separable_data():
    a, b = calibration.fit_platt(np.array([-3.0, -2.0, 2.0, 3.0]), np.array([0, 0, 1, 1]))
    assert np.isfinite(a) and np.isfinite(b)


def test_threshold_is_the_highest_that_keeps_the_sensitivity_floor():
    labels = np.array([1] * 10 + [0] * 5)
    probs = np.array([0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.2, 0.1, 0.3, 0.5, 0.58, 0.05])
    threshold = calibration.choose_threshold(labels, probs, 0.9)
    assert threshold == pytest.approx((0.55 + 0.5) / 2)  # halfway to the next lower score
    assert metrics.threshold_metrics(labels, probs, threshold)["recall"] >= 0.9
    assert metrics.threshold_metrics(labels, probs, 0.55 + 1e-6)["recall"] < 0.9


def test_paired_bootstrap_difference_cancels_what_two_models_share():
    from training.metrics import paired_bootstrap_difference, roc_auc

    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    groups = np.arange(200) // 2  # two films a patient
    weak = labels + rng.normal(0, 1.5, 200)
    same = paired_bootstrap_difference(labels, weak, weak, groups, roc_auc, n_boot=200)
    assert same["difference"] == 0.0 and same["ci95"] == [0.0, 0.0]
    strong = labels + rng.normal(0, 0.3, 200)
    better = paired_bootstrap_difference(labels, strong, weak, groups, roc_auc, n_boot=200)
    assert better["difference"] == pytest.approx(roc_auc(labels, strong) - roc_auc(labels, weak))
    assert 0.0 < better["ci95"][0] <= better["difference"] <= better["ci95"][1]
