"""The CNN's options (batch norm, pools, head pooling): the activations Grad-CAM needs, an ONNX graph equal to Keras."""

from __future__ import annotations

import inspect
import json

import keras
import numpy as np
import onnxruntime as ort
import pytest

from app.imaging.preprocess import PreprocessConfig
from tests.conftest import needs_shared
from tests.training.test_resume import tiny_config
from training.config import TrainConfig
from training.export import build_card, convert_to_onnx
from training.model import build_model, gradcam_layer_for
from training.train import architecture, new_model, train

TINY = {"filters": (4, 4, 8, 8, 8, 16, 16), "dropout": (0.0,) * 7, "dense_units": 8, "dense_dropout": 0.0,
        "weight_decay": 0.0}


def test_gradcam_reads_the_relu_after_batch_norm_and_the_conv_without_it():
    plain = build_model(128, **TINY)
    normed = build_model(128, **TINY, normalization="batch")
    assert gradcam_layer_for(plain) == "block4_conv"  # 128 px: block 4 is the last 16x16 map
    assert gradcam_layer_for(normed) == "block4_relu"  # the conv's output is before the norm and the ReLU
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in normed.layers) == 7


def test_a_batch_norm_model_exports_to_onnx_with_the_same_output(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(128, **TINY, normalization="batch")
    model.compile("adam", "binary_crossentropy")
    x = np.random.default_rng(0).random((8, 128, 128, 1)).astype(np.float32)
    model.fit(x, np.arange(8) % 2, epochs=1, verbose=0)  # moving statistics away from their initial values
    _assert_onnx_answers_as_keras(model, x, tmp_path)


def _assert_onnx_answers_as_keras(model: keras.Model, x: np.ndarray, tmp_path) -> None:
    convert_to_onnx(model, x.shape[1], tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(["probability"], {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(onnx_out, model.predict(x, verbose=0), atol=1e-5)


def test_a_wider_first_kernel_changes_block_1_only_and_exports_to_onnx_with_the_same_output(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_model(128, **TINY, block1_kernel=5)
    kernels = [model.get_layer(f"block{block}_conv").kernel.shape[:2] for block in range(1, 8)]
    assert kernels == [(5, 5)] + [(3, 3)] * 6
    seed_like = build_model(128, **TINY)
    assert [layer.output.shape for layer in model.layers] == [layer.output.shape for layer in seed_like.layers]
    assert model.count_params() - seed_like.count_params() == (25 - 9) * TINY["filters"][0]  # one input channel
    x = np.random.default_rng(0).random((4, 128, 128, 1)).astype(np.float32)
    _assert_onnx_answers_as_keras(model, x, tmp_path)


@pytest.mark.parametrize("side", [4, 0, 13])
def test_a_first_kernel_must_be_odd_and_small(side):
    with pytest.raises(ValueError, match="block1_kernel must be odd"):
        TrainConfig(block1_kernel=side)
    with pytest.raises(ValueError, match="block1_kernel must be odd"):
        build_model(64, **TINY, block1_kernel=side)


def test_a_run_builds_the_first_kernel_its_config_names(tmp_path):
    model = new_model(tiny_config(tmp_path, preprocessing=PreprocessConfig(input_size=128), block1_kernel=7))
    assert model.get_layer("block1_conv").kernel.shape[:2] == (7, 7)


def test_a_config_names_every_argument_of_build_model_and_only_layer_options_change_it():
    # the study caches one model per architecture: an argument missing here would share a model wrongly
    assert set(architecture(TrainConfig())) == set(inspect.signature(build_model).parameters)
    assert architecture(TrainConfig(learning_rate=5e-4, epochs=3)) == architecture(TrainConfig())
    assert architecture(TrainConfig(block1_kernel=5)) != architecture(TrainConfig())
    assert architecture(TrainConfig(head_pooling="avg_max")) != architecture(TrainConfig())
    assert architecture(TrainConfig(subtype_weight=0.5))["subtypes"] == 3


def test_the_head_reads_the_last_maps_average_its_max_or_both_side_by_side():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).random((3, 224, 224, 1)).astype(np.float32)
    last = TINY["filters"][-1]
    for pooling, width in (("avg", last), ("max", last), ("avg_max", 2 * last)):
        model = build_model(128, **TINY, head_pooling=pooling)
        assert model.get_layer("dense").kernel.shape == (width, TINY["dense_units"]), pooling
    both = build_model(224, **TINY, pool_padding="same", head_pooling="avg_max")
    maps = keras.Model(both.inputs, both.get_layer("block7_dropout").output)(x).numpy()
    pooled = keras.Model(both.inputs, both.get_layer("gap_gmp").output)(x).numpy()
    assert maps.shape[1:3] == (2, 2)  # a map of one cell would make its average its max
    np.testing.assert_allclose(pooled, np.concatenate([maps.mean(axis=(1, 2)), maps.max(axis=(1, 2))], axis=1),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["max", "avg_max"])
def test_a_max_pooled_head_exports_to_onnx_with_the_same_output(tmp_path, pooling):
    keras.utils.set_random_seed(0)
    model = build_model(112, **TINY, pool_padding="same", head_pooling=pooling)
    _assert_onnx_answers_as_keras(model, np.random.default_rng(3).random((4, 112, 112, 1)).astype(np.float32), tmp_path)


def test_unknown_head_pooling_is_refused():
    with pytest.raises(ValueError, match="head_pooling"):
        build_model(128, **TINY, head_pooling="attention")
    with pytest.raises(ValueError, match="head_pooling"):
        TrainConfig(head_pooling="sum")


def _pool_sides(model: keras.Model) -> list[int]:
    return [layer.output.shape[1] for layer in model.layers if isinstance(layer, keras.layers.MaxPool2D)]


def test_same_pooling_keeps_the_last_row_and_column_of_odd_maps():
    # 224 px: blocks 6 and 7 pool a 7x7 and a 3x3 map
    assert _pool_sides(build_model(224, **TINY)) == [112, 56, 28, 14, 7, 3, 1]  # the seed's: drops them
    assert _pool_sides(build_model(224, **TINY, pool_padding="same")) == [112, 56, 28, 14, 7, 4, 2]


def test_a_run_builds_the_pool_padding_its_config_names(tmp_path):
    sides = _pool_sides(new_model(tiny_config(tmp_path, preprocessing=PreprocessConfig(input_size=224),
                                              pool_padding="same")))
    assert sides[-2:] == [4, 2]


def test_unknown_pool_padding_is_refused():
    with pytest.raises(ValueError, match="pool_padding"):
        build_model(128, **TINY, pool_padding="full")
    with pytest.raises(ValueError, match="pool_padding"):
        TrainConfig(pool_padding="causal")


@pytest.mark.parametrize("antialiased", [False, True], ids=["max pools", "anti-aliased pools"])
def test_a_same_pooled_model_exports_to_onnx_with_the_same_output(tmp_path, antialiased):
    keras.utils.set_random_seed(0)
    # 112 px: 7 -> 4 -> 2 -> 1, three padded pools (or blurs)
    model = build_model(112, **TINY, pool_padding="same", antialiased_pools=antialiased)
    _assert_onnx_answers_as_keras(model, np.random.default_rng(1).random((4, 112, 112, 1)).astype(np.float32), tmp_path)


@needs_shared
def test_the_card_records_the_pool_padding_and_valid_for_runs_before_the_option(tmp_path):
    at_112 = PreprocessConfig(input_size=112)  # 7 -> 4 -> 2 -> 1 with padding
    config = tiny_config(tmp_path / "run", epochs=1, pool_padding="same", preprocessing=at_112)
    train(config)
    model = keras.models.load_model(config.out / "model.keras")
    assert _pool_sides(model)[-3:] == [4, 2, 1]  # the saved model keeps its padding (valid: 3, 1, 0)
    run = json.loads((config.out / "run.json").read_text())

    def architecture() -> dict:
        return build_card(run, config.preprocessing, model, 17, "0" * 64, "0" * 64, {})["architecture"]

    assert architecture()["pool_padding"] == "same" and "same padding" in architecture()["summary"]
    del run["config"]["pool_padding"]  # a run recorded before the option pooled without padding
    assert architecture()["pool_padding"] == "valid"


def _blur_sides(model: keras.Model) -> list[int]:
    return [layer.output.shape[1] for layer in model.layers if layer.name.endswith("_blur")]


def test_antialiased_pools_keep_full_maps_then_blur_down_like_same_padding():
    model = build_model(224, **TINY, pool_padding="same", antialiased_pools=True)
    assert _pool_sides(model) == [224, 112, 56, 28, 14, 7, 4]  # the max runs at stride 1
    assert _blur_sides(model) == [112, 56, 28, 14, 7, 4, 2]  # the blur halves, as same-padded pools do
    assert gradcam_layer_for(model) == "block5_conv"  # the blur is not an activation Grad-CAM may read


def test_antialiased_pools_can_start_at_a_later_block():
    model = build_model(224, **TINY, pool_padding="same", antialiased_pools=True, antialias_from_block=5)
    assert _pool_sides(model) == [112, 56, 28, 14, 14, 7, 4]  # blocks 1-4 pool at stride 2, 5-7 at stride 1
    assert _blur_sides(model) == [7, 4, 2]
    with pytest.raises(ValueError, match="antialias_from_block"):
        TrainConfig(antialiased_pools=True, pool_padding="same", antialias_from_block=8)
    with pytest.raises(ValueError, match="antialias_from_block"):
        build_model(64, **TINY, pool_padding="same", antialiased_pools=True, antialias_from_block=0)


def test_antialiased_pools_blur_with_a_fixed_binomial_kernel_that_training_leaves_alone():
    keras.utils.set_random_seed(0)
    model = build_model(64, **TINY, pool_padding="same", antialiased_pools=True)
    model.compile(keras.optimizers.Adam(0.1), "binary_crossentropy")
    x = np.random.default_rng(0).random((8, 64, 64, 1)).astype(np.float32)
    conv_before = model.get_layer("block1_conv").get_weights()[0].copy()
    model.fit(x, np.arange(8) % 2, epochs=2, verbose=0)
    binomial = np.outer([1, 2, 1], [1, 2, 1]) / 16
    for block in range(1, 8):
        kernel = model.get_layer(f"block{block}_blur").get_weights()[0]
        assert kernel.shape == (3, 3, TINY["filters"][block - 1], 1)
        np.testing.assert_allclose(kernel, np.broadcast_to(binomial[:, :, None, None], kernel.shape))
    assert not np.allclose(conv_before, model.get_layer("block1_conv").get_weights()[0])  # the rest did train


def test_antialiased_pools_need_same_padding():
    with pytest.raises(ValueError, match="antialiased_pools"):
        TrainConfig(antialiased_pools=True)  # the default pool_padding is the seed's "valid"
    with pytest.raises(ValueError, match="antialiased_pools"):
        build_model(64, **TINY, antialiased_pools=True)
    TrainConfig(antialiased_pools=True, pool_padding="same")


@needs_shared
def test_a_run_builds_and_the_card_records_antialiased_pools(tmp_path):
    at_112 = PreprocessConfig(input_size=112)
    config = tiny_config(tmp_path / "run", epochs=1, pool_padding="same", antialiased_pools=True,
                         preprocessing=at_112)
    train(config)
    model = keras.models.load_model(config.out / "model.keras")
    assert _blur_sides(model) == [56, 28, 14, 7, 4, 2, 1]  # the saved model keeps its blur layers
    run = json.loads((config.out / "run.json").read_text())
    card = build_card(run, config.preprocessing, model, 17, "0" * 64, "0" * 64, {})["architecture"]
    assert card["antialiased_pools"] is True and card["antialias_from_block"] == 1
    assert "Dropout, global" in card["summary"] and "-> fixed 3x3 blur at stride 2 -> Dropout" in card["summary"]
    assert card["block1_kernel"] == 3 and "7 blocks of Conv2D(3x3, ReLU) ->" in card["summary"]
    run["config"]["block1_kernel"] = 5  # the card names a wider first kernel
    wide = build_card(run, config.preprocessing, model, 17, "0" * 64, "0" * 64, {})["architecture"]
    assert wide["block1_kernel"] == 5 and "Conv2D(5x5 in block 1, 3x3 after; ReLU)" in wide["summary"]
    run["config"]["antialias_from_block"] = 5  # the card names where the blur starts
    late = build_card(run, config.preprocessing, model, 17, "0" * 64, "0" * 64, {})["architecture"]
    assert "same padding) (from block 5 on: MaxPool2D(2, stride 1)" in late["summary"]
    assert late["head_pooling"] == "avg" and "Dropout, global average pool, Dense" in late["summary"]
    run["config"]["head_pooling"] = "avg_max"  # the card names the head's pools
    both = build_card(run, config.preprocessing, model, 17, "0" * 64, "0" * 64, {})["architecture"]
    assert both["head_pooling"] == "avg_max" and "global average and max pools, concatenated, Dense" in both["summary"]
    del run["config"]["antialiased_pools"]  # a run recorded before the option
    assert build_card(run, config.preprocessing, model, 17, "0" * 64, "0" * 64, {})["architecture"][
        "antialiased_pools"] is False
