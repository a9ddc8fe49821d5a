"""The `normal2_weight` option: the `NORMAL2-` normals weigh more within the normal class, the class's
total and the pneumonia films' weights stay, a run records it and the card says so."""

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
from training.weights.series import normal2_factors

_FILMS = [
    Sample(Path("NORMAL/NORMAL2-IM-0001-0001.jpeg"), 0),
    Sample(Path("NORMAL/NORMAL2-IM-0002-0001.jpeg"), 0),
    Sample(Path("NORMAL/NORMAL2-IM-0003-0001.jpeg"), 0),
    Sample(Path("NORMAL/IM-0004-0001.jpeg"), 0),
    Sample(Path("PNEUMONIA/person1_bacteria_1.jpeg"), 1),
    Sample(Path("PNEUMONIA/person2_virus_2.jpeg"), 1),
    Sample(Path("PNEUMONIA/person3_bacteria_3.jpeg"), 1),
]


def test_normal2_films_weigh_the_factor_more_and_no_other_film_changes():
    factors = normal2_factors(_FILMS, 3.0)
    np.testing.assert_allclose(factors[:3] / factors[3], 3.0)
    np.testing.assert_array_equal(factors[3:], 1.0)
    np.testing.assert_array_equal(normal2_factors(_FILMS, 1.0), 1.0)


def test_film_weights_carry_the_class_weights_times_the_series_factors(tmp_path):
    labels = np.array([s.label for s in _FILMS])
    class_weight = balanced_class_weight(labels)
    summary: dict = {}
    config = tiny_config(tmp_path, normal2_weight=2.0)
    weights = film_weights(config, _FILMS, np.zeros((7, 8, 8)), class_weight, summary)
    np.testing.assert_allclose(weights[:3] / weights[3], 2.0, rtol=1e-6)
    np.testing.assert_allclose(weights[:4].sum(), 4 * class_weight[0], rtol=1e-6)
    np.testing.assert_allclose(weights[4:], class_weight[1], rtol=1e-6)
    assert summary["normal2_weight"] == {"normal2_films": 3, "normal2_share_of_normal_weight": round(6 / 7, 3)}
    # without an option that needs per-film weights, Keras' class_weight does it alone
    assert film_weights(tiny_config(tmp_path), _FILMS, np.zeros((7, 8, 8)), class_weight, {}) is None


def test_normal2_weight_is_refused_at_zero_or_beside_framing_balance():
    with pytest.raises(ValueError, match="normal2_weight must be > 0"):
        TrainConfig(normal2_weight=0.0)
    with pytest.raises(ValueError, match="not with normal2_weight"):
        TrainConfig(normal2_weight=2.0, framing_balance=True)


@needs_shared
def test_a_normal2_weighted_run_records_its_weights_and_its_card_says_so(tmp_path):
    done = train(tiny_config(tmp_path / "run", normal2_weight=4.0))
    recorded = done["normal2_weight"]
    assert recorded["normal2_films"] > 0 and recorded["normal2_share_of_normal_weight"] > 0.5
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    model = keras.models.load_model(tmp_path / "run" / "model.keras")
    preprocessing = TrainConfig.from_dict(run["config"]).preprocessing

    def card_weight() -> float:
        return build_card(run, preprocessing, model, 17, "0" * 64, "0" * 64, {})["hyperparameters"]["normal2_weight"]

    assert card_weight() == 4.0
    del run["config"]["normal2_weight"]  # a run recorded before the option weighed every normal film alike
    assert card_weight() == 1.0
