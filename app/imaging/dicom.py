"""DICOM bytes -> the 8-bit grayscale image a viewer shows (what the training films were).

Rendering, in the order of the DICOM grayscale pipeline (PS3.4 N.2):
modality LUT (Rescale Slope/Intercept or a Modality LUT Sequence) -> VOI (a VOI LUT
Sequence, else Window Center/Width with its VOI LUT Function) -> MONOCHROME1 inversion.
Without a VOI, 8-bit data with an identity modality LUT passes through unchanged and
deeper data is scaled linearly from its own min..max to 0..255 (a viewer's full-range
default window).

Nothing here logs or returns identifying tags: error messages name only transfer
syntaxes, modalities and sizes, and pydicom's value-validation warnings (which can
quote element values such as PatientName) are switched off.
"""

from __future__ import annotations

import dataclasses
import functools
import io
from collections.abc import Callable
from typing import Any, TypeVar

import cv2
import numpy as np
import pydicom
from pydicom.config import IGNORE, settings
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from app.imaging.colour import colour_saturation
from app.imaging.decode import ImageFormat, ImageHeader, check_pixel_limit
from app.imaging.errors import (
    CorruptImageError,
    ImageError,
    UnsupportedFormatError,
    UnsupportedImageError,
)

# Validation warnings quote offending values, and those can be patient data.
settings.reading_validation_mode = IGNORE

# Modalities whose objects carry no image to classify (reports, presentation states,
# key objects, RT plans and structures, waveforms, encapsulated documents...).
NON_IMAGE_MODALITIES = frozenset({
    "SR", "PR", "KO", "DOC", "RTPLAN", "RTSTRUCT", "RTRECORD", "RTDOSE", "REG", "FID", "SEG",
    "ECG", "EPS", "HD", "AU", "RESP", "PLAN", "AR", "KER", "LEN", "VA", "IOL", "OPT", "M3D",
})
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Tags safe to echo in a response: they describe the acquisition, never the patient.
SAFE_TAGS = ("Modality", "ViewPosition", "BodyPartExamined", "PhotometricInterpretation", "BitsStored")


_F = TypeVar("_F", bound=Callable[..., Any])


