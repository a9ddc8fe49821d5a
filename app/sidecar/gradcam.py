"""Grad-CAM math (TensorFlow): the heat map of one model input at the card's conv layer.

Gradients are taken of the `logit` (pre-sigmoid) output, which does not saturate the
way the probability does; for a NORMAL prediction the logit's sign is flipped so the map
shows the evidence for the label the model gave. One compiled `tf.function` with a fixed
input signature does the forward and backward pass; no eager work per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

LOGIT_LAYER = "logit"
EPSILON = 1e-8


@dataclass(frozen=True)
class GradcamMap:
    heatmap: np.ndarray  # float32 (h, w) in [0, 1], the layer's grid
    probability: float  # sigmoid(logit): the Keras model's P(pneumonia)
    explained_label: str
    empty: bool  # no positive evidence (e.g. all-zero gradients): heat map is all zeros


class GradCam:
    def __init__(self, model: keras.Model, layer_name: str, threshold: float, jit_compile: bool = True) -> None:
        layer = model.get_layer(layer_name)
        if len(layer.output.shape) != 4:
            raise ValueError(f"layer {layer_name} is not a convolutional feature map")
        try:
            target = model.get_layer(LOGIT_LAYER).output
        except ValueError:
            target = model.outputs[0]  # no separate logit layer: fall back to the probability
        self._logit_is_probability = target is model.outputs[0]
        self.layer_name = layer_name
        self.threshold = threshold
        self.input_size = int(model.inputs[0].shape[1])
        self.grid = tuple(int(n) for n in layer.output.shape[1:3])
        self._grad_model = keras.Model(model.inputs, [layer.output, target])
        self.jit_compile = jit_compile
        self._compiled = self._compile(jit_compile)

    def _compile(self, jit_compile: bool):
        # XLA makes the forward+backward pass ~25% faster on CPU (same map to ~1e-5).
        spec = tf.TensorSpec((1, self.input_size, self.input_size, 1), tf.float32)
        return tf.function(self._raw_map, input_signature=[spec], jit_compile=jit_compile)

    def _raw_map(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(sum_k mean(dlogit/dA_k) * A_k, logit): the signed class-activation map."""
        with tf.GradientTape() as tape:
            tape.watch(image)  # records every op even if the weights are frozen
            features, output = self._grad_model(image, training=False)
            target = output[:, 0]
        grads = tape.gradient(target, features)
        grads = tf.where(tf.math.is_finite(grads), grads, tf.zeros_like(grads))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cam = tf.reduce_sum(features * weights, axis=-1)[0]
        return cam, output[0, 0]

    def compute(self, model_input: np.ndarray) -> GradcamMap:
        """float32 (S, S) model input in [0, 1] -> heat map for the predicted label."""
        if model_input.shape != (self.input_size, self.input_size):
            raise ValueError(f"model input must be {self.input_size}x{self.input_size}")
        batch = tf.constant(model_input[np.newaxis, :, :, np.newaxis], dtype=tf.float32)
        cam, output = self._compiled(batch)
        value = float(output.numpy())
        probability = value if self._logit_is_probability else float(1.0 / (1.0 + np.exp(-value)))
        positive = probability >= self.threshold
        signed = cam.numpy() if positive else -cam.numpy()
        heatmap, empty = normalize(signed)
        return GradcamMap(heatmap, probability, "PNEUMONIA" if positive else "NORMAL", empty)

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
