"""Balanced sampling: each epoch shows the classes equally often, at the same length, reproducibly."""

from __future__ import annotations

import numpy as np
import pytest

from app.imaging.preprocess import PreprocessConfig
from training.augment import AugmentConfig
from training.config import TrainConfig
from training.dataset import AugmentedBatches, balanced_order


def test_an_epoch_is_half_each_class_and_as_long_as_the_data() -> None:
    labels = np.array([0] * 25 + [1] * 75, np.float32)
    order = balanced_order(labels, np.random.default_rng(0))
    assert order.size == labels.size
    assert np.count_nonzero(labels[order] == 0) == 50
    counts = np.bincount(order, minlength=labels.size)
    assert set(counts[:25]) == {2}  # every normal film twice, none three times or left out
    assert counts[25:].max() == 1 and counts[25:].sum() == 50  # pneumonia films drawn without repeats


def test_the_smaller_class_is_cycled_evenly_when_passes_do_not_divide() -> None:
    labels = np.array([0] * 3 + [1] * 8, np.float32)
    counts = np.bincount(balanced_order(labels, np.random.default_rng(1)), minlength=labels.size)
    assert counts[:3].sum() == 5 and set(counts[:3]) <= {1, 2}


def test_one_class_alone_is_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        balanced_order(np.ones(10, np.float32), np.random.default_rng(0))


def _batches(balanced: bool, seed: int = 3) -> AugmentedBatches:
    images = np.zeros((40, 16, 16), np.uint8)
    labels = np.array([0] * 8 + [1] * 32)
    return AugmentedBatches(images, labels, 8, PreprocessConfig(input_size=16), AugmentConfig(), seed,
                            balanced_sampling=balanced)


def test_batches_follow_the_balanced_order_and_resume_it() -> None:
    batches = _batches(True)
    batches.set_epoch(4)
    assert np.count_nonzero(batches.labels[batches.order] == 0) == 20
    again = _batches(True)
    again.set_epoch(4)
    np.testing.assert_array_equal(batches.order, again.order)  # a resumed run continues the same epoch
    assert not np.array_equal(batches.order, _batches(False).order)


def test_unbalanced_order_is_unchanged_by_the_option() -> None:
    plain = _batches(False)
    np.testing.assert_array_equal(plain.order, np.random.default_rng((3, 0)).permutation(40))


def test_balanced_sampling_and_framing_balance_are_exclusive() -> None:
    with pytest.raises(ValueError, match="balanced_sampling"):
        TrainConfig(balanced_sampling=True, framing_balance=True)
