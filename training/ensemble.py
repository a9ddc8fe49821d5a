"""A deep ensemble of K members as ONE Keras model (and so one ONNX graph).

The members' layers are copied side by side into a flat functional model with
prefixed names (`m1_block1_conv`, ...), fed by one input. Their raw logits are averaged
(`member_mean`) and pass through one `logit` Dense(1) that starts as the identity, so
Platt calibration folds into it exactly as for a single model
(`training.train.fold_platt_into_logit`). Flat, not nested: the Grad-CAM sidecar reads
every member's conv layer from the one graph and averages their maps.
"""

from __future__ import annotations

import keras
from keras import layers

from training.model import INPUT_NAME, LOGIT_LAYER, PROBABILITY_OUTPUT

MEAN_LAYER = "member_mean"


def member_prefix(index: int) -> str:
    return f"m{index}_"


def _member_logit(member: keras.Model, inputs: keras.KerasTensor, prefix: str) -> keras.KerasTensor:
    """Replay `member`'s graph up to its `logit` layer on `inputs`, every layer renamed with `prefix` and
    holding the member's weights (`keras.models.clone_model` follows branches, such as a concat-pool head).
    A member without a `logit` layer is refused by `get_layer` (ValueError naming the layer)."""
    to_logit = keras.Model(member.inputs[0], member.get_layer(LOGIT_LAYER).output)

    def renamed(layer: keras.layers.Layer) -> keras.layers.Layer:
        return layer.__class__.from_config({**layer.get_config(), "name": prefix + layer.name})

    clone = keras.models.clone_model(to_logit, input_tensors=inputs, clone_function=renamed)
    clone.set_weights(to_logit.get_weights())  # the clone's layers come in the member's order
    return clone.outputs[0]


def build_ensemble(members: list[keras.Model]) -> keras.Model:
    """sigmoid(mean of the members' logits), through an identity `logit` layer."""
    if len(members) < 2:
        raise ValueError("an ensemble needs at least two members")
    shapes = {tuple(m.inputs[0].shape[1:]) for m in members}
    if len(shapes) != 1:
        raise ValueError(f"members disagree on the input shape: {shapes}")
    inputs = keras.Input(shapes.pop(), name=INPUT_NAME)
    logits = [_member_logit(m, inputs, member_prefix(k)) for k, m in enumerate(members, start=1)]
    mean = layers.Average(name=MEAN_LAYER)(logits)
    logit = layers.Dense(1, kernel_initializer="ones", bias_initializer="zeros", name=LOGIT_LAYER)(mean)
    outputs = layers.Activation("sigmoid", dtype="float32", name=PROBABILITY_OUTPUT)(logit)
    return keras.Model(inputs, outputs, name=f"chest_xray_cnn_ensemble{len(members)}")


def member_layers(layer_name: str, n_members: int) -> list[str]:
    """The name of one member layer in each member of an ensemble built here."""
    return [member_prefix(k) + layer_name for k in range(1, n_members + 1)]
