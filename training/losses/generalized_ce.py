"""Generalized cross-entropy (Zhang & Sabuncu 2018), a loss that trusts the training labels less.

Under cross-entropy the film the model most firmly disagrees with pulls hardest; if its label is wrong, it
teaches the wrong thing. Every recipe of the study loses most of its misordered `test_dev` pairs on the same
few films (SHIFT.md section 5), films a reader might label either way; if train holds such films too, the
model spends its fit on them. Generalized cross-entropy, (1 - p_true ** q) / q, is cross-entropy as q -> 0
and the mean absolute error (robust to label noise, slow to fit) at q = 1; in between, a film's gradient is
cross-entropy's times p_true ** q, so a film the model firmly disagrees with weighs less.

For a soft label y (label smoothing, mixup) the loss is y x the pneumonia term + (1 - y) x the normal term,
the same mixture cross-entropy uses, so both options keep their meaning.
"""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="training")
class GeneralizedCrossEntropy(keras.losses.Loss):
    """(1 - p_true ** q) / q for each film, p_true its probability of its own label."""

    def __init__(self, q: float, label_smoothing: float = 0.0, name: str = "generalized_ce", **kwargs):
        super().__init__(name=name, **kwargs)
        if not 0.0 < q <= 1.0:
            raise ValueError("q must be in (0, 1]")
        self.q = float(q)
        self.label_smoothing = float(label_smoothing)

    def call(self, y_true, y_pred):
        probabilities = ops.clip(ops.reshape(y_pred, (-1,)), keras.config.epsilon(), 1.0 - keras.config.epsilon())
        labels = ops.reshape(ops.cast(y_true, probabilities.dtype), (-1,))
        labels = labels * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing  # Keras' binary smoothing
        as_pneumonia = (1.0 - ops.power(probabilities, self.q)) / self.q
        as_normal = (1.0 - ops.power(1.0 - probabilities, self.q)) / self.q
        return labels * as_pneumonia + (1.0 - labels) * as_normal

    def get_config(self) -> dict:
        return {**super().get_config(), "q": self.q, "label_smoothing": self.label_smoothing}
