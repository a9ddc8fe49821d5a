"""Weigh each pneumonia patient, not each film, within a class.

The training split's 3,875 pneumonia films come from 1,635 patients (file names `personN_...`): 630 of
them have one film, 21 have ten or more, one has 30. `test_dev`'s pneumonia patients mostly have one
film (67 of 101); the normal films are nearly one per patient everywhere (train: 1,341 from 1,211).
Weighted per film, a patient with many films pulls the fit toward their own anatomy, positioning and
film series; `n ** -power` per film (n the patient's films in the training list) gives each patient
`n ** (1 - power)` films' worth: 1 at `power` 1, the square root of their film count at 0.5.
`training.train.film_weights` rescales each class to keep its total weight (`training.data.keep_class_totals`),
so the class weights and the calibration's prior stay as they were.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from training.data import Sample


def patient_factors(samples: Sequence[Sample], power: float) -> np.ndarray:
    """A relative multiplier per film, `films_of_its_patient ** -power` (`film_weights` rescales each class
    to its total). `power` in [0, 1]: `TrainConfig` refuses others."""
    films_per_patient = Counter(s.patient for s in samples)
    return np.array([films_per_patient[s.patient] ** -power for s in samples], np.float32)


def effective_films(weights: np.ndarray) -> float:
    """Kish's effective sample size, (sum w)^2 / sum w^2: how many equally weighted films the weights are worth."""
    return float(weights.sum() ** 2 / (weights**2).sum())
