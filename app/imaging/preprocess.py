"""The preprocessing chain: grayscale image -> model input.

This is the ONE implementation that training, evaluation, the API and the Grad-CAM
sidecar all call. Its parameters live in `PreprocessConfig`, which the training run
writes into the model card and the services read back from it, so the chain cannot
drift between training and production.

Chain: decode -> grayscale -> resize -> [body crop] -> border crop -> median filter -> CLAHE -> float32 in [0, 1].
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from PIL import Image

from app.imaging.decode import DEFAULT_MAX_PIXELS, ImageHeader, decode_with_header

_INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "linear": cv2.INTER_LINEAR,
    "cubic": cv2.INTER_CUBIC,
    # Pillow's antialiased bilinear (triangle filter scaled to the reduction): what most
    # senders and Python tools use to make a small PNG, so a film sent already resized this
    # way gets exactly the pixels (and the answer) of the full-size upload.
    "pil_bilinear": None,
}


@dataclass(frozen=True)
class View:
    """The part of the film that the model input shows, in fractions of the film's height and width:
    where the Grad-CAM grid goes back over the film (`app/imaging/overlay.py`)."""

    top: float = 0.0
    left: float = 0.0
    bottom: float = 1.0
    right: float = 1.0

    def within(self, rows: tuple[int, int], cols: tuple[int, int], side: int) -> View:
        """This view narrowed to pixel `rows` and `cols` of the (side, side) square it was resized to."""
        height, width = self.bottom - self.top, self.right - self.left
        return View(self.top + height * rows[0] / side, self.left + width * cols[0] / side,
                    self.top + height * rows[1] / side, self.left + width * cols[1] / side)


FULL_VIEW = View()


@dataclass(frozen=True)
class PreprocessConfig:
    """Parameters of the chain; stored verbatim in the model card."""

    input_size: int = 224
    median_kernel: int = 3
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8
    interpolation: str = "pil_bilinear"
    # True: libjpeg's DCT scaling, faster, but then a JPEG and a PNG of one film get different answers.
    jpeg_reduced_decode: bool = False
    # Share of each side kept, centred, after the resize (then resized back to input_size): drops
    # the film's outer border (markers, collimation edges). 1.0 (no crop) for cards that predate it.
    border_crop: float = 1.0
    # > 0: before the border crop, crop to the body: the rows and columns where at least this share of
    # pixels is above the film's Otsu threshold (the air beside the body goes), then resize back to
    # input_size. The framing of the body in the square predicts the class in train and not on new films
    # (training/SHIFT.md section 1). 0.0 (off) for cards that predate it.
    body_crop: float = 0.0

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ValueError("input_size must be at least 16")
        if self.median_kernel < 1 or self.median_kernel % 2 == 0:
            raise ValueError("median_kernel must be a positive odd number")
        if self.clahe_clip_limit <= 0:
            raise ValueError("clahe_clip_limit must be positive")
        if self.clahe_tile_grid < 1:
            raise ValueError("clahe_tile_grid must be at least 1")
        if not 0.0 <= self.body_crop < 1.0:
            raise ValueError("body_crop must be in [0, 1)")
        if not 0.5 <= self.border_crop <= 1.0:
            raise ValueError("border_crop must be in [0.5, 1]")
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessConfig:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


class Preprocessor:
    """Applies the chain with one config; holds the CLAHE object (not thread-safe).

    Create one per thread (see `thread_local_preprocessor`) or per worker process.
    """

    def __init__(self, config: PreprocessConfig) -> None:
        self.config = config
        self._clahe = cv2.createCLAHE(
            clipLimit=config.clahe_clip_limit,
            tileGridSize=(config.clahe_tile_grid, config.clahe_tile_grid),
        )

    def resize(self, gray: np.ndarray) -> np.ndarray:
        """Any size -> (size, size), then the body and border crops; a film at model size is only cropped."""
        return self.frame(gray)[0]

    def frame(self, gray: np.ndarray) -> tuple[np.ndarray, View]:
        """`resize`, and the part of the film its result shows."""
        size = self.config.input_size
        if gray.shape != (size, size):
            if self.config.interpolation == "pil_bilinear":
                gray = np.asarray(Image.fromarray(gray).resize((size, size), Image.Resampling.BILINEAR))
            else:
                flag = _INTERPOLATIONS[self.config.interpolation]
                assert flag is not None  # only Pillow's filter has no OpenCV flag
                gray = cv2.resize(gray, (size, size), interpolation=flag)
        view = FULL_VIEW
        if self.config.body_crop:
            rows, cols = body_box(gray, self.config.body_crop)
            gray, view = _crop_to_square(gray, rows, cols), view.within(rows, cols, size)
        keep = self.config.border_crop
        if keep < 1.0:
            side = round(size * keep)
            start = (size - side) // 2
            span = (start, start + side)
            gray, view = _crop_to_square(gray, span, span), view.within(span, span, size)
        return gray, view

    def enhance(self, resized: np.ndarray) -> np.ndarray:
        """Median filter then CLAHE on a uint8 image at model size."""
        filtered = cv2.medianBlur(resized, self.config.median_kernel) if self.config.median_kernel > 1 else resized
        return self._clahe.apply(filtered)

    @staticmethod
    def to_float(enhanced: np.ndarray) -> np.ndarray:
        return enhanced.astype(np.float32) * np.float32(1.0 / 255.0)

    def from_framed(self, square: np.ndarray) -> np.ndarray:
        """`frame`'s uint8 square -> float32 (size, size) in [0, 1]: the rest of the chain."""
        return self.to_float(self.enhance(square))

    def from_gray(self, gray: np.ndarray) -> np.ndarray:
        """uint8 grayscale of any size -> float32 (size, size) in [0, 1]."""
        return self.from_framed(self.resize(gray))

    def decode_with_header(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageHeader, np.ndarray]:
        """The file's declared header and its uint8 grayscale, decoded as this config says."""
        reduce = self.config.input_size if self.config.jpeg_reduced_decode else None
        return decode_with_header(data, max_pixels=max_pixels, reduce_to_min_side=reduce)

    def decode(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        return self.decode_with_header(data, max_pixels)[1]

    def from_bytes(self, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """Encoded image bytes -> float32 (size, size) model input."""
        return self.from_gray(self.decode(data, max_pixels))


# A body box narrower than this share of a side is taken for a failed threshold: that side is kept whole.
_MIN_BODY_SIDE = 0.6


def body_box(square: np.ndarray, min_share: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The rows and columns of `square` whose share of Otsu foreground is at least `min_share` (the body;
    the air beside it goes), as (start, stop) pairs; a side whose box looks like a failed threshold stays whole."""
    _, body = cv2.threshold(square, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return _body_span(body.mean(axis=1), min_share), _body_span(body.mean(axis=0), min_share)


def _body_span(profile: np.ndarray, min_share: float) -> tuple[int, int]:
    inside = np.flatnonzero(profile >= min_share)
    if inside.size == 0 or inside[-1] + 1 - inside[0] < _MIN_BODY_SIDE * profile.size:
        return 0, profile.size
    return int(inside[0]), int(inside[-1]) + 1


def _crop_to_square(square: np.ndarray, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """`square[rows, cols]` resized back to the square's size (the square itself when nothing is cropped)."""
    size = square.shape[0]
    if rows == (0, size) and cols == (0, size):
        return square
    return cv2.resize(square[rows[0]:rows[1], cols[0]:cols[1]], (size, size), interpolation=cv2.INTER_LINEAR)


def to_batch(images: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Stack (H, W) float images into the model's NHWC float32 batch."""
    return np.ascontiguousarray(np.stack(list(images))[..., np.newaxis], dtype=np.float32)
