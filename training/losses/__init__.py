"""The classifier's training losses. Cross-entropy and focal loss are Keras' own. Two written here add a
term over pairs of films in the batch, so each needs the batch laid out or labelled as it expects:

- `consistency`: two framings of each film, asked for the same answer (`TrainConfig.consistency_weight`);
- `auc_margin`: each (pneumonia, normal) pair asked for a margin between its probabilities
  (`TrainConfig.auc_margin_weight`).

A third, `generalized_ce` (`TrainConfig.gce_q`), replaces each film's cross-entropy with a loss on which the
films the model firmly disagrees with pull less.

The exported model is the same plain classifier whichever loss trained it.
"""

from __future__ import annotations

import keras

from training.config import TrainConfig
from training.losses.auc_margin import AUCMarginLoss
from training.losses.consistency import PairedConsistencyLoss
from training.losses.generalized_ce import GeneralizedCrossEntropy


def new_loss(config: TrainConfig) -> keras.losses.Loss:
    """The classifier's loss: cross-entropy, focal, generalized, or with a consistency or ranking term, as the
    config asks."""
    if config.gce_q > 0:
        return GeneralizedCrossEntropy(config.gce_q, label_smoothing=config.label_smoothing)
    if config.auc_margin_weight > 0:
        return AUCMarginLoss(config.auc_margin_weight, label_smoothing=config.label_smoothing)
    if config.consistency_weight > 0:
        return PairedConsistencyLoss(config.consistency_weight, label_smoothing=config.label_smoothing)
    if config.focal_gamma > 0:
        return keras.losses.BinaryFocalCrossentropy(gamma=config.focal_gamma, label_smoothing=config.label_smoothing)
    return keras.losses.BinaryCrossentropy(label_smoothing=config.label_smoothing)
