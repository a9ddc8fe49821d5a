"""Drawing a Grad-CAM heat map over the grayscale X-ray (numpy + OpenCV only).

The Grad-CAM math lives in the sidecar (`app/sidecar/gradcam.py`); this module only
turns a [0, 1] grid into a picture, so it can be tested without TensorFlow.
"""

from __future__ import annotations

from enum import StrEnum

import cv2
import numpy as np

from app.imaging.preprocess import FULL_VIEW, View

DEFAULT_ALPHA = 0.5
DEFAULT_LONG_SIDE = 512
JPEG_QUALITY = 90


class OverlayFormat(StrEnum):
    """How the overlay is encoded.

    JPEG is the default: the overlay is a photographic picture for a person to look at,
    and at quality 90 it is ~8x smaller than PNG (33 vs 265 kB median at long side 512)
    and ~20x faster to encode (0.5 vs 8.5 ms). PNG stays available for lossless copies.
    """

    JPEG = "jpeg"
    PNG = "png"

    @property
    def media_type(self) -> str:
        return f"image/{self.value}"


def upsample_heatmap(heatmap: np.ndarray, shape: tuple[int, int], view: View = FULL_VIEW) -> np.ndarray:
    """Grid in [0, 1] -> float32 (H, W) in [0, 1], smoothly interpolated.

    The model input is the film squashed to a square, then cropped (body and border crops of the
    chain) to `view`, the part of the film it shows (`Preprocessor.frame`); stretching the grid over
    that part of the film's own shape puts every cell back over the region it saw.
    """
    grid = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    if grid.ndim != 2 or grid.size == 0:
        raise ValueError("heat map must be a non-empty 2-D grid")
    top, bottom = round(shape[0] * view.top), round(shape[0] * view.bottom)
    left, right = round(shape[1] * view.left), round(shape[1] * view.right)
    height, width = max(1, bottom - top), max(1, right - left)
    resized = np.clip(cv2.resize(grid, (width, height), interpolation=cv2.INTER_CUBIC), 0.0, 1.0)
    if (height, width) == tuple(shape):
        return resized
    framed = np.zeros(shape, np.float32)
    framed[top:top + height, left:left + width] = resized[:shape[0] - top, :shape[1] - left]
    return framed


def colorize(heat: np.ndarray) -> np.ndarray:
    """[0, 1] float (H, W) -> BGR uint8 with the JET colour map."""
    return cv2.applyColorMap(np.round(heat * 255.0).astype(np.uint8), cv2.COLORMAP_JET)


def blend(gray: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA, view: View = FULL_VIEW) -> np.ndarray:
    """Heat map blended over the grayscale image -> BGR uint8 of the image's shape.

    The blend weight grows with the heat, so cold regions show the film unchanged and
    an all-zero map returns the film itself.
    """
    if gray.dtype != np.uint8 or gray.ndim != 2:
        raise ValueError("expected a 2-D uint8 grayscale image")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError("alpha must be in [0, 1]")
    heat = upsample_heatmap(heatmap, gray.shape, view)
    weight = np.float32(alpha) * heat
    base = cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return cv2.blendLinear(base, colorize(heat), np.float32(1.0) - weight, weight)


def encode_png(image: np.ndarray) -> bytes:
    # Fast settings: SUB filter + RLE at level 1 encode ~3x faster than the defaults, and smaller.
    params = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB,
              cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]
    ok, buffer = cv2.imencode(".png", image, params)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buffer.tobytes()


def encode_jpeg(image: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buffer.tobytes()


def overlay_image(gray: np.ndarray, heatmap: np.ndarray, fmt: OverlayFormat = OverlayFormat.JPEG,
                  alpha: float = DEFAULT_ALPHA, view: View = FULL_VIEW) -> bytes:
    """The overlay as encoded bytes, at the grayscale image's size (`view`: see `upsample_heatmap`)."""
    image = blend(gray, heatmap, alpha, view)
    return encode_jpeg(image) if fmt is OverlayFormat.JPEG else encode_png(image)


def preview_of(gray: np.ndarray, width: int, height: int, long_side: int = DEFAULT_LONG_SIDE) -> np.ndarray:
    """The overlay background: the upload's aspect ratio, long side min(long_side, the upload's).

    Large JPEGs are decoded at a reduced scale sized for the model, which can leave fewer
    pixels than the overlay wants; those few are made up by a linear upscale.
    """
    scale = min(1.0, long_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if (gray.shape[1], gray.shape[0]) == size:
        return gray
    shrinking = size[0] < gray.shape[1]
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
