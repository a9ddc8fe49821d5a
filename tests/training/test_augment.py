"""Augmentation keeps the film's type and size, and is reproducible from its seed."""

from __future__ import annotations

import numpy as np

from training.augment import AugmentConfig, augment


def test_augment_keeps_shape_and_dtype_and_changes_pixels():
    image = (np.arange(224 * 224) % 251).astype(np.uint8).reshape(224, 224)
    out = augment(image, AugmentConfig(), np.random.default_rng(0))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert not np.array_equal(out, image)


def test_augment_is_reproducible_from_the_seed():
    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    first = augment(image, AugmentConfig(), np.random.default_rng(7))
    second = augment(image, AugmentConfig(), np.random.default_rng(7))
    np.testing.assert_array_equal(first, second)
