"""Overlay drawing: sizes, aspect ratio, colour where the heat is, robustness to bad grids."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from app.imaging.overlay import OverlayFormat, blend, encode_png, overlay_image, upsample_heatmap
from app.imaging.preprocess import View

MAGIC = {OverlayFormat.JPEG: b"\xff\xd8\xff", OverlayFormat.PNG: b"\x89PNG\r\n\x1a\n"}


def gradient_image(height: int, width: int) -> np.ndarray:
    return np.tile(np.linspace(0, 255, width, dtype=np.float32), (height, 1)).astype(np.uint8)


def test_blend_zero_heatmap_returns_the_film() -> None:
    gray = gradient_image(300, 400)
    out = blend(gray, np.zeros((14, 14), np.float32))
    assert out.shape == (300, 400, 3) and out.dtype == np.uint8
    assert np.array_equal(out, cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))


def test_blend_hot_cell_colours_its_region_red() -> None:
    gray = np.full((280, 420), 128, np.uint8)
    heat = np.zeros((14, 14), np.float32)
    heat[0:3, 11:14] = 1.0  # top-right corner of the grid
    out = blend(gray, heat).astype(int)
    top_right, bottom_left = out[10, 410], out[270, 10]
    assert top_right[2] > top_right[0] + 50  # red channel dominates (BGR)
    assert np.array_equal(bottom_left, [128, 128, 128])


def test_upsample_heatmap_nan_and_out_of_range_are_clipped() -> None:
    grid = np.array([[np.nan, 2.0], [-1.0, np.inf]], np.float32)
    heat = upsample_heatmap(grid, (50, 60))
    assert heat.shape == (50, 60)
    assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0


def test_blend_rejects_bad_inputs() -> None:
    with pytest.raises(ValueError):
        blend(np.zeros((10, 10, 3), np.uint8), np.zeros((2, 2)))
    with pytest.raises(ValueError):
        blend(np.zeros((10, 10), np.uint8), np.zeros((0, 0)))
    with pytest.raises(ValueError):
        blend(np.zeros((10, 10), np.uint8), np.zeros((2, 2)), alpha=1.5)


@pytest.mark.parametrize("fmt", list(OverlayFormat))
def test_overlay_image_decodes_at_image_size_in_its_format(fmt: OverlayFormat) -> None:
    gray = gradient_image(333, 512)
    heat = np.random.default_rng(0).random((14, 14)).astype(np.float32)
    encoded = overlay_image(gray, heat, fmt)
    assert encoded.startswith(MAGIC[fmt])
    decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    assert decoded.shape == (333, 512, 3)
    # JPEG is lossy but must stay a faithful picture of the blend.
    error = np.abs(decoded.astype(np.int16) - blend(gray, heat).astype(np.int16))
    assert error.mean() < (2.0 if fmt is OverlayFormat.JPEG else 1e-9)


def test_jpeg_overlay_is_much_smaller_than_png() -> None:
    gray = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (400, 512), dtype=np.uint8), (9, 9), 3)
    heat = np.random.default_rng(3).random((14, 14)).astype(np.float32)
    assert len(overlay_image(gray, heat, OverlayFormat.JPEG)) * 3 < len(overlay_image(gray, heat, OverlayFormat.PNG))


def test_encode_png_is_lossless() -> None:
    image = np.random.default_rng(1).integers(0, 256, (40, 30, 3), dtype=np.uint8)
    decoded = cv2.imdecode(np.frombuffer(encode_png(image), np.uint8), cv2.IMREAD_UNCHANGED)
    assert np.array_equal(decoded, image)


def test_heatmap_covers_only_the_part_of_the_film_the_model_saw():
    heat = upsample_heatmap(np.ones((14, 14), np.float32), (200, 100), View(top=0.1, left=0.2, bottom=0.9, right=0.7))
    assert heat.shape == (200, 100)
    assert heat[20:180, 20:70].min() == pytest.approx(1.0)
    assert heat[:20].max() == 0.0 and heat[180:].max() == 0.0
    assert heat[:, :20].max() == 0.0 and heat[:, 70:].max() == 0.0
    assert upsample_heatmap(np.ones((14, 14), np.float32), (200, 100)).min() == pytest.approx(1.0)
