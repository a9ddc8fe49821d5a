"""Bytes -> 8-bit grayscale image.

Decoding is the first step of the preprocessing chain and is shared by training,
evaluation and serving. It sniffs the format from magic bytes, checks the declared
size before decoding anything (decompression bombs), and always returns a 2-D uint8
array, whatever the source bit depth or channel count.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
from PIL import Image

from app.imaging.colour import colour_saturation
from app.imaging.errors import (
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
)

# We do our own pixel-count check before decoding; PIL's warning would be noise.
Image.MAX_IMAGE_PIXELS = None

DEFAULT_MAX_PIXELS = 60_000_000  # ~7700 x 7700: far above any clinical film
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # an upload's size limit: the API's default, and batch scoring's


class ImageFormat(StrEnum):
    JPEG = "jpeg"
    PNG = "png"
    DICOM = "dicom"


_MAGIC = (
    (b"\xff\xd8\xff", ImageFormat.JPEG),
    (b"\x89PNG\r\n\x1a\n", ImageFormat.PNG),
)


@dataclass(frozen=True)
class ImageHeader:
    """What the file says about itself, read without decoding pixels."""

    format: ImageFormat
    width: int
    height: int
    dicom: dict[str, Any] | None = None  # for DICOM: the non-identifying tags (`dicom.SAFE_TAGS`)
    # How colourful the pixels are (`app.imaging.colour`), measured where the decoder has colour pixels
    # anyway (PNG, colour DICOM); None for grey sources and for JPEGs, which are decoded straight to grey.
    colour_saturation: float | None = None


def sniff_format(data: bytes) -> ImageFormat:
    """Return the format named by the magic bytes, or raise UnsupportedFormatError."""
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if len(data) >= 132 and data[128:132] == b"DICM":
        return ImageFormat.DICOM
    raise UnsupportedFormatError("unsupported file type: expected a JPEG, PNG or DICOM image")


# JPEG markers that carry no length field, and the start-of-frame markers (which hold the size).
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the first start-of-frame marker; None when the walk finds none."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _JPEG_SOF:
            if length < 7 or pos + 9 > end:
                return None
            return int.from_bytes(data[pos + 7:pos + 9], "big"), int.from_bytes(data[pos + 5:pos + 7], "big")
        if marker in (0xD8, 0xD9, 0xDA) or length < 2:  # SOI again, EOI or scan data before any frame
            return None
        pos += 2 + length
    return None


def _fast_size(fmt: ImageFormat, data: bytes) -> tuple[int, int] | None:
    """The declared size read straight from the bytes (~100x cheaper than PIL); None: ask PIL."""
    if fmt is ImageFormat.JPEG:
        return _jpeg_size(data)
    if fmt is ImageFormat.PNG and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def read_header(data: bytes) -> ImageHeader:
    """Read format and declared dimensions without decoding the pixel data."""
    fmt = sniff_format(data)
    if fmt is ImageFormat.DICOM:
        from app.imaging.dicom import read_dicom_header  # optional dependency

        width, height = read_dicom_header(data)
        return ImageHeader(fmt, width, height)
    size = _fast_size(fmt, data)
    if size is not None and min(size) > 0:
        return ImageHeader(fmt, *size)
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
    except Exception:  # PIL raises many types for broken headers
        raise CorruptImageError(f"cannot read the {fmt.value.upper()} header") from None
    if width <= 0 or height <= 0:
        raise CorruptImageError("the image declares no pixels")
    return ImageHeader(fmt, width, height)


def check_pixel_limit(header: ImageHeader, max_pixels: int) -> None:
    if header.width * header.height > max_pixels:
        raise ImageTooLargeError(
            f"image declares {header.width}x{header.height} pixels, over the limit of {max_pixels}"
        )


def _jpeg_reduction_flag(header: ImageHeader, min_side: int | None) -> int:
    """Pick libjpeg's DCT-domain downscale (1/2, 1/4, 1/8) that keeps >= 2x `min_side`.

    Decoding a 2000 px film at 1/4 size is ~5x faster than a full decode, and the
    result is resized to the model input anyway; keeping twice the target size
    leaves the final area resize in charge of the anti-aliasing.
    """
    if min_side is None:
        return cv2.IMREAD_GRAYSCALE
    short = min(header.width, header.height)
    for factor, flag in (
        (8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
        (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
        (2, cv2.IMREAD_REDUCED_GRAYSCALE_2),
    ):
        if short // factor >= 2 * min_side:
            return flag
    return cv2.IMREAD_GRAYSCALE


def to_uint8_gray(image: np.ndarray) -> np.ndarray:
    """Any decoded array (8/16-bit, 1/3/4 channels, BGR order) -> 2-D uint8 grayscale.

    16-bit data is scaled by the smallest power-of-two range that holds its maximum,
    so 12-bit data stored in 16 bits keeps its contrast and 8-bit data stored as
    x*257 comes back exactly.
    """
    if image.ndim == 3:
        channels = image.shape[2]
        if channels == 1:
            image = image[:, :, 0]
        elif channels == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        elif channels == 4:
            image = cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
        else:
            raise CorruptImageError(f"unsupported channel count {channels}")
    if image.ndim != 2:
        raise CorruptImageError("decoded image is not two-dimensional")
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    if image.dtype == np.uint16:
        peak = int(image.max())
        shift = max(peak.bit_length() - 8, 0)
        return (image >> shift).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        lo, hi = float(np.nanmin(image)), float(np.nanmax(image))
        scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
        return np.nan_to_num(scaled * 255.0).round().astype(np.uint8)
    raise CorruptImageError(f"unsupported pixel type {image.dtype}")


def decode_with_header(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to_min_side: int | None = None,
) -> tuple[ImageHeader, np.ndarray]:
    """Decode JPEG/PNG/DICOM bytes: the header as declared and a 2-D uint8 grayscale array.

    `reduce_to_min_side`: if given, large JPEGs are decoded at a reduced scale that
    still keeps at least twice this many pixels on the short side, so the array can be
    smaller than the header's size.
    """
    if not data:
        raise CorruptImageError("the file is empty")
    if sniff_format(data) is ImageFormat.DICOM:
        from app.imaging.dicom import decode_dicom_upload  # optional dependency

        return decode_dicom_upload(data, max_pixels)
    header = read_header(data)
    check_pixel_limit(header, max_pixels)
    buffer = np.frombuffer(data, dtype=np.uint8)
    if header.format is ImageFormat.JPEG:
        decoded = cv2.imdecode(buffer, _jpeg_reduction_flag(header, reduce_to_min_side))
    else:
        decoded = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise CorruptImageError(f"cannot decode the {header.format.value.upper()} data")
    if decoded.ndim == 3 and decoded.shape[2] in (3, 4):
        header = dataclasses.replace(header, colour_saturation=colour_saturation(decoded))
    return header, to_uint8_gray(decoded)


def decode_image(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reduce_to_min_side: int | None = None,
) -> np.ndarray:
    """Decode JPEG/PNG/DICOM bytes to a 2-D uint8 grayscale array (see `decode_with_header`)."""
    return decode_with_header(data, max_pixels=max_pixels, reduce_to_min_side=reduce_to_min_side)[1]
