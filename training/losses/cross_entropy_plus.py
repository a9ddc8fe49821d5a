"""The shape both losses written here share: each film's binary cross-entropy plus `weight` x a term of its
own that reads the batch (the film's pair partner, or the films of the other class).

Both parts are per film, so Keras' class weights (`class_weight`) scale a film's term as they scale its
cross-entropy, and the batch mean of the terms is the mean the subclass defines.
"""

from __future__ import annotations

import keras
from keras import ops


class CrossEntropyPlus(keras.losses.Loss):
    """Binary cross-entropy of each film + `weight` x `batch_term(labels, probabilities)` (one value a film)."""

    def __init__(self, weight: float, label_smoothing: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.weight = float(weight)
        self.label_smoothing = float(label_smoothing)

    def batch_term(self, labels, probabilities):
        """One value a film, from the batch's labels and probabilities (vectors)."""
        raise NotImplementedError

    def call(self, y_true, y_pred):
        y_pred = ops.reshape(y_pred, (-1, 1))
        y_true = ops.reshape(ops.cast(y_true, y_pred.dtype), (-1, 1))
        bce = keras.losses.binary_crossentropy(y_true, y_pred, label_smoothing=self.label_smoothing)
        return bce + self.weight * self.batch_term(y_true[:, 0], y_pred[:, 0])

    def get_config(self) -> dict:
        return {**super().get_config(), "weight": self.weight, "label_smoothing": self.label_smoothing}
