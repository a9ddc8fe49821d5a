"""A run trained with a loss option (focal, AUC-margin, generalized cross-entropy) resumes with that loss,
and its card records the option (0 for a run recorded before the option existed, which trained with
cross-entropy)."""

from __future__ import annotations

import json

import keras
import pytest

from tests.conftest import needs_shared
from tests.training.test_resume import tiny_config
from training.export import build_card
from training.losses.auc_margin import AUCMarginLoss
from training.losses.generalized_ce import GeneralizedCrossEntropy
from training.train import train


@needs_shared
@pytest.mark.parametrize(("option", "value", "loss_class", "attribute"), [
    ("focal_gamma", 2.0, keras.losses.BinaryFocalCrossentropy, "gamma"),
    ("auc_margin_weight", 1.0, AUCMarginLoss, "weight"),
    ("gce_q", 0.7, GeneralizedCrossEntropy, "q"),
])
def test_a_run_resumes_with_its_loss_and_its_card_records_the_option(tmp_path, option, value, loss_class, attribute):
    config = tiny_config(tmp_path / "run", epochs=2, **{option: value})
    train(config, session_epochs=1)
    resumed = keras.models.load_model(config.out / "last.keras")
    assert isinstance(resumed.loss, loss_class) and getattr(resumed.loss, attribute) == value
    assert train(config)["epochs_run"] == 2

    run = json.loads((config.out / "run.json").read_text())

    def card_value() -> float:
        card = build_card(run, config.preprocessing, resumed, 17, "0" * 64, "0" * 64, {})
        return card["hyperparameters"][option]

    assert card_value() == value  # the card says which loss trained the model
    del run["config"][option]
    assert card_value() == 0.0
