"""Inverse-propensity framing weights: framing stops predicting the class in the weighted set."""

from __future__ import annotations

import numpy as np

from training.metrics import roc_auc
from training.weights.framing import framing_balanced_weights, framing_features


def _film(rng: np.random.Generator, wide: bool) -> np.ndarray:
    """A bright body on a dark background; a wide framing leaves dark margins at the borders."""
    image = rng.integers(0, 30, (64, 64)).astype(np.uint8)
    margin = int(rng.integers(8, 14)) if wide else int(rng.integers(0, 4))
    image[margin:64 - margin, margin:64 - margin] = rng.integers(150, 220)
    return image


def _weighted_auc(labels: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    """P(score of a pneumonia film > score of a normal film) under the weights."""
    pos, neg = labels == 1, labels == 0
    greater = (scores[pos][:, None] > scores[neg][None, :]) + 0.5 * (scores[pos][:, None] == scores[neg][None, :])
    pair = weights[pos][:, None] * weights[neg][None, :]
    return float((greater * pair).sum() / pair.sum())


def test_framing_features_see_the_margins():
    rng = np.random.default_rng(0)
    wide, tight = framing_features(_film(rng, wide=True)), framing_features(_film(rng, wide=False))
    assert wide.shape == (9,)
    assert wide[0] < tight[0] and wide[-1] < tight[-1]  # darker top band, less body


def test_weights_make_framing_uninformative_and_balance_the_classes():
    rng = np.random.default_rng(1)
    labels = (rng.random(600) < 0.7).astype(int)
    # pneumonia films framed tight 80% of the time, normal films 30%: framing predicts the class
    tight = np.where(labels == 1, rng.random(600) < 0.8, rng.random(600) < 0.3)
    images = np.stack([_film(rng, wide=not t) for t in tight])
    body = np.array([framing_features(img)[-1] for img in images])
    assert roc_auc(labels, body) > 0.7

    weights = framing_balanced_weights(images, labels)
    assert abs(weights.mean() - 1.0) < 1e-5
    assert abs(_weighted_auc(labels, body, weights) - 0.5) < 0.05
    normal_share = weights[labels == 0].sum() / weights.sum()
    assert 0.4 < normal_share < 0.6
