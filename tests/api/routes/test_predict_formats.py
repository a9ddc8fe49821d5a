"""One film, one answer, whatever container carries its pixels (issue 13, part 3).

The same full-resolution pixels uploaded as JPEG, as PNG, and as DICOM (8-bit, 12-bit
windowed, 16-bit windowed; MONOCHROME1 and MONOCHROME2) must get probabilities within
0.005: every format goes through one full decode and one chain.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.dicom_files import (
    dicom_12bit_windowed,
    dicom_16bit_windowed,
    dicom_from_gray,
    dicom_monochrome1,
    gray,
)
from tests.serving import FULLRES_FILES

TOLERANCE = 0.005

RENDERINGS: dict[str, Callable[[np.ndarray], bytes]] = {
    "png": lambda image: cv2.imencode(".png", image)[1].tobytes(),
    "dicom_8bit_monochrome2": dicom_from_gray,
    "dicom_8bit_monochrome1": dicom_monochrome1,
    "dicom_12bit_windowed_monochrome2": dicom_12bit_windowed,
    "dicom_12bit_windowed_monochrome1": lambda image: dicom_12bit_windowed(image, "MONOCHROME1"),
    "dicom_16bit_windowed_monochrome2": dicom_16bit_windowed,
    "dicom_16bit_windowed_monochrome1": lambda image: dicom_16bit_windowed(image, "MONOCHROME1"),
}


def probability(client: TestClient, data: bytes, name: str) -> float:
    response = client.post("/predict?gradcam=false", files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()["probability"]


@pytest.mark.skipif(not FULLRES_FILES, reason="../shared/data/val16_fullres is not beside the repo")
@pytest.mark.parametrize("path", FULLRES_FILES, ids=lambda p: p.name)
def test_jpeg_png_and_dicom_of_one_film_get_one_answer(client: TestClient, path) -> None:
    image = gray(path)
    assert min(image.shape) > 2 * 224  # really full resolution, far above the model input
    probs = {"jpeg": probability(client, path.read_bytes(), path.name)}
    for name, render in RENDERINGS.items():
        probs[name] = probability(client, render(image), f"{path.stem}_{name}")
    assert max(probs.values()) - min(probs.values()) <= TOLERANCE, probs
