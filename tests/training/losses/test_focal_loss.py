"""The `focal_gamma` option: the loss it builds and what it refuses (resuming: test_loss_options_resume.py)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.training.losses.batch_loss import p_true
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.losses import new_loss


def _per_film(loss: keras.losses.Loss, labels, probabilities) -> np.ndarray:
    y_true = np.asarray(labels, np.float32)[:, None]
    y_pred = np.asarray(probabilities, np.float32)[:, None]
    return np.asarray([float(loss(y_true[i:i + 1], y_pred[i:i + 1])) for i in range(len(y_true))])


def test_focal_loss_is_cross_entropy_scaled_by_how_wrong_the_answer_is(tmp_path):
    labels, probabilities = [1, 0, 1, 0], [0.9, 0.2, 0.3, 0.95]
    cross_entropy = _per_film(new_loss(tiny_config(tmp_path)), labels, probabilities)
    focal = _per_film(new_loss(tiny_config(tmp_path, focal_gamma=2.0)), labels, probabilities)
    # the hard films (p_true 0.3 and 0.05) keep most of their loss, the easy ones (0.9, 0.8) lose most
    np.testing.assert_allclose(focal, cross_entropy * (1 - p_true(labels, probabilities)) ** 2, rtol=1e-4)


def test_focal_gamma_is_refused_when_negative_or_beside_the_consistency_loss():
    with pytest.raises(ValueError, match="focal_gamma must be >= 0"):
        TrainConfig(focal_gamma=-1.0)
    with pytest.raises(ValueError, match="each set the loss"):
        TrainConfig(focal_gamma=2.0, consistency_weight=1.0)
