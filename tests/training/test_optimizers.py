"""The `optimizer` option: where the weight decay goes, that each optimizer's run resumes, and the card."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from tests.conftest import needs_shared
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.export import build_card
from training.train import new_model, train


@pytest.mark.parametrize(("optimizer", "penalised"), [("adam", True), ("sgd", True), ("adamw", False)])
def test_weight_decay_is_a_loss_penalty_except_for_adamw(tmp_path, optimizer, penalised):
    model = new_model(tiny_config(tmp_path, optimizer=optimizer, weight_decay=1e-3))
    assert bool(model.losses) is penalised
    decoupled = getattr(model.optimizer, "weight_decay", None)
    assert (decoupled == pytest.approx(1e-3)) is (not penalised)


def test_adamw_shrinks_weights_that_get_no_gradient(tmp_path):
    model = new_model(tiny_config(tmp_path, optimizer="adamw", weight_decay=0.5, learning_rate=0.01))
    kernel = model.get_layer("dense").kernel
    before = kernel.numpy()
    model.optimizer.apply_gradients([(keras.ops.zeros_like(kernel), kernel)])
    np.testing.assert_allclose(kernel.numpy(), before * (1 - 0.01 * 0.5), rtol=1e-5)


def test_an_unknown_optimizer_is_refused():
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="rmsprop")


@needs_shared
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_a_run_resumes_with_its_own_optimizer(tmp_path, optimizer):
    config = tiny_config(tmp_path / "run", epochs=2, optimizer=optimizer, learning_rate=1e-3)
    train(config, session_epochs=1)
    resumed = keras.models.load_model(config.out / "last.keras")
    assert type(resumed.optimizer) is type(new_model(config).optimizer)
    assert train(config)["epochs_run"] == 2

    run = json.loads((config.out / "run.json").read_text())

    def card_optimizer() -> str:
        card = build_card(run, config.preprocessing, resumed, 17, "0" * 64, "0" * 64, {})
        return card["hyperparameters"]["optimizer"]

    assert card_optimizer() == optimizer
    del run["config"]["optimizer"]  # a run recorded before the option trained with Adam
    assert card_optimizer() == "adam"
