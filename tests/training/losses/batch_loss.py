"""What the loss tests share: one batch's loss value, and each film's probability of its own label."""

from __future__ import annotations

import keras
import numpy as np


def batch_loss(loss: keras.losses.Loss, labels, probabilities, weights=None) -> float:
    """`loss` on one batch of films (labels and probabilities as lists or vectors; optional per-film weights)."""
    y = np.asarray(labels, np.float32)[:, None]
    p = np.asarray(probabilities, np.float32)[:, None]
    return float(loss(y, p, sample_weight=None if weights is None else np.asarray(weights, np.float32)))


def p_true(labels, probabilities) -> np.ndarray:
    """Each film's probability of its own label."""
    probabilities = np.asarray(probabilities)
    return np.where(np.asarray(labels) == 1, probabilities, 1 - probabilities)
