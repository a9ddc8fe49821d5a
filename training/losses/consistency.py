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

from training.losses.cross_entropy_plus import CrossEntropyPlus

_EPS = 1e-7


def paired_views(films: np.ndarray) -> np.ndarray:
    """[films; the same films]: the layout `PairedConsistencyLoss` reads, view A of each film in the first
    half of the batch and view B at the same place in the second."""
    return np.concatenate([films, films])


def _bernoulli_kl(p, q):
    return p * ops.log(p / q) + (1.0 - p) * ops.log((1.0 - p) / (1.0 - q))


@keras.saving.register_keras_serializable(package="training")
class PairedConsistencyLoss(CrossEntropyPlus):
    """Binary cross-entropy of each view, plus `weight` x the Jensen-Shannon divergence of its pair.

    The batch must hold [view A of n films, view B of the same n films]. Each view's own term is
    KL(p || m) with m the pair's mean probability; averaged over the batch that is the mean divergence
    of the pairs. A view's class weight (Keras' `class_weight`) scales both of its terms.
    """

    def __init__(self, weight: float, label_smoothing: float = 0.0, name: str = "paired_consistency", **kwargs):
        super().__init__(weight, label_smoothing, name=name, **kwargs)

    def batch_term(self, labels, probabilities):
        p = ops.clip(probabilities, _EPS, 1.0 - _EPS)
        half = ops.shape(p)[0] // 2
        partner = ops.concatenate([p[half:], p[:half]])
        return _bernoulli_kl(p, 0.5 * (p + partner))
