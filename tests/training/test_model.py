"""The CNN with batch norm: the block activations Grad-CAM needs and an ONNX graph equal to Keras."""

from __future__ import annotations

import keras
import numpy as np
import onnxruntime as ort

from training.export import convert_to_onnx
from training.model import build_model, gradcam_layer_for

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
    convert_to_onnx(model, 128, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    onnx_out = session.run(["probability"], {session.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(onnx_out, model.predict(x, verbose=0), atol=1e-5)
