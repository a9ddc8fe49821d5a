"""The auxiliary subtype head (normal / bacterial / viral): trained alongside, dropped before shipping."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import TRAIN_224, needs_shared
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.data import SUBTYPE_NAMES, list_samples, pneumonia_subtype


def test_the_subtype_comes_from_the_label_and_the_pneumonia_films_name():
    assert pneumonia_subtype("IM-0115-0001.jpeg", 0) == 0
    assert pneumonia_subtype("person1000_bacteria_2931.jpeg", 1) == 1
    assert pneumonia_subtype("person1000_virus_1681.jpeg", 1) == 2
    with pytest.raises(ValueError, match="bacteria or virus"):
        pneumonia_subtype("scan_0001.png", 1)  # a guess would teach the head a wrong class


@needs_shared
def test_every_training_film_has_a_subtype():
    counts = np.bincount([s.subtype for s in list_samples(TRAIN_224 / "train")], minlength=len(SUBTYPE_NAMES))
    assert counts.min() > 1000


def test_the_head_cannot_train_with_mixup():
    with pytest.raises(ValueError, match="mixup"):
        TrainConfig(subtype_weight=0.3, mixup_alpha=0.2)
    with pytest.raises(ValueError, match="subtype_weight"):
        TrainConfig(subtype_weight=-1.0)


@needs_shared
def test_a_run_with_the_head_resumes_and_ships_a_single_output_model(tmp_path):
    import keras

    from training.export import export_run, onnx_probabilities
    from training.model import SUBTYPE_OUTPUT
    from training.train import train
    from training.train_ensemble import load_member

    config = tiny_config(tmp_path / "run", epochs=2, subtype_weight=0.5)
    train(config, session_epochs=1)
    done = train(config)  # resumes the two-output checkpoint
    history = done["history"]
    assert len(history["val_auc"]) == 2 and done["best_epoch"] in (1, 2)
    assert np.isfinite(history["subtype_loss"]).all() and np.isfinite(history["val_subtype_loss"]).all()
    # the total loss includes the head's: it is more than the classifier's own
    assert all(t > p for t, p in zip(history["loss"], history["probability_loss"], strict=True))

    best = keras.models.load_model(config.out / "checkpoint.keras")
    films = np.random.default_rng(0).random((2, 128, 128, 1), dtype=np.float32)
    subtypes = keras.ops.convert_to_numpy(best(films)[SUBTYPE_OUTPUT])
    assert subtypes.shape == (2, len(SUBTYPE_NAMES)) and np.allclose(subtypes.sum(axis=1), 1.0, atol=1e-5)

    shipped = keras.models.load_model(config.out / "model.keras")
    assert len(shipped.outputs) == 1
    kernel = best.get_layer("block3_conv").get_weights()[0]
    assert np.array_equal(shipped.get_layer("block3_conv").get_weights()[0], kernel)
    assert len(load_member(config.out).outputs) == 1

    export_run(config.out, tmp_path / "model")  # converts and checks parity on validation films
    onnx = onnx_probabilities(tmp_path / "model" / "model.onnx", films).reshape(-1)
    assert np.allclose(onnx, shipped.predict(films, verbose=0).reshape(-1), atol=1e-4)
