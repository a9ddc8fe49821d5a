"""The `gce_q` option: generalized cross-entropy, (1 - p_true ** q) / q per film, and what the config refuses
(resuming: test_loss_options_resume.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.training.losses.batch_loss import batch_loss, p_true
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.losses import new_loss
from training.losses.generalized_ce import GeneralizedCrossEntropy

LABELS = np.array([1, 0, 1, 0, 1, 1], np.float32)
PROBABILITIES = np.array([0.9, 0.2, 0.3, 0.95, 0.6, 0.05], np.float32)


def _loss(loss: keras.losses.Loss, weights=None) -> float:
    return batch_loss(loss, LABELS, PROBABILITIES, weights)


def test_each_film_costs_one_minus_its_probability_of_its_label_to_the_q_over_q_weighted_by_its_class():
    weights = np.where(LABELS == 0, 3.0, 1.0)
    per_film = (1 - p_true(LABELS, PROBABILITIES) ** 0.7) / 0.7
    expected = np.sum(weights * per_film) / len(LABELS)  # Keras: the weighted sum over the batch size
    assert _loss(GeneralizedCrossEntropy(0.7), weights=weights) == pytest.approx(expected, rel=1e-5)


def test_it_is_cross_entropy_as_q_goes_to_0_and_the_mean_absolute_error_at_1():
    assert _loss(GeneralizedCrossEntropy(1e-4)) == pytest.approx(
        _loss(keras.losses.BinaryCrossentropy()), rel=1e-3)
    assert _loss(GeneralizedCrossEntropy(1.0)) == pytest.approx(np.mean(np.abs(LABELS - PROBABILITIES)), rel=1e-5)


def test_a_film_the_model_firmly_disagrees_with_pulls_p_true_to_the_q_times_less_than_under_cross_entropy():
    logits = tf.Variable(np.log(PROBABILITIES / (1 - PROBABILITIES))[:, None])

    def logit_gradients(loss: keras.losses.Loss) -> np.ndarray:
        with tf.GradientTape() as tape:
            value = loss(LABELS[:, None], tf.sigmoid(logits))
        return tape.gradient(value, logits).numpy()[:, 0]

    ratio = logit_gradients(GeneralizedCrossEntropy(0.7)) / logit_gradients(keras.losses.BinaryCrossentropy())
    assert ratio == pytest.approx(p_true(LABELS, PROBABILITIES) ** 0.7, rel=1e-3)
    assert ratio[-1] < 0.15  # the pneumonia film at 0.05 pulls a seventh of what cross-entropy would


def test_a_smoothed_label_mixes_the_two_terms_as_cross_entropy_does():
    smoothed = LABELS * 0.8 + 0.1  # Keras' binary label smoothing at 0.2
    per_film = (smoothed * (1 - PROBABILITIES ** 0.5) + (1 - smoothed) * (1 - (1 - PROBABILITIES) ** 0.5)) / 0.5
    assert _loss(GeneralizedCrossEntropy(0.5, label_smoothing=0.2)) == pytest.approx(np.mean(per_film), rel=1e-5)


def test_the_loss_survives_a_checkpoint_round_trip():
    again = keras.losses.deserialize(keras.losses.serialize(GeneralizedCrossEntropy(0.4, label_smoothing=0.1)))
    assert isinstance(again, GeneralizedCrossEntropy)
    assert (again.q, again.label_smoothing) == (0.4, 0.1)


def test_the_option_builds_the_loss_and_is_refused_out_of_range_or_beside_another_loss(tmp_path):
    loss = new_loss(tiny_config(tmp_path, gce_q=0.6))
    assert isinstance(loss, GeneralizedCrossEntropy) and loss.q == 0.6
    assert not isinstance(new_loss(tiny_config(tmp_path)), GeneralizedCrossEntropy)
    for q in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"gce_q must be in \[0, 1\]"):
            TrainConfig(gce_q=q)
    for other in ({"focal_gamma": 2.0}, {"consistency_weight": 1.0}, {"auc_margin_weight": 1.0}):
        with pytest.raises(ValueError, match="each set the loss"):
            TrainConfig(gce_q=0.7, **other)
    with pytest.raises(ValueError, match=r"q must be in \(0, 1\]"):
        GeneralizedCrossEntropy(0.0)
