"""A run stopped after some epochs resumes from its last checkpoint and ends as if never stopped."""

from __future__ import annotations

import json

import pytest

from app.imaging.preprocess import PreprocessConfig
from tests.conftest import TRAIN_224, needs_shared
from training.config import TrainConfig
from training.train import train

pytestmark = needs_shared


def tiny_config(out, **extra) -> TrainConfig:
    defaults = dict(
        data=TRAIN_224, out=out, epochs=3, batch_size=16, limit=64, verbose=0, val_fraction=0.3,
        filters=(4, 4, 8, 8, 8, 16, 16), dense_units=8, preprocessing=PreprocessConfig(input_size=128),
    )
    return TrainConfig(**{**defaults, **extra})


def test_a_stopped_run_resumes_at_its_next_epoch(tmp_path):
    config = tiny_config(tmp_path / "run")
    first = train(config, session_epochs=1)
    assert first["epochs_run"] == 1 and "threshold" not in first
    assert (config.out / "last.keras").is_file() and not (config.out / "model.keras").exists()

    second = train(config, session_epochs=1)
    assert second["epochs_run"] == 2
    history = json.loads((config.out / "run.json").read_text())["history"]
    assert len(history["val_auc"]) == 2
    # The schedule continued: epoch 2 ran at the warm-up's end, not at epoch 1's rate again.
    assert history["learning_rate"][1] > history["learning_rate"][0]

    done = train(config)
    assert done["epochs_run"] == 3 and 0.0 < done["threshold"] < 1.0
    assert (config.out / "model.keras").is_file()
    assert len(done["history"]["val_auc"]) == 3
    assert train(config)["threshold"] == done["threshold"]  # finished: nothing is trained again


def test_resuming_with_another_config_is_refused(tmp_path):
    train(tiny_config(tmp_path / "run"), session_epochs=1)
    with pytest.raises(ValueError, match="another config"):
        train(tiny_config(tmp_path / "run", seed=7), session_epochs=1)


def test_a_run_recorded_before_an_option_existed_resumes_at_that_options_default(tmp_path):
    config = tiny_config(tmp_path / "run", epochs=2)
    train(config, session_epochs=1)
    run_json = config.out / "run.json"
    summary = json.loads(run_json.read_text())
    del summary["config"]["subtype_weight"]  # as written by the code before the option
    run_json.write_text(json.dumps(summary))
    assert train(config)["epochs_run"] == 2
    with pytest.raises(ValueError, match="another config"):
        train(tiny_config(tmp_path / "run", epochs=2, subtype_weight=0.5))


def test_an_ema_run_resumes_its_average_and_ships_it(tmp_path):
    """With EMA, the shipped weights are the moving average of the best epoch, not its raw weights;
    a resumed run keeps averaging from where it stopped (the average travels in the optimizer state)."""
    import keras
    import numpy as np

    config = tiny_config(tmp_path / "run", ema_momentum=0.9, mixup_alpha=0.2)
    train(config, session_epochs=2)
    last = keras.models.load_model(config.out / "last.keras")
    average = [keras.ops.convert_to_numpy(v) for v in last.optimizer._model_variables_moving_average]
    raw = [keras.ops.convert_to_numpy(v) for v in last.trainable_variables]
    assert any(np.abs(a - r).max() > 1e-6 for a, r in zip(average, raw, strict=True))

    done = train(config)
    assert done["epochs_run"] == 3
    best = keras.models.load_model(config.out / "checkpoint.keras")
    shipped = keras.models.load_model(config.out / "model.keras")
    layer = "block3_conv"
    kernel_index = next(i for i, v in enumerate(best.trainable_variables) if v.path == f"{layer}/kernel")
    ema_kernel = keras.ops.convert_to_numpy(best.optimizer._model_variables_moving_average[kernel_index])
    assert np.allclose(shipped.get_layer(layer).get_weights()[0], ema_kernel)
    assert not np.allclose(shipped.get_layer(layer).get_weights()[0], best.get_layer(layer).get_weights()[0])


def test_a_framing_balanced_run_trains_on_its_weights_and_records_them(tmp_path):
    done = train(tiny_config(tmp_path / "run", framing_balance=True))
    weights = done["framing_balance"]
    assert 0 < weights["effective_films"] <= done["data"]["train"]["NORMAL"] + done["data"]["train"]["PNEUMONIA"]
    assert weights["max_weight"] > 1.0 and 0.3 < weights["normal_weight_share"] < 0.7
    assert 0.0 < done["threshold"] < 1.0
