"""A deep ensemble is one Keras model whose output is sigmoid(mean of the members' logits)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.ensemble import build_ensemble, member_layers
from training.model import LOGIT_LAYER, build_model
from training.train import fold_platt_into_logit

TINY = {"filters": (4, 4, 8, 8, 8, 16, 16), "dropout": (0.0,) * 7, "dense_units": 8, "dense_dropout": 0.0,
        "weight_decay": 0.0}


def tiny_member(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_model(128, **TINY)


def raw_logit(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output)(x).numpy().reshape(-1)


@pytest.fixture(scope="module")
def members() -> list[keras.Model]:
    return [tiny_member(seed) for seed in (1, 2, 3)]


def test_ensemble_output_is_the_sigmoid_of_the_mean_logit(members):
    x = np.random.default_rng(0).random((5, 128, 128, 1), dtype=np.float32)
    ensemble = build_ensemble(members)
    mean = np.mean([raw_logit(m, x) for m in members], axis=0)
    np.testing.assert_allclose(raw_logit(ensemble, x), mean, atol=1e-5)
    np.testing.assert_allclose(ensemble(x).numpy().reshape(-1), 1 / (1 + np.exp(-mean)), atol=1e-6)


def test_members_with_a_branching_head_join_flat_and_answer_as_the_mean_logit():
    # the concat-pool head (average and max side by side) is a branch, not a chain of layers
    x = np.random.default_rng(4).random((3, 224, 224, 1), dtype=np.float32)
    branching = []
    for seed in (5, 6):
        keras.utils.set_random_seed(seed)
        branching.append(build_model(224, **TINY, pool_padding="same", head_pooling="avg_max"))
    ensemble = build_ensemble(branching)
    assert not any(isinstance(layer, keras.Model) for layer in ensemble.layers)  # Grad-CAM reads member layers
    assert {"m1_gap", "m1_gmp", "m1_gap_gmp", "m2_gap_gmp"} <= {layer.name for layer in ensemble.layers}
    mean = np.mean([raw_logit(m, x) for m in branching], axis=0)
    np.testing.assert_allclose(raw_logit(ensemble, x), mean, atol=1e-5)


def test_platt_folds_into_the_ensemble_logit(members):
    x = np.random.default_rng(1).random((3, 128, 128, 1), dtype=np.float32)
    ensemble = build_ensemble(members)
    before = raw_logit(ensemble, x)
    fold_platt_into_logit(ensemble, 0.5, -1.0)
    np.testing.assert_allclose(raw_logit(ensemble, x), 0.5 * before - 1.0, atol=1e-5)


def test_member_layers_are_named_and_present(members):
    ensemble = build_ensemble(members)
    names = member_layers("block5_conv", len(members))
    assert names == ["m1_block5_conv", "m2_block5_conv", "m3_block5_conv"]
    for name, member in zip(names, members, strict=True):
        np.testing.assert_array_equal(ensemble.get_layer(name).get_weights()[0],
                                      member.get_layer("block5_conv").get_weights()[0])


def test_ensemble_survives_a_save_and_load(members, tmp_path):
    ensemble = build_ensemble(members)
    ensemble.save(tmp_path / "ensemble.keras")
    loaded = keras.models.load_model(tmp_path / "ensemble.keras", compile=False)
    x = np.random.default_rng(2).random((2, 128, 128, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded(x).numpy(), ensemble(x).numpy(), atol=1e-6)


def test_one_member_or_mismatched_inputs_are_refused(members):
    with pytest.raises(ValueError, match="at least two"):
        build_ensemble(members[:1])
    keras.utils.set_random_seed(0)
    other = build_model(160, **TINY)
    with pytest.raises(ValueError, match="input shape"):
        build_ensemble([members[0], other])
    inputs = keras.Input((128, 128, 1))
    no_logit = keras.Model(inputs, keras.layers.Dense(1, name="score")(keras.layers.Flatten()(inputs)))
    with pytest.raises(ValueError, match="logit"):
        build_ensemble([members[0], no_logit])
