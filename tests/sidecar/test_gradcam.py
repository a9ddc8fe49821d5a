"""Grad-CAM math on real Keras models: grid size, range, agreement with ONNX, the all-zero guard."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from app.model.card import load_model_card
from app.model.engine import InferenceEngine
from app.sidecar.gradcam import GradCam, normalize
from tests.serving import FIXTURE_JPEGS


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> InferenceEngine:
    return InferenceEngine(model_dir)


@pytest.fixture(scope="module")
def gradcam(model_dir: Path) -> GradCam:
    card = load_model_card(model_dir)
    model = keras.models.load_model(model_dir / card.keras_file, compile=False)
    return GradCam(model, card.gradcam_layers, card.threshold)


@pytest.mark.parametrize("path", FIXTURE_JPEGS, ids=lambda p: p.name)
def test_gradcam_real_film_gives_fine_normalised_map(gradcam: GradCam, engine: InferenceEngine, path: Path) -> None:
    prepared = engine.prepare(path.read_bytes(), 10**8)
    result = gradcam.compute(prepared.model_input[0, :, :, 0])
    assert result.heatmap.shape == gradcam.grid
    assert min(gradcam.grid) >= 14
    assert result.heatmap.dtype == np.float32 and np.isfinite(result.heatmap).all()
    assert result.heatmap.min() >= 0.0 and result.heatmap.max() <= 1.0
    assert result.empty[result.predicted_label] or result.heatmap.max() == pytest.approx(1.0)
    assert result.probability == pytest.approx(engine.predict(prepared), abs=1e-4)
    assert result.predicted_label == engine.label_for(result.probability)


@pytest.mark.parametrize("path", FIXTURE_JPEGS, ids=lambda p: p.name)
def test_maps_from_the_onnx_activations_equal_the_maps_from_the_film(
    gradcam: GradCam, engine: InferenceEngine, path: Path
) -> None:
    """The API's onnxruntime activations through the end of the network give the sidecar's own maps."""
    prepared = engine.prepare(path.read_bytes(), 10**8)
    (assessment,) = engine.assess([prepared], gradcam=True)
    assert assessment.gradcam_activations is not None
    assert assessment.gradcam_activations.shape == gradcam.activations_shape
    from_film = gradcam.compute(prepared.model_input[0, :, :, 0])
    from_activations = gradcam.compute_from_activations(assessment.gradcam_activations)
    assert from_activations.probability == pytest.approx(from_film.probability, abs=1e-4)
    assert from_activations.probability == pytest.approx(assessment.probability, abs=1e-4)
    for label in from_film.heatmaps:
        assert from_activations.empty[label] == from_film.empty[label]
        np.testing.assert_allclose(from_activations.heatmaps[label], from_film.heatmaps[label], atol=1e-3)


def test_activations_of_another_shape_are_refused(gradcam: GradCam) -> None:
    channels, height, width = gradcam.activations_shape
    with pytest.raises(ValueError, match="shape"):
        gradcam.compute_from_activations(np.zeros((channels + 1, height, width), np.float32))


def test_gradcam_function_is_traced_once(gradcam: GradCam) -> None:
    size = gradcam.input_size
    for seed in range(3):
        gradcam.compute(np.random.default_rng(seed).random((size, size), dtype=np.float32))
    assert gradcam._compiled.experimental_get_tracing_count() == 1


def test_gradcam_zero_gradients_give_empty_map_without_nan() -> None:
    """Live feature maps, but a logit that ignores them: every gradient is exactly zero."""
    inputs = keras.Input((32, 32, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="block1_conv",
                            bias_initializer=keras.initializers.Constant(1.0))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logit = keras.layers.Dense(1, kernel_initializer="zeros", name="logit")(x)
    model = keras.Model(inputs, keras.layers.Activation("sigmoid", name="probability")(logit))
    result = GradCam(model, "block1_conv", threshold=0.5).compute(np.ones((32, 32), np.float32))
    assert result.empty == {"PNEUMONIA": True, "NORMAL": True}
    for heatmap in result.heatmaps.values():
        assert np.isfinite(heatmap).all() and not heatmap.any()


def test_normalize_zero_and_nan_maps_stay_finite() -> None:
    for grid in (np.zeros((14, 14)), np.full((14, 14), np.nan), -np.ones((14, 14))):
        heat, empty = normalize(grid)
        assert empty is True
        assert np.isfinite(heat).all() and not heat.any()


def test_gradcam_rejects_wrong_input_size(gradcam: GradCam) -> None:
    with pytest.raises(ValueError):
        gradcam.compute(np.zeros((gradcam.input_size + 1, gradcam.input_size), np.float32))


def test_gradcam_layer_must_be_a_feature_map(model_dir: Path) -> None:
    card = load_model_card(model_dir)
    model = keras.models.load_model(model_dir / card.keras_file, compile=False)
    with pytest.raises(ValueError):
        GradCam(model, "logit", card.threshold)
    assert tf.executing_eagerly()  # nothing above switched TensorFlow out of eager mode globally


def test_ensemble_map_is_the_mean_of_the_members_maps() -> None:
    """Grad-CAM over every member's layer of one ensemble graph == the normalised mean of member maps."""
    from training.ensemble import build_ensemble, member_layers
    from training.model import build_model

    members = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        members.append(build_model(128, (4, 4, 8, 8, 8, 16, 16), (0.0,) * 7, 8, 0.0, 0.0))
    ensemble = build_ensemble(members)
    image = np.random.default_rng(0).random((128, 128), dtype=np.float32)
    batch = tf.constant(image[np.newaxis, :, :, np.newaxis])
    raw = [GradCam(m, "block4_conv", 0.5, jit_compile=False)._raw_map(batch)[0].numpy() for m in members]
    joint = GradCam(ensemble, member_layers("block4_conv", 2), 0.5, jit_compile=False)
    assert joint.layer_name == "m1_block4_conv+m2_block4_conv"
    cam, _ = joint._raw_map(batch)
    # d(mean logit)/dA_k is half of d(logit_k)/dA_k: the joint map is the members' mean, halved.
    np.testing.assert_allclose(cam.numpy(), np.mean(raw, axis=0) / 2, rtol=1e-4, atol=1e-6)
    result = joint.compute(image)
    assert result.heatmap.shape == joint.grid == (16, 16)
