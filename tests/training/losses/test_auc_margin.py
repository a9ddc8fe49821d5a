"""The `auc_margin_weight` option: cross-entropy plus the squared margin shortfall of the batch's (pneumonia,
normal) pairs, and what the config refuses (resuming: test_loss_options_resume.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.training.losses.batch_loss import batch_loss as _loss
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.losses import new_loss
from training.losses.auc_margin import AUCMarginLoss


def _cross_entropy(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    return -(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))


def _per_film_ranking(labels: np.ndarray, probabilities: np.ndarray, margin: float) -> np.ndarray:
    """Each film's mean squared shortfall against the films of the other class, from the pairs one by one."""
    terms = []
    for label, p in zip(labels, probabilities, strict=True):
        others = [j for j in range(len(labels)) if labels[j] != label]
        gaps = [(p - probabilities[j]) if label == 1 else (probabilities[j] - p) for j in others]
        terms.append(np.mean([max(0.0, margin - g) ** 2 for g in gaps]) if others else 0.0)
    return np.asarray(terms)


def test_pairs_ordered_by_the_margin_cost_only_the_cross_entropy():
    labels, probabilities = [1, 0, 1, 0], [0.9, 0.2, 0.8, 0.1]  # every pneumonia film >= 0.6 above every normal
    cross_entropy = _loss(keras.losses.BinaryCrossentropy(), labels, probabilities)
    assert _loss(AUCMarginLoss(5.0, margin=0.5), labels, probabilities) == pytest.approx(cross_entropy, rel=1e-5)
    # at the default margin (1: a full gap) the same batch costs more
    assert _loss(AUCMarginLoss(5.0), labels, probabilities) > cross_entropy + 0.1


def test_the_ranking_term_is_the_mean_over_pneumonia_normal_pairs_of_the_squared_shortfall():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 13).astype(np.float32)
    probabilities = rng.uniform(0.02, 0.98, 13).astype(np.float32)
    pairs = [(i, j) for i in range(13) for j in range(13) if labels[i] == 1 and labels[j] == 0]
    shortfalls = [max(0.0, 1.0 - (probabilities[i] - probabilities[j])) ** 2 for i, j in pairs]
    gap = _loss(AUCMarginLoss(2.0), labels, probabilities) - _loss(AUCMarginLoss(0.0), labels, probabilities)
    assert gap == pytest.approx(2.0 * np.mean(shortfalls), rel=1e-4)  # pairs within a class never count


def test_a_batch_of_one_class_costs_only_the_cross_entropy():
    labels, probabilities = [1, 1, 1], [0.3, 0.6, 0.9]
    assert _loss(AUCMarginLoss(3.0), labels, probabilities) == pytest.approx(
        _loss(keras.losses.BinaryCrossentropy(), labels, probabilities), rel=1e-5)


def test_a_films_class_weight_scales_its_ranking_term_as_it_scales_its_cross_entropy():
    labels = np.array([1, 0, 1, 0, 1, 1], np.float32)
    probabilities = np.array([0.9, 0.2, 0.3, 0.95, 0.6, 0.4], np.float32)
    weights = np.where(labels == 0, 3.0, 1.0)
    per_film = _cross_entropy(labels, probabilities) + 0.5 * _per_film_ranking(labels, probabilities, 0.7)
    expected = np.sum(weights * per_film) / len(labels)  # Keras: the weighted sum over the batch size
    assert _loss(AUCMarginLoss(0.5, margin=0.7), labels, probabilities, weights) == pytest.approx(expected, rel=1e-4)


def test_the_loss_survives_a_checkpoint_round_trip():
    again = keras.losses.deserialize(keras.losses.serialize(AUCMarginLoss(2.0, margin=0.6, label_smoothing=0.1)))
    assert isinstance(again, AUCMarginLoss)
    assert (again.weight, again.margin, again.label_smoothing) == (2.0, 0.6, 0.1)


def test_the_option_builds_the_loss_and_is_refused_beside_another_loss_or_mixup(tmp_path):
    loss = new_loss(tiny_config(tmp_path, auc_margin_weight=1.5))
    assert isinstance(loss, AUCMarginLoss) and loss.weight == 1.5
    assert not isinstance(new_loss(tiny_config(tmp_path)), AUCMarginLoss)
    with pytest.raises(ValueError, match="auc_margin_weight must be >= 0"):
        TrainConfig(auc_margin_weight=-1.0)
    for other in ({"focal_gamma": 2.0}, {"consistency_weight": 1.0}):
        with pytest.raises(ValueError, match="each set the loss"):
            TrainConfig(auc_margin_weight=1.0, **other)
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(auc_margin_weight=1.0, mixup_alpha=0.2)