def _never_crash(function: _F) -> _F:
    """pydicom parses hostile bytes lazily and can raise almost anything (BytesLengthException,
    struct.error, ...) from any attribute access: whatever is not already ours becomes a 422."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ImageError:
            raise
        except MemoryError:
            raise
        except Exception:
            raise CorruptImageError("cannot read the DICOM file") from None

    return wrapper  # type: ignore[return-value]


def _read(data: bytes, *, pixels: bool) -> Dataset:
    try:
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=not pixels)
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError, AttributeError, IndexError):
        raise CorruptImageError("cannot read the DICOM header") from None


def _dimensions(ds: Dataset) -> tuple[int, int]:
    try:
        width, height = int(ds.Columns), int(ds.Rows)
    except (AttributeError, TypeError, ValueError):
        width = height = 0
    if width <= 0 or height <= 0:
        _check_is_image(ds)
        raise CorruptImageError("the DICOM file declares no Rows/Columns")
    return width, height


def _check_is_image(ds: Dataset) -> None:
    modality = str(ds.get("Modality", "") or "").upper()
    if modality in NON_IMAGE_MODALITIES:
        raise UnsupportedImageError(f"DICOM modality {modality} is not an image; send a radiograph (CR, DX)")


@_never_crash
def read_dicom_header(data: bytes) -> tuple[int, int]:
    """(width, height) declared by the file, read without touching the pixel data."""
    ds = _read(data, pixels=False)
    _check_is_image(ds)
    return _dimensions(ds)


@_never_crash
def dicom_summary(data: bytes) -> dict[str, Any]:
    """A few non-identifying tags, for the API response (never the patient's)."""
    return _summary(_read(data, pixels=False))


def _summary(ds: Dataset) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for keyword in SAFE_TAGS:
        value = ds.get(keyword)
        if value not in (None, ""):
            summary[_snake(keyword)] = int(value) if keyword == "BitsStored" else str(value)
    syntax = _transfer_syntax(ds)
    summary["transfer_syntax"] = syntax.name if syntax else None
    return summary


def _snake(keyword: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() and i else c.lower() for i, c in enumerate(keyword))


def _transfer_syntax(ds: Dataset) -> UID | None:
    meta = getattr(ds, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    return UID(str(syntax)) if syntax else None


def _check_decodable(ds: Dataset) -> None:
    """Reject, before any pixel decoding, what we cannot or should not decode."""
    _check_is_image(ds)
    if not any(keyword in ds for keyword in _PIXEL_KEYWORDS):
        modality = ds.get("Modality") or "unknown"
        raise UnsupportedImageError(f"the DICOM file (modality {modality}) holds no pixel data")
    frames = ds.get("NumberOfFrames", 1)
    try:
        frames = int(frames or 1)
    except (TypeError, ValueError):
        raise CorruptImageError("the DICOM file declares an invalid NumberOfFrames") from None
    if frames > 1:
        raise UnsupportedImageError(f"multi-frame DICOM ({frames} frames) is not supported; send a single radiograph")
    syntax = _transfer_syntax(ds)
    if syntax is None:
        raise CorruptImageError("the DICOM file has no transfer syntax")
    name = f"{syntax.name} ({syntax})" if syntax.name != str(syntax) else str(syntax)
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedFormatError(f"DICOM transfer syntax {name} is not supported") from None
    if not decoder.is_available:
        raise UnsupportedFormatError(f"DICOM transfer syntax {name} is not supported (no decoder installed)")


@_never_crash
def decode_dicom(data: bytes) -> np.ndarray:
    """DICOM bytes -> 2-D uint8 grayscale as a viewer would display it."""
    ds = _read(data, pixels=True)
    _dimensions(ds)
    return _render(ds)[0]


@_never_crash
def decode_dicom_upload(data: bytes, max_pixels: int) -> tuple[ImageHeader, np.ndarray]:
    """The header (size, non-identifying tags, colour) and the 2-D uint8 gray image, from ONE parse.

    The declared size is checked against `max_pixels` before any pixel data is decoded.
    """
    ds = _read(data, pixels=True)  # pixel data is read as bytes here, decoded only by `pixel_array`
    _check_is_image(ds)
    header = ImageHeader(ImageFormat.DICOM, *_dimensions(ds), dicom=_summary(ds))
    check_pixel_limit(header, max_pixels)
    gray, colour = _render(ds)
    return dataclasses.replace(header, colour_saturation=colour), gray


def _render(ds: Dataset) -> tuple[np.ndarray, float | None]:
    """(displayed gray, colour saturation of colour pixels or None)."""
    _check_decodable(ds)
    try:
        pixels = ds.pixel_array
    except (ValueError, RuntimeError, TypeError, KeyError, AttributeError, EOFError, OSError):
        raise CorruptImageError("cannot decode the DICOM pixel data") from None
    except NotImplementedError:
        raise UnsupportedFormatError("cannot decode this DICOM pixel data (unsupported encoding)") from None
    if pixels.ndim == 3 and int(ds.get("SamplesPerPixel", 1)) == 3:
        return _color_to_gray(pixels), colour_saturation(pixels)
    if pixels.ndim != 2:
        raise UnsupportedImageError(f"DICOM pixel array has shape {pixels.shape}; expected one grayscale frame")
    return render_grayscale(pixels, ds), None


def _color_to_gray(pixels: np.ndarray) -> np.ndarray:
    """pydicom returns RGB (YBR is converted); secondary captures sometimes are colour."""
    if pixels.dtype != np.uint8:
        peak = float(pixels.max()) or 1.0
        pixels = np.clip(pixels.astype(np.float64) * (255.0 / peak), 0, 255).round().astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2GRAY)


def render_grayscale(pixels: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values -> displayed uint8: modality LUT, VOI, MONOCHROME1 inversion."""
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise UnsupportedImageError(f"DICOM photometric interpretation {photometric} is not grayscale")
    try:
        values = apply_modality_lut(pixels, ds)
        displayed = _apply_voi(values, ds)
        if displayed is None:
            displayed = _full_range(pixels, values, ds)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        raise CorruptImageError(f"invalid DICOM modality or VOI LUT ({type(exc).__name__})") from None
    if photometric == "MONOCHROME1":
        displayed = 255.0 - displayed
    return np.clip(np.rint(displayed), 0, 255).astype(np.uint8)


def _apply_voi(values: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """The VOI transform to 0..255 (float), or None when the file has none."""
    if ds.get("VOILUTSequence"):
        item = ds.VOILUTSequence[0]
        bits = int(item.LUTDescriptor[2])
        return apply_voi(values, ds, index=0).astype(np.float64) * (255.0 / (2**bits - 1))
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = _first(ds["WindowCenter"].value)
        width = _first(ds["WindowWidth"].value)
        function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
        return window(values, center, width, function)
    return None


def _first(value: Any) -> float:
    if isinstance(value, list | tuple | pydicom.multival.MultiValue):
        value = value[0]
    return float(value)


def window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM windowing (PS3.3 C.11.2.1.2) straight to the 0..255 display range."""
    x = values.astype(np.float64)
    if function == "SIGMOID":
        if width <= 0:
            raise ValueError("window width must be positive")
        return 255.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR_EXACT":
        if width <= 0:
            raise ValueError("window width must be positive")
        return np.clip((x - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width < 1:
        raise ValueError("window width must be at least 1")
    if width == 1:  # a threshold
        return np.where(x > center - 0.5, 255.0, 0.0)
    return np.clip((x - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0) * 255.0


def _full_range(pixels: np.ndarray, values: np.ndarray, ds: Dataset) -> np.ndarray:
    """No VOI: identity for plain 8-bit data, else the data's min..max onto 0..255."""
    identity = values is pixels or np.array_equal(values, pixels)
    if identity and pixels.dtype == np.uint8:
        return pixels.astype(np.float64)
    x = values.astype(np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) * (255.0 / (hi - lo))
