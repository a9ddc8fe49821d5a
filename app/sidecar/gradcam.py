"""Grad-CAM math (TensorFlow): the heat map of one model input at the card's conv layer.

Gradients are taken of the `logit` (pre-sigmoid) output, which does not saturate the
way the probability does; for a deep ensemble (one graph, `training/ensemble.py`) the
map is the mean of each member's map at its own conv layer, all of one grid size. The map
of each label comes from the same pass: the positive part argues PNEUMONIA, the negative
part (the logit's sign flipped) NORMAL, so the API can draw the map of the label it
returns, even when its ONNX probability and this Keras one fall on either side of the
threshold. One compiled `tf.function` with a fixed
input signature does the forward and backward pass; no eager work per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from app.gradcam.protocol import LABELS

LOGIT_LAYER = "logit"
EPSILON = 1e-8


@dataclass(frozen=True)
class GradcamMap:
    heatmaps: dict[str, np.ndarray]  # per label: float32 (h, w) in [0, 1], the layer's grid
    empty: dict[str, bool]  # per label: no evidence for it (e.g. all-zero gradients): that map is all zeros
    probability: float  # sigmoid(logit): the Keras model's P(pneumonia)
    predicted_label: str  # by the Keras probability and the card's threshold

    @property
    def heatmap(self) -> np.ndarray:
        """The map of the label this model predicts."""
        return self.heatmaps[self.predicted_label]


class GradCam:
    def __init__(
        self, model: keras.Model, layer_names: str | Sequence[str], threshold: float, jit_compile: bool = True
    ) -> None:
        names = [layer_names] if isinstance(layer_names, str) else list(layer_names)
        if not names:
            raise ValueError("Grad-CAM needs at least one layer")
        layers = [model.get_layer(name) for name in names]
        for layer in layers:
            if len(layer.output.shape) != 4:
                raise ValueError(f"layer {layer.name} is not a convolutional feature map")
        grids = {tuple(int(n) for n in layer.output.shape[1:3]) for layer in layers}
        if len(grids) != 1:
            raise ValueError(f"the layers' maps differ in size: {sorted(grids)}")
        try:
            target = model.get_layer(LOGIT_LAYER).output
        except ValueError:
            target = model.outputs[0]  # no separate logit layer: fall back to the probability
        self._logit_is_probability = target is model.outputs[0]
        self.layer_name = "+".join(names)
        self.threshold = threshold
        self.input_size = int(model.inputs[0].shape[1])
        self.grid = grids.pop()
        self._grad_model = keras.Model(model.inputs, [[layer.output for layer in layers], target])
        self.jit_compile = jit_compile
        self._compiled = self._compile(jit_compile)

    def _compile(self, jit_compile: bool):
        # XLA makes the forward+backward pass ~25% faster on CPU (same map to ~1e-5).
        spec = tf.TensorSpec((1, self.input_size, self.input_size, 1), tf.float32)
        return tf.function(self._raw_map, input_signature=[spec], jit_compile=jit_compile)

    def _raw_map(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(mean over layers of sum_k mean(dlogit/dA_k) * A_k, logit): the signed class-activation map."""
        with tf.GradientTape() as tape:
            tape.watch(image)  # records every op even if the weights are frozen
            features, output = self._grad_model(image, training=False)
            target = output[:, 0]
        cams = []
        for feature, grads in zip(features, tape.gradient(target, features), strict=True):
            grads = tf.where(tf.math.is_finite(grads), grads, tf.zeros_like(grads))
            weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
            cams.append(tf.reduce_sum(feature * weights, axis=-1)[0])
        return tf.add_n(cams) / len(cams), output[0, 0]

    def compute(self, model_input: np.ndarray) -> GradcamMap:
        """float32 (S, S) model input in [0, 1] -> the heat map of each label."""
        if model_input.shape != (self.input_size, self.input_size):
            raise ValueError(f"model input must be {self.input_size}x{self.input_size}")
        batch = tf.constant(model_input[np.newaxis, :, :, np.newaxis], dtype=tf.float32)
        cam, output = self._compiled(batch)
        value = float(output.numpy())
        probability = value if self._logit_is_probability else float(1.0 / (1.0 + np.exp(-value)))
        signed = cam.numpy()
        maps = dict(zip(LABELS, (normalize(signed), normalize(-signed)), strict=True))
        predicted = LABELS[0] if probability >= self.threshold else LABELS[1]
        return GradcamMap({label: heat for label, (heat, _) in maps.items()},
                          {label: empty for label, (_, empty) in maps.items()}, probability, predicted)

    def warm_up(self) -> None:
        """Trace (and XLA-compile) once at start-up so the first request is not slow.

        Where XLA cannot compile the graph, fall back to a plain compiled tf.function.
        """
        zeros = np.zeros((self.input_size, self.input_size), np.float32)
        try:
            self.compute(zeros)
        except Exception:
            if not self.jit_compile:
                raise
            self.jit_compile = False
            self._compiled = self._compile(False)
            self.compute(zeros)


def normalize(signed_cam: np.ndarray) -> tuple[np.ndarray, bool]:
    """ReLU then scale to [0, 1]; an all-zero (or non-finite) map stays zeros, never NaN."""
    cam = np.maximum(np.nan_to_num(signed_cam.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= EPSILON:
        return np.zeros_like(cam), True
    return cam / peak, False
