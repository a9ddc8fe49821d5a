"""Grad-CAM math (TensorFlow): the heat map of one model input at the card's conv layer.

Gradients are taken of the `logit` (pre-sigmoid) output, which does not saturate the
way the probability does; for a deep ensemble (one graph, `training/ensemble.py`) the
map is the mean of each member's map at its own conv layer, all of one grid size. The map
of each label comes from the same pass: the positive part argues PNEUMONIA, the negative
part (the logit's sign flipped) NORMAL, so the API can draw the map of the label it
returns, even when its ONNX probability and this Keras one fall on either side of the
threshold. One compiled `tf.function` with a fixed
input signature does the forward and backward pass; no eager work per call.

`compute_from_activations` gives the same maps from the conv layers' activations that the API's
onnxruntime call already computed (`training/onnx_graph/gradcam.py`): it runs only the network after
those layers, forward and back, which is a small part of the work (benchmarks/README.md).
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
        # The same network from the layers' activations on (Keras 3 takes intermediate tensors as inputs).
        self._tail_model = keras.Model([layer.output for layer in layers], target)
        self.channels = tuple(int(layer.output.shape[-1]) for layer in layers)
        self.jit_compile = jit_compile
        self._compiled, self._compiled_tail = self._compile(jit_compile)

    @property
    def activations_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what `compute_from_activations` takes: the layers side by side on the channel axis."""
        height, width = self.grid
        return sum(self.channels), height, width

    def _compile(self, jit_compile: bool):
        # XLA makes the forward+backward pass ~25% faster on CPU (same map to ~1e-5).
        spec = tf.TensorSpec((1, self.input_size, self.input_size, 1), tf.float32)
        tail_spec = [tf.TensorSpec((1, *self.grid, c), tf.float32) for c in self.channels]
        return (tf.function(self._raw_map, input_signature=[spec], jit_compile=jit_compile),
                tf.function(self._raw_tail_map, input_signature=[tail_spec], jit_compile=jit_compile))

    def _raw_map(self, image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """(mean over layers of sum_k mean(dlogit/dA_k) * A_k, logit): the signed class-activation map."""
        with tf.GradientTape() as tape:
            tape.watch(image)  # records every op even if the weights are frozen
            features, output = self._grad_model(image, training=False)
            target = output[:, 0]
        return _signed_map(features, tape.gradient(target, features)), output[0, 0]

    def _raw_tail_map(self, activations: list[tf.Tensor]) -> tuple[tf.Tensor, tf.Tensor]:
        """`_raw_map` from the layers' activations (each (1, H, W, C_k))."""
        with tf.GradientTape() as tape:
            tape.watch(activations)
            output = self._tail_model(activations, training=False)
            target = output[:, 0]
        return _signed_map(activations, tape.gradient(target, activations)), output[0, 0]

    def compute(self, model_input: np.ndarray) -> GradcamMap:
        """float32 (S, S) model input in [0, 1] -> the heat map of each label."""
        if model_input.shape != (self.input_size, self.input_size):
            raise ValueError(f"model input must be {self.input_size}x{self.input_size}")
        batch = tf.constant(model_input[np.newaxis, :, :, np.newaxis], dtype=tf.float32)
        return self._maps(*self._compiled(batch))

    def compute_from_activations(self, activations: np.ndarray) -> GradcamMap:
        """float32 (C, H, W) activations of the layers (the ONNX output `gradcam_activations` of one film,
        channel-first) -> the heat map of each label, as `compute` gives it from the film."""
        if activations.shape != self.activations_shape:
            raise ValueError(f"activations must have the shape {self.activations_shape}")
        parts = np.split(activations, np.cumsum(self.channels)[:-1], axis=0)
        tensors = [tf.constant(np.transpose(part, (1, 2, 0))[np.newaxis], dtype=tf.float32) for part in parts]
        return self._maps(*self._compiled_tail(tensors))

    def _maps(self, cam: tf.Tensor, output: tf.Tensor) -> GradcamMap:
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
        no_activations = np.zeros(self.activations_shape, np.float32)
        try:
            self.compute(zeros)
            self.compute_from_activations(no_activations)
        except Exception:
            if not self.jit_compile:
                raise
            self.jit_compile = False
            self._compiled, self._compiled_tail = self._compile(False)
            self.compute(zeros)
            self.compute_from_activations(no_activations)


def _signed_map(features: list[tf.Tensor], gradients: list[tf.Tensor]) -> tf.Tensor:
    """Mean over layers of sum_k mean(dlogit/dA_k) * A_k (non-finite gradients count as 0)."""
    cams = []
    for feature, grads in zip(features, gradients, strict=True):
        grads = tf.where(tf.math.is_finite(grads), grads, tf.zeros_like(grads))
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
        cams.append(tf.reduce_sum(feature * weights, axis=-1)[0])
    return tf.add_n(cams) / len(cams)


def normalize(signed_cam: np.ndarray) -> tuple[np.ndarray, bool]:
    """ReLU then scale to [0, 1]; an all-zero (or non-finite) map stays zeros, never NaN."""
    cam = np.maximum(np.nan_to_num(signed_cam.astype(np.float32), nan=0.0, posinf=0.0, neginf=0.0), 0.0)
    peak = float(cam.max()) if cam.size else 0.0
    if peak <= EPSILON:
        return np.zeros_like(cam), True
    return cam / peak, False
