"""The 7-block CNN: each block is Conv2D -> MaxPool2D -> Dropout; sigmoid output.

With `normalization="batch"` a block is Conv2D (no bias) -> BatchNormalization -> ReLU -> MaxPool2D
-> Dropout; the exported graph keeps the batch norm as an affine op that onnxruntime fuses into the
convolution when it loads the model.

The head ends in a linear `logit` Dense layer followed by a sigmoid, so that
calibration (Platt scaling) can be folded into the logit layer's weights after
training: the exported model then returns calibrated probabilities by itself.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from training.config import check_block1_kernel, check_head_pooling, check_pooling

INPUT_NAME = "image"
LOGIT_LAYER = "logit"
PROBABILITY_OUTPUT = "probability"
SUBTYPE_OUTPUT = "subtype"


def conv_layer_name(block: int) -> str:
    return f"block{block}_conv"


def build_model(
    input_size: int,
    filters: tuple[int, ...],
    dropout: tuple[float, ...],
    dense_units: int,
    dense_dropout: float,
    weight_decay: float,
    normalization: str = "none",
    subtypes: int = 0,
    pool_padding: str = "valid",
    antialiased_pools: bool = False,
    antialias_from_block: int = 1,
    block1_kernel: int = 3,
    head_pooling: str = "avg",
) -> keras.Model:
    """The classifier; with `subtypes` > 0 also a softmax head over that many pneumonia subtypes on the
    same dense features, a training-only auxiliary output (`without_auxiliary_head` drops it).

    `pool_padding="valid"` (the seed's) drops the last row and column of every odd-sized map: at 224 px
    the 7x7 map of block 6 pools to 3x3 and block 7's 3x3 to 1x1, so the bottom and right of the film
    reach the head through fewer paths than the top and left. `"same"` pads instead (7 -> 4 -> 2) and
    the global average pool then averages four quadrants.

    `antialiased_pools` makes every pool a max over 2x2 at stride 1 followed by a fixed [1 2 1] x [1 2 1]
    blur at stride 2 (MaxBlurPool, Zhang 2019, "Making convolutional networks shift-invariant again"):
    a max pool at stride 2 aliases, so a shift or a resampling of the film by a pixel can change what
    the head sees. Its maps pad like `"same"` (7 -> 4 -> 2). Blocks before `antialias_from_block` keep
    plain max pools (at stride 2 a blur also smooths the fine texture of the early, full-resolution maps).

    `block1_kernel` is the first conv's kernel side (the seed's 3): on one input channel a wider first
    kernel costs little (8 filters x 25 weights at 5) and sees more of the film at full resolution.

    `head_pooling` is how the last map reaches the dense head: `"avg"` (the seed's) averages it, so a
    finding in one region is diluted by the rest of the chest; `"max"` keeps each feature's strongest
    region; `"avg_max"` concatenates both (fastai's `AdaptiveConcatPool2d` head)."""
    check_pooling(pool_padding, antialiased_pools, antialias_from_block, len(filters))
    check_block1_kernel(block1_kernel)
    check_head_pooling(head_pooling)
    reg = keras.regularizers.l2(weight_decay) if weight_decay > 0 else None
    inputs = keras.Input((input_size, input_size, 1), name=INPUT_NAME)
    x = inputs
    for block, (n_filters, rate) in enumerate(zip(filters, dropout, strict=True), start=1):
        kernel = block1_kernel if block == 1 else 3
        if normalization == "batch":
            x = layers.Conv2D(
                n_filters, kernel, padding="same", use_bias=False,
                kernel_initializer="he_normal", kernel_regularizer=reg, name=conv_layer_name(block),
            )(x)
            # momentum 0.9: at Keras' 0.99 the early validation predictions sat at 1.0 (moving statistics lag)
            x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_norm")(x)
            x = layers.Activation("relu", name=f"block{block}_relu")(x)
        elif normalization == "none":
            x = layers.Conv2D(
                n_filters, kernel, padding="same", activation="relu",
                kernel_initializer="he_normal", kernel_regularizer=reg, name=conv_layer_name(block),
            )(x)
        else:
            raise ValueError(f"unknown normalization {normalization!r}: none or batch")
        if antialiased_pools and block >= antialias_from_block:
            x = layers.MaxPool2D(2, strides=1, padding="same", name=f"block{block}_pool")(x)
            x = _blur_downsample(x, name=f"block{block}_blur")
        else:
            x = layers.MaxPool2D(2, padding=pool_padding, name=f"block{block}_pool")(x)
        x = layers.Dropout(rate, name=f"block{block}_dropout")(x)
    x = _global_pool(x, head_pooling)
    x = layers.Dense(dense_units, activation="relu", kernel_regularizer=reg, name="dense")(x)
    x = layers.Dropout(dense_dropout, name="dense_dropout")(x)
    logit = layers.Dense(1, name=LOGIT_LAYER)(x)
    outputs = layers.Activation("sigmoid", dtype="float32", name=PROBABILITY_OUTPUT)(logit)
    if subtypes:
        subtype = layers.Dense(subtypes, activation="softmax", dtype="float32", name=SUBTYPE_OUTPUT)(x)
        return keras.Model(inputs, {PROBABILITY_OUTPUT: outputs, SUBTYPE_OUTPUT: subtype}, name="chest_xray_cnn")
    return keras.Model(inputs, outputs, name="chest_xray_cnn")


def _global_pool(x: keras.KerasTensor, head_pooling: str) -> keras.KerasTensor:
    """The last map as one vector; the average keeps the name `gap` that the OOD feature layers look for."""
    if head_pooling == "avg":
        return layers.GlobalAveragePooling2D(name="gap")(x)
    if head_pooling == "max":
        return layers.GlobalMaxPooling2D(name="gmp")(x)
    average = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Concatenate(name="gap_gmp")([average, layers.GlobalMaxPooling2D(name="gmp")(x)])


def _blur_downsample(x: keras.KerasTensor, name: str) -> keras.KerasTensor:
    """A fixed binomial blur at stride 2, channel by channel (not trained, no weight decay)."""
    blur = layers.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, trainable=False, name=name)
    y = blur(x)
    kernel = np.outer([1.0, 2.0, 1.0], [1.0, 2.0, 1.0]) / 16.0
    blur.set_weights([np.repeat(kernel[:, :, None, None], x.shape[-1], axis=2).astype("float32")])
    return y


def without_auxiliary_head(model: keras.Model) -> keras.Model:
    """The single-output classifier that calibration, export and Grad-CAM expect (the same weights)."""
    if len(model.outputs) == 1:
        return model
    return keras.Model(model.inputs, model.get_layer(PROBABILITY_OUTPUT).output, name=model.name)


def gradcam_layer_for(model: keras.Model, min_grid: int = 14) -> str:
    """The deepest block activation whose feature map is still at least `min_grid` wide: the conv layer
    itself (it has the ReLU), or its `_relu` layer when batch norm sits between them."""
    best = None
    for layer in model.layers:
        is_activation = isinstance(layer, layers.Conv2D) and layer.activation is keras.activations.relu
        is_activation |= isinstance(layer, layers.Activation) and layer.name.endswith("_relu")
        if is_activation and layer.output.shape[1] >= min_grid:
            best = layer.name
    if best is None:
        raise ValueError(f"no block activation has a {min_grid}x{min_grid} map")
    return best
