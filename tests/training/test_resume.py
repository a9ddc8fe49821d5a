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
    return TrainConfig(
        data=TRAIN_224, out=out, epochs=3, batch_size=16, limit=64, verbose=0, val_fraction=0.3,
        filters=(4, 4, 8, 8, 8, 16, 16), dense_units=8, preprocessing=PreprocessConfig(input_size=128), **extra,
    )


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
