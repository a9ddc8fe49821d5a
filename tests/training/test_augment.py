"""Augmentation keeps the film's type and size, and is reproducible from its seed."""

from __future__ import annotations

import numpy as np

from training.augment import AugmentConfig, augment, random_geometry, random_photometry, random_resampling


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


def _identity_geometry(**extra) -> AugmentConfig:
    return AugmentConfig(rotation_deg=0.0, zoom=0.0, shift=0.0, gamma=0.0, contrast=0.0, brightness=0.0,
                         blur_sharpen_p=0.0, noise_p=0.0, **extra)


def test_neutral_config_leaves_the_film_as_it_is():
    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    out = augment(image, _identity_geometry(), np.random.default_rng(0), label=0)
    assert np.abs(out.astype(int) - image).max() <= 1


def test_normal_only_zoom_touches_normal_films_only():
    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    cfg = _identity_geometry(zoom_in_normal=0.5)
    pneumonia = augment(image, cfg, np.random.default_rng(3), label=1)
    normal = augment(image, cfg, np.random.default_rng(3), label=0)
    assert np.abs(pneumonia.astype(int) - image).max() <= 1
    assert np.abs(normal.astype(int) - image).mean() > 5


def test_pneumonia_only_zoom_out_shrinks_pneumonia_films_only():
    """A centred bright square covers less of a pneumonia film, and is untouched in a normal one."""
    image = np.zeros((101, 101), np.uint8)
    image[20:81, 20:81] = 255
    cfg = _identity_geometry(zoom_out_pneumonia=0.5)
    normal = augment(image, cfg, np.random.default_rng(5), label=0)
    pneumonia = augment(image, cfg, np.random.default_rng(5), label=1)
    assert np.abs(normal.astype(int) - image).max() <= 1
    assert (pneumonia > 127).sum() < 0.9 * (image > 127).sum()


def test_aspect_scales_x_and_y_apart():
    """A centred square stays centred but stops being square."""
    image = np.zeros((101, 101), np.uint8)
    image[30:71, 30:71] = 255
    out = augment(image, _identity_geometry(aspect=0.6), np.random.default_rng(1))
    rows, cols = np.nonzero(out > 127)
    height, width = rows.max() - rows.min() + 1, cols.max() - cols.min() + 1
    assert abs(height - width) >= 4


def test_flip_mirrors_the_film():
    image = np.zeros((32, 32), np.uint8)
    image[:, :8] = 255
    out = augment(image, _identity_geometry(hflip_p=1.0), np.random.default_rng(0))
    assert out[:, -4:].mean() > 200 and out[:, :4].mean() < 50


def test_resampling_and_jpeg_keep_shape_and_stay_close():
    image = (np.random.default_rng(0).random((224, 224)) * 255).astype(np.uint8)
    image = np.ascontiguousarray(np.sort(image, axis=1))  # smooth-ish gradient rows
    out = augment(image, _identity_geometry(resample_p=1.0, jpeg_p=1.0), np.random.default_rng(2))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert 0 < np.abs(out.astype(int) - image).mean() < 40


def test_mixup_mixes_films_labels_and_weights_with_one_share():
    from training.dataset import mixup

    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1, 0, 1, 0, 1, 1], np.float32)
    weights = np.where(labels == 1, 0.7, 1.8).astype(np.float32)
    batch = np.broadcast_to(labels[:, None, None, None], (8, 5, 5, 1)).astype(np.float32)  # image == label
    mixed, mixed_labels, mixed_weights = mixup(batch, labels, weights, 0.2, rng)
    assert mixed.shape == batch.shape and mixed.dtype == np.float32
    assert np.allclose(mixed[:, 0, 0, 0], mixed_labels)  # the same share mixed the film and its label
    share = (mixed_weights - 1.8) / (0.7 - 1.8)  # weights follow the labels: 0.7 for 1, 1.8 for 0
    assert np.allclose(share, mixed_labels, atol=1e-5)
    assert ((mixed_labels > 0) & (mixed_labels < 1)).any()  # some pairs really mix


def test_erasing_fills_one_rectangle_with_one_grey_level_and_keeps_the_rest():
    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    cfg = _identity_geometry(erase_p=1.0, erase_area=(0.1, 0.1))
    out = augment(image, cfg, np.random.default_rng(5))
    changed = np.argwhere(np.abs(out.astype(int) - image) > 1)
    assert len(changed) > 0
    (top, left), (bottom, right) = changed.min(axis=0), changed.max(axis=0)
    box = out[top:bottom + 1, left:right + 1]
    assert len(np.unique(box)) == 1  # one grey level
    assert 0.05 * image.size <= box.size <= 0.15 * image.size
    outside = np.ones(image.shape, bool)
    outside[top:bottom + 1, left:right + 1] = False
    assert np.abs(out[outside].astype(int) - image[outside]).max() <= 1


def test_erasing_off_draws_nothing_so_other_recipes_keep_their_random_stream():
    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    cfg = AugmentConfig(resample_p=0.5, jpeg_p=0.3)
    plain_rng, rng = np.random.default_rng(11), np.random.default_rng(11)
    plain = random_resampling(random_photometry(random_geometry(image, cfg, plain_rng), cfg, plain_rng), cfg, plain_rng)
    np.testing.assert_array_equal(augment(image, cfg, rng), plain)
    assert rng.random() == plain_rng.random()
