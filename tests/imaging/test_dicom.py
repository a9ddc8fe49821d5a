"""DICOM decoding: rendering like a viewer, transfer syntaxes, and the rejections."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from app.imaging.decode import decode_image, read_header
from app.imaging.dicom import dicom_summary, window
from app.imaging.errors import (
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedFormatError,
    UnsupportedImageError,
)
from tests.conftest import FIXTURES
from tests.dicom_files import (
    PATIENT_ID,
    PATIENT_NAME,
    dicom_12bit_windowed,
    dicom_16bit_no_window,
    dicom_16bit_rescaled,
    dicom_compressed,
    dicom_from_gray,
    dicom_jpeg_baseline,
    dicom_monochrome1,
    gray,
    make_dataset,
    sr_document,
    to_bytes,
    with_transfer_syntax,
)

IMAGE = gray(FIXTURES / "normal_small.jpeg")


def test_8bit_monochrome2_decodes_to_exactly_the_image() -> None:
    data = dicom_from_gray(IMAGE)
    assert read_header(data).format.value == "dicom"
    assert (read_header(data).width, read_header(data).height) == (IMAGE.shape[1], IMAGE.shape[0])
    np.testing.assert_array_equal(decode_image(data), IMAGE)


def test_8bit_monochrome1_is_inverted_back_to_the_image() -> None:
    np.testing.assert_array_equal(decode_image(dicom_monochrome1(IMAGE)), IMAGE)


@pytest.mark.parametrize("photometric", ["MONOCHROME2", "MONOCHROME1"])
def test_12bit_with_window_maps_back_to_the_image(photometric: str) -> None:
    np.testing.assert_array_equal(decode_image(dicom_12bit_windowed(IMAGE, photometric)), IMAGE)


def test_16bit_rescaled_with_window_is_within_one_level() -> None:
    decoded = decode_image(dicom_16bit_rescaled(IMAGE)).astype(int)
    difference = decoded - IMAGE
    assert difference.min() >= 0 and difference.max() <= 1  # y = x + n/257, rounded
    assert 0.3 < difference.mean() < 0.7


def test_16bit_without_window_uses_the_data_range() -> None:
    np.testing.assert_array_equal(decode_image(dicom_16bit_no_window(IMAGE)), IMAGE)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=lambda s: s.name)
def test_lossless_compressed_syntaxes_decode_exactly(syntax) -> None:
    np.testing.assert_array_equal(decode_image(dicom_compressed(IMAGE, syntax)), IMAGE)


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian],
                         ids=lambda s: s.name)
def test_uncompressed_syntaxes_decode_exactly(syntax) -> None:
    ds = make_dataset(IMAGE, bits_stored=8)
    ds.file_meta.TransferSyntaxUID = syntax
    np.testing.assert_array_equal(decode_image(to_bytes(ds)), IMAGE)


def test_jpeg_baseline_decodes_close_to_the_image() -> None:
    decoded = decode_image(dicom_jpeg_baseline(IMAGE)).astype(int)
    assert decoded.shape == IMAGE.shape
    assert np.abs(decoded - IMAGE).mean() < 1.0  # lossy re-encoding at quality 95


def test_voi_lut_sequence_is_applied() -> None:
    ds = make_dataset(IMAGE.astype(np.uint16) * 4, bits_stored=10)
    item = Dataset()
    item.LUTDescriptor = [1024, 0, 16]  # 1024 entries from 0, 16-bit output
    item.LUTData = (np.arange(1024, dtype=np.uint16) // 4 * 257).tobytes()
    ds.VOILUTSequence = [item]
    np.testing.assert_array_equal(decode_image(to_bytes(ds)), IMAGE)


@pytest.mark.parametrize("uid, name", [
    ("1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level"),
    ("1.2.840.10008.1.2.4.92", "JPEG 2000 Part 2 Multi-component Image Compression (Lossless Only)"),
    ("1.2.826.0.1.3680043.9.9999.1", "1.2.826.0.1.3680043.9.9999.1"),
])
def test_unsupported_transfer_syntax_is_415_naming_it(uid: str, name: str) -> None:
    with pytest.raises(UnsupportedFormatError, match="transfer syntax") as caught:
        decode_image(with_transfer_syntax(dicom_from_gray(IMAGE), uid))
    assert caught.value.status_code == 415
    assert name in str(caught.value)


def test_multi_frame_is_422() -> None:
    data = to_bytes(make_dataset(np.stack([IMAGE, IMAGE]), bits_stored=8, frames=2))
    with pytest.raises(UnsupportedImageError, match="multi-frame") as caught:
        decode_image(data)
    assert caught.value.status_code == 422


def test_non_image_modality_is_422() -> None:
    with pytest.raises(UnsupportedImageError, match="modality SR") as caught:
        decode_image(sr_document())
    assert caught.value.status_code == 422


def test_declared_size_is_checked_before_pixel_data() -> None:
    """A header claiming 20000 x 20000 with a few bytes of pixels: 413, nothing decoded."""
    ds = make_dataset(IMAGE[:4, :4], bits_stored=8)
    ds.Rows = ds.Columns = 20000
    data = to_bytes(ds)
    assert read_header(data).width == 20000
    with pytest.raises(ImageTooLargeError):
        decode_image(data)
    with pytest.raises(CorruptImageError):  # under a large limit it is simply short pixel data
        decode_image(data, max_pixels=10**9)


def test_truncated_file_is_422() -> None:
    data = dicom_from_gray(IMAGE)
    with pytest.raises(CorruptImageError):
        decode_image(data[: len(data) // 2])
    with pytest.raises(CorruptImageError):
        decode_image(data[:300])


def test_colour_secondary_capture_becomes_gray() -> None:
    ds = make_dataset(IMAGE, bits_stored=8, modality="OT")
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.PixelData = np.repeat(IMAGE[..., None], 3, axis=2).tobytes()
    np.testing.assert_array_equal(decode_image(to_bytes(ds)), IMAGE)


def test_summary_and_errors_never_carry_patient_data() -> None:
    summary = dicom_summary(dicom_from_gray(IMAGE))
    assert summary == {"modality": "DX", "view_position": "PA", "body_part_examined": "CHEST",
                       "photometric_interpretation": "MONOCHROME2", "bits_stored": 8,
                       "transfer_syntax": "Explicit VR Little Endian"}
    messages = []
    for data in (sr_document(), with_transfer_syntax(dicom_from_gray(IMAGE), "1.2.3"), dicom_from_gray(IMAGE)[:400]):
        with pytest.raises(Exception) as caught:
            decode_image(data)
        messages.append(str(caught.value))
    text = " ".join(messages) + repr(summary)
    assert PATIENT_NAME.split("^")[0] not in text and PATIENT_ID not in text


def test_window_functions_follow_the_standard() -> None:
    x = np.array([0.0, 50.0, 100.0, 150.0, 200.0])
    np.testing.assert_allclose(window(x, 100.5, 201.0), [0.0, 63.75, 127.5, 191.25, 255.0])
    np.testing.assert_allclose(window(x, 100.0, 200.0, "LINEAR_EXACT"), [0.0, 63.75, 127.5, 191.25, 255.0])
    sigmoid = window(x, 100.0, 200.0, "SIGMOID")
    assert sigmoid[2] == pytest.approx(127.5) and np.all(np.diff(sigmoid) > 0)


def test_written_file_really_holds_patient_tags() -> None:
    """Guard for the tests above: the files do carry the identifying tags we check for."""
    ds = pydicom.dcmread(io.BytesIO(dicom_from_gray(IMAGE)))
    assert str(ds.PatientName) == PATIENT_NAME and ds.PatientID == PATIENT_ID
