"""Weigh the `NORMAL2-` series of normal films up, within the normal class.

The training split's normal films come in two series of file names, `IM-*` and `NORMAL2-IM-*`
(`training/SHIFT.md` section 5). The `NORMAL2-` normals are the harder group on validation as on
new films: the shipped model ranks them below the pneumonia films with ROC AUC 0.990 on validation
(119 films) and 0.984 on `test_dev` (83), the `IM-` normals 0.997 (83) and 0.998 (34); and they make
20 of the 22 false positives of that section. They are 55% of the training normals and 71%
of `test_dev`'s. Weighing them `weight` times an `IM-` normal asks the model to spend more of its fit
on the group it gets wrong, without changing the class balance: the normal class keeps its total
weight (`training.train.film_weights` rescales each class once, with `training.data.keep_class_totals`),
so the class weights and the calibration's prior stay as they were.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from training.data import Sample

SERIES_PREFIX = "NORMAL2-"


def in_normal2_series(samples: Sequence[Sample]) -> np.ndarray:
    """True for each normal film of the `NORMAL2-` series."""
    return np.array([s.label == 0 and s.path.name.startswith(SERIES_PREFIX) for s in samples], bool)


def normal2_factors(samples: Sequence[Sample], weight: float) -> np.ndarray:
    """A relative multiplier per film: `weight` for the `NORMAL2-` normals, 1 for every other film
    (`film_weights` rescales each class to its total). `weight` > 0: `TrainConfig` refuses others."""
    factors = np.ones(len(samples), np.float32)
    factors[in_normal2_series(samples)] = weight
    return factors
