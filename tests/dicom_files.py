"""Build DICOM files in tests from 8-bit grayscale arrays (pydicom writes them)."""

from __future__ import annotations

import io

import cv2
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    SecondaryCaptureImageStorage,
    generate_uid,
)

# Identifying values that must never appear in logs or responses.
PATIENT_NAME = "Doe^Jane^Secret"
PATIENT_ID = "PID-SECRET-4711"
DX_STORAGE = UID("1.2.840.10008.5.1.4.1.1.1.1")  # Digital X-Ray Image Storage - For Presentation


def gray(path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, path
    return image


def _with_patient(sop_class: UID | str, modality: str) -> Dataset:
    """A dataset with file meta, SOP ids, modality and the patient tags the logs must never show."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.Modality = modality
    return ds


def make_dataset(
    stored: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    modality: str = "DX",
    window: tuple[float, float] | None = None,
    rescale: tuple[float, float] | None = None,
    frames: int = 1,
) -> Dataset:
    """An uncompressed single-sample image dataset with patient tags set."""
    ds = _with_patient(DX_STORAGE if modality != "OT" else SecondaryCaptureImageStorage, modality)
    ds.PatientBirthDate = "19700101"
    ds.ViewPosition = "PA"
    ds.BodyPartExamined = "CHEST"
    rows, columns = stored.shape[-2:]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    allocated = 8 if bits_stored <= 8 else 16
    ds.BitsAllocated = allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    dtype = np.uint8 if allocated == 8 else np.uint16
    ds.PixelData = np.ascontiguousarray(stored, dtype=dtype).tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def dicom_from_gray(image: np.ndarray, **kwargs) -> bytes:
    """MONOCHROME2 8-bit, no windowing: pixels equal `image`."""
    return to_bytes(make_dataset(image, bits_stored=8, **kwargs))


def dicom_monochrome1(image: np.ndarray) -> bytes:
    """MONOCHROME1 8-bit storing 255 - x, so the viewer's inversion gives back x."""
    return to_bytes(make_dataset(255 - image, bits_stored=8, photometric="MONOCHROME1"))


def dicom_12bit_windowed(image: np.ndarray, photometric: str = "MONOCHROME2") -> bytes:
    """12-bit stored = 16x (plus noise in the low bits) with a window mapping 0..4080 to 0..255.

    LINEAR windowing is y = ((s - (c - 0.5)) / (w - 1) + 0.5) * 255; c = 2040.5 and
    w = 4081 give y = s / 16, so 16x + n (n in 0..7) lands within half a level of x.
    For MONOCHROME1 the stored value is built from 255 - x, which the inversion undoes.
    """
    rng = np.random.default_rng(0)
    base = image if photometric == "MONOCHROME2" else 255 - image
    stored = base.astype(np.uint16) * 16 + rng.integers(0, 8, image.shape, dtype=np.uint16)
    return to_bytes(make_dataset(stored, bits_stored=12, photometric=photometric, window=(2040.5, 4081.0)))


def dicom_16bit_rescaled(image: np.ndarray) -> bytes:
    """16-bit stored 257x + n (n in 0..256: detail below one display level), rescale slope
    0.5 / intercept -1000, and the window that maps the rescaled range back to 0..255.

    The rescaled values run -1000..31767.5 + n/2; centre 15384.25 / width 32768.5 gives
    y = x + n/257, which rounds to x or x + 1: close, not exact, because an 8-bit display
    must round away the 8 bits of detail the 16-bit file has.
    """
    rng = np.random.default_rng(0)
    stored = np.minimum(image.astype(np.int32) * 257 + rng.integers(0, 257, image.shape), 65535).astype(np.uint16)
    return to_bytes(make_dataset(stored, bits_stored=16, rescale=(0.5, -1000.0), window=(15384.25, 32768.5)))


def dicom_16bit_windowed(image: np.ndarray, photometric: str = "MONOCHROME2") -> bytes:
    """16-bit stored 257x with the window that maps 0..65535 back to 0..255 exactly.

    LINEAR windowing y = ((s - (c - 0.5)) / (w - 1) + 0.5) * 255 with c = 32768 and
    w = 65536 is y = 255 s / 65535 = x: the same pixels as `image`, in a 16-bit file.
    """
    base = image if photometric == "MONOCHROME2" else 255 - image
    stored = base.astype(np.uint16) * 257
    return to_bytes(make_dataset(stored, bits_stored=16, photometric=photometric, window=(32768.0, 65536.0)))


def dicom_16bit_no_window(image: np.ndarray) -> bytes:
    """16-bit, no VOI: rendered by scaling the data's min..max to 0..255."""
    stored = image.astype(np.uint16) * 257
    return to_bytes(make_dataset(stored, bits_stored=16))


def dicom_jpeg_baseline(image: np.ndarray) -> bytes:
    """JPEG Baseline transfer syntax: the fixture re-encoded by OpenCV at quality 95 and encapsulated."""
    ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    ds = make_dataset(image, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.PixelData = encapsulate([encoded.tobytes()])
    ds["PixelData"].VR = "OB"
    ds.PhotometricInterpretation = "MONOCHROME2"
    return to_bytes(ds)


def dicom_compressed(image: np.ndarray, syntax: UID, **encoding) -> bytes:
    """Compressed by pydicom's own encoders (RLE natively, JPEG 2000 via pylibjpeg-openjpeg)."""
    ds = make_dataset(image, bits_stored=8)
    ds.compress(syntax, **encoding)
    return to_bytes(ds)


def with_transfer_syntax(data: bytes, syntax: str) -> bytes:
    """The same file with its declared transfer syntax replaced (pixels left as they are)."""
    import pydicom

    ds = pydicom.dcmread(io.BytesIO(data))
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    ds.PixelData = encapsulate([bytes(ds.PixelData)])
    ds["PixelData"].VR = "OB"
    return to_bytes(ds)


def sr_document() -> bytes:
    """A Structured Report: a DICOM file with no image."""
    return to_bytes(_with_patient(UID("1.2.840.10008.5.1.4.1.1.88.11"), "SR"))
