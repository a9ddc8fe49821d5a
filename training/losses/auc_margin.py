"""A loss on the ranking itself: cross-entropy plus the AUC-margin square loss over the batch's film pairs.

Cross-entropy asks each film for its label; ROC AUC asks only that pneumonia films score above normal ones.
On `test_dev` the ranking is what falls short (issue 12: the best threshold alone would not reach the goal),
so `TrainConfig.auc_margin_weight` > 0 adds, for every (pneumonia, normal) pair in the batch, the squared
shortfall of the pair's probability gap from a margin: max(0, margin - (p_pneumonia - p_normal)) ** 2.
That is the pairwise form of the AUC-margin loss of Yuan et al. 2021 (LibAUC's `AUCMLoss`, which reaches
the same objective through a min-max game over running class means); with batches of 32 films holding
both classes, the pairs are in the batch and no min-max optimizer is needed. The cross-entropy stays, as
in LibAUC's compositional loss, so the probabilities stay probabilities for calibration.

Each film's ranking term is the mean over the batch's films of the other class, so the batch mean of the
terms is the mean over pairs, and Keras' class weights scale a film's terms as they scale its cross-entropy.
"""

from __future__ import annotations

import keras
from keras import ops

from training.losses.cross_entropy_plus import CrossEntropyPlus

MARGIN = 1.0  # LibAUC's default: on probabilities in [0, 1] every pair short of a full gap is pulled


@keras.saving.register_keras_serializable(package="training")
class AUCMarginLoss(CrossEntropyPlus):
    """Binary cross-entropy of each film plus `weight` x its mean squared margin shortfall against the batch's
    films of the other class (0 for a film with none)."""

    def __init__(self, weight: float, margin: float = MARGIN, label_smoothing: float = 0.0,
                 name: str = "auc_margin", **kwargs):
        super().__init__(weight, label_smoothing, name=name, **kwargs)
        self.margin = float(margin)

    def batch_term(self, labels, probabilities):
        positive = ops.cast(labels > 0.5, probabilities.dtype)
        # gap[i, j] = p_i - p_j; a pair (i pneumonia, j normal) wants gap >= margin
        gap = probabilities[:, None] - probabilities[None, :]
        shortfall = ops.square(ops.relu(self.margin - gap))
        pair = positive[:, None] * (1.0 - positive[None, :])  # i pneumonia, j normal
        # a pneumonia film i: its pairs are row i; a normal film j: its pairs are column j
        as_positive = ops.sum(shortfall * pair, axis=1) / ops.maximum(ops.sum(pair, axis=1), 1.0)
        as_negative = ops.sum(shortfall * pair, axis=0) / ops.maximum(ops.sum(pair, axis=0), 1.0)
        return as_positive + as_negative

    def get_config(self) -> dict:
        return {**super().get_config(), "margin": self.margin}
