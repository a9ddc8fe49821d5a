"""The `patient_weight_power` option: a film weighs (films of its patient) ** -power, each class keeps
its total weight, a run records the effective film counts and the card says which power it used."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.conftest import needs_shared
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.data import Sample
from training.export import build_card
from training.train import balanced_class_weight, film_weights, train
from training.weights.patient import effective_films, patient_factors

# pneumonia: patient 1 has four films, patients 2 and 3 one each; normal: patient 0004 has two films
_FILMS = [
    Sample(Path("NORMAL/IM-0004-0001.jpeg"), 0),
    Sample(Path("NORMAL/IM-0004-0002.jpeg"), 0),
    Sample(Path("NORMAL/IM-0005-0001.jpeg"), 0),
    *(Sample(Path(f"PNEUMONIA/person1_bacteria_{i}.jpeg"), 1) for i in range(1, 5)),
    Sample(Path("PNEUMONIA/person2_virus_5.jpeg"), 1),
    Sample(Path("PNEUMONIA/person3_bacteria_6.jpeg"), 1),
]
_LABELS = np.array([s.label for s in _FILMS])


def test_power_one_weighs_every_patient_alike():
    factors = patient_factors(_FILMS, 1.0)
    pneumonia = factors[3:]
    np.testing.assert_allclose(pneumonia[:4].sum(), pneumonia[4], rtol=1e-6)  # four films = one patient
    np.testing.assert_allclose(pneumonia[4], pneumonia[5], rtol=1e-6)
    np.testing.assert_allclose(factors[:2].sum(), factors[2], rtol=1e-6)


def test_power_half_weighs_a_patient_by_the_square_root_of_their_films_and_zero_changes_nothing():
    factors = patient_factors(_FILMS, 0.5)
    np.testing.assert_allclose(factors[3:7].sum() / factors[7], 2.0, rtol=1e-6)  # sqrt(4) films' worth
    np.testing.assert_array_equal(patient_factors(_FILMS, 0.0), 1.0)


def test_effective_films_counts_equal_weights_fully_and_one_heavy_film_as_about_one():
    assert effective_films(np.ones(10)) == pytest.approx(10.0)
    assert effective_films(np.array([100.0, 1e-3, 1e-3])) == pytest.approx(1.0, abs=1e-3)


def test_film_weights_carry_the_class_weights_times_the_patient_factors_and_each_class_keeps_its_total(tmp_path):
    class_weight = balanced_class_weight(_LABELS)
    summary: dict = {}
    weights = film_weights(tiny_config(tmp_path, patient_weight_power=1.0), _FILMS, np.zeros((9, 8, 8)),
                           class_weight, summary)
    np.testing.assert_allclose(weights[:3].sum(), 3 * class_weight[0], rtol=1e-6)
    np.testing.assert_allclose(weights[3:].sum(), 6 * class_weight[1], rtol=1e-6)
    pneumonia = weights[3:] / class_weight[1]  # films' worth: the three patients get 2 films' worth each
    np.testing.assert_allclose(pneumonia, [0.5] * 4 + [2.0, 2.0], rtol=1e-6)
    np.testing.assert_allclose(weights[:3] / class_weight[0], [0.75, 0.75, 1.5], rtol=1e-6)
    recorded = summary["patient_weight_power"]
    assert recorded["power"] == 1.0
    assert recorded["effective_films"]["pneumonia"] < 6 and recorded["effective_films"]["normal"] < 3


def test_with_the_series_weighting_too_each_class_still_keeps_its_total_weight(tmp_path):
    films = [*_FILMS, Sample(Path("NORMAL/NORMAL2-IM-0006-0001.jpeg"), 0)]  # patient 0004's two films are IM-
    labels = np.array([s.label for s in films])
    class_weight = balanced_class_weight(labels)
    config = tiny_config(tmp_path, patient_weight_power=1.0, normal2_weight=4.0)
    weights = film_weights(config, films, np.zeros((10, 8, 8)), class_weight, {})
    for label in (0, 1):
        np.testing.assert_allclose(weights[labels == label].sum(), (labels == label).sum() * class_weight[label],
                                   rtol=1e-6)
    # within the normal class: the NORMAL2- film 4x a one-film IM- patient's, the two-film patient's films half
    np.testing.assert_allclose(weights[9] / weights[2], 4.0, rtol=1e-6)
    np.testing.assert_allclose(weights[0] / weights[2], 0.5, rtol=1e-6)


def test_patient_weight_power_is_refused_outside_zero_to_one_or_beside_framing_balance():
    for power in (-0.5, 1.5):
        with pytest.raises(ValueError, match=r"patient_weight_power must be in \[0, 1\]"):
            TrainConfig(patient_weight_power=power)
    with pytest.raises(ValueError, match="framing_balance sets every film's weight itself"):
        TrainConfig(patient_weight_power=0.5, framing_balance=True)


@needs_shared
def test_a_patient_weighted_run_records_its_weights_and_its_card_says_so(tmp_path):
    done = train(tiny_config(tmp_path / "run", patient_weight_power=0.5))
    assert done["patient_weight_power"]["power"] == 0.5
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    preprocessing = TrainConfig.from_dict(run["config"]).preprocessing

    def card_power() -> float:
        card = build_card(run, preprocessing, model, 17, "0" * 64, "0" * 64, {})
        return card["hyperparameters"]["patient_weight_power"]

    assert card_power() == 0.5
    del run["config"]["patient_weight_power"]  # a run recorded before the option weighed every film alike
    assert card_power() == 0.0
