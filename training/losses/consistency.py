"""Framing consistency: two augmented views of each film, and a loss that asks for the same answer on both.

Augmentation alone shows the model films framed many ways; it does not ask the model to give a film the
same answer however it is framed. On `test_dev` the answers still follow framing (SHIFT.md section 1:
a 15% change of scale moves the shipped model's specificity from 72% to 93%). With
`TrainConfig.consistency_weight` > 0 each batch holds half as many films, each twice, augmented
independently, laid out as [view A of films 1..n, view B of films 1..n] (`AugmentedBatches(paired=True)`),
and the loss adds the Jensen-Shannon divergence between the two views' probabilities, as AugMix does
(Hendrycks et al. 2020). The exported model is the same plain classifier: the pairing lives in training only.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

_EPS = 1e-7


def paired_views(films: np.ndarray) -> np.ndarray:
    """[films; the same films]: the layout `PairedConsistencyLoss` reads, view A of each film in the first
    half of the batch and view B at the same place in the second."""
    return np.concatenate([films, films])


def _bernoulli_kl(p, q):
    return p * ops.log(p / q) + (1.0 - p) * ops.log((1.0 - p) / (1.0 - q))


@keras.saving.register_keras_serializable(package="training")
class PairedConsistencyLoss(keras.losses.Loss):
    """Binary cross-entropy of each view, plus `weight` x the Jensen-Shannon divergence of its pair.

    The batch must hold [view A of n films, view B of the same n films]. Each view's own term is
    KL(p || m) with m the pair's mean probability; averaged over the batch that is the mean divergence
    of the pairs. A view's class weight (Keras' `class_weight`) scales both of its terms.
    """

    def __init__(self, weight: float, label_smoothing: float = 0.0, name: str = "paired_consistency", **kwargs):
        super().__init__(name=name, **kwargs)
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        y_pred = ops.reshape(y_pred, (-1, 1))
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
        bce = keras.losses.binary_crossentropy(y_true, y_pred, label_smoothing=self.label_smoothing)
        p = ops.clip(y_pred[:, 0], _EPS, 1.0 - _EPS)
        half = ops.shape(p)[0] // 2
        partner = ops.concatenate([p[half:], p[:half]])
        return bce + self.weight * _bernoulli_kl(p, 0.5 * (p + partner))

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight, "label_smoothing": self.label_smoothing}
