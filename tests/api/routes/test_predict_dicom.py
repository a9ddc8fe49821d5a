"""DICOM uploads on /predict: same probability as the image they were built from, clear errors, no patient data."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydicom.uid import JPEG2000Lossless, RLELossless

from tests.dicom_files import (
    PATIENT_ID,
    PATIENT_NAME,
    dicom_12bit_windowed,
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
from tests.serving import FIXTURE_JPEGS

# Lossy or rounded renderings move pixels by a few levels; CLAHE and the CNN see
# nearly the same input, so the probability moves by far less than this.
CLOSE = 0.02


def predict(client: TestClient, data: bytes, name: str = "image.dcm", **params: str) -> dict:
    response = client.post("/predict", params={"gradcam": "false", **params},
                           files={"file": (name, data, "application/dicom")})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def reference(client: TestClient) -> dict[str, float]:
    """P(pneumonia) of each fixture JPEG itself."""
    return {path.name: predict(client, path.read_bytes(), path.name)["probability"] for path in FIXTURE_JPEGS}


EXACT: dict[str, Callable[[np.ndarray], bytes]] = {
    "monochrome2_8bit": dicom_from_gray,
    "monochrome1_8bit": dicom_monochrome1,
    "monochrome2_12bit_window": dicom_12bit_windowed,
    "monochrome1_12bit_window": lambda image: dicom_12bit_windowed(image, "MONOCHROME1"),
    "rle_lossless": lambda image: dicom_compressed(image, RLELossless),
    "jpeg2000_lossless": lambda image: dicom_compressed(image, JPEG2000Lossless),
}
CLOSE_ONLY: dict[str, Callable[[np.ndarray], bytes]] = {
    "16bit_rescaled_window": dicom_16bit_rescaled,  # sub-level detail rounds to x or x + 1
    "jpeg_baseline_q95": dicom_jpeg_baseline,  # lossy re-encoding
}


@pytest.mark.parametrize("build", EXACT.values(), ids=EXACT.keys())
@pytest.mark.parametrize("path", FIXTURE_JPEGS, ids=lambda p: p.name)
def test_dicom_probability_equals_the_image(client: TestClient, reference: dict[str, float], path, build) -> None:
    body = predict(client, build(gray(path)))
    assert body["probability"] == reference[path.name]
    assert body["dicom"]["modality"] == "DX" and body["dicom"]["view_position"] == "PA"


@pytest.mark.parametrize("build", CLOSE_ONLY.values(), ids=CLOSE_ONLY.keys())
@pytest.mark.parametrize("path", FIXTURE_JPEGS, ids=lambda p: p.name)
def test_dicom_probability_is_close_to_the_image(client: TestClient, reference: dict[str, float], path, build) -> None:
    body = predict(client, build(gray(path)))
    assert body["probability"] == pytest.approx(reference[path.name], abs=CLOSE)


def test_non_dicom_response_has_no_dicom_block(client: TestClient) -> None:
    assert predict(client, FIXTURE_JPEGS[0].read_bytes(), "x.jpeg")["dicom"] is None


def test_preview_is_the_decoded_image(client: TestClient) -> None:
    import base64

    import cv2

    body = predict(client, dicom_monochrome1(gray(FIXTURE_JPEGS[0])), preview="true")
    preview = cv2.imdecode(np.frombuffer(base64.b64decode(body["preview_png"]), np.uint8), cv2.IMREAD_GRAYSCALE)
    assert max(preview.shape) == 512
    assert predict(client, dicom_from_gray(gray(FIXTURE_JPEGS[0])))["preview_png"] is None


@pytest.mark.parametrize("data, status, words", [
    (with_transfer_syntax(dicom_from_gray(gray(FIXTURE_JPEGS[0])), "1.2.840.10008.1.2.4.100"), 415,
     "MPEG2 Main Profile / Main Level"),
    (to_bytes(make_dataset(np.zeros((2, 64, 64), np.uint8), bits_stored=8, frames=2)), 422, "multi-frame"),
    (sr_document(), 422, "modality SR"),
], ids=["mpeg2", "multi_frame", "structured_report"])
def test_dicom_rejections(client: TestClient, data: bytes, status: int, words: str) -> None:
    response = client.post("/predict", files={"file": ("x.dcm", data, "application/dicom")})
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_patient_data_never_logged_or_echoed(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    image = gray(FIXTURE_JPEGS[0])
    caplog.set_level(logging.DEBUG)
    texts = []
    for data in (dicom_from_gray(image), dicom_jpeg_baseline(image), sr_document(),
                 with_transfer_syntax(dicom_from_gray(image), "1.2.3.4")):
        texts.append(client.post("/predict", params={"preview": "true"},
                                 files={"file": ("x.dcm", data, "application/dicom")}).text)
    batch = client.post("/predict/batch", files=[("files", ("a.dcm", dicom_from_gray(image), "application/dicom")),
                                                 ("files", ("b.dcm", sr_document(), "application/dicom"))])
    texts.append(batch.text)
    everything = caplog.text + " ".join(texts)
    for secret in (PATIENT_NAME, PATIENT_NAME.split("^")[1], PATIENT_ID, "19700101"):
        assert secret not in everything
