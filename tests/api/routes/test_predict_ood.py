"""/predict and /predict/batch say when an upload is not a chest X-ray (issue 14): no label, no overlay."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.model.ood import OodDetector
from tests.dicom_files import dicom_from_gray, gray
from tests.serving import FIXTURE_JPEGS, FULLRES_FILES


@pytest.fixture(autouse=True)
def _needs_the_check(model_dir) -> None:
    if OodDetector.from_dir(model_dir) is None:
        pytest.skip("this model has no input check")


def png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


def predict(client: TestClient, data: bytes, name: str = "upload.png", gradcam: bool = False) -> dict:
    response = client.post("/predict", params={"gradcam": str(gradcam).lower()}, files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()


def _negatives() -> dict[str, bytes]:
    rng = np.random.default_rng(7)
    film = gray(FULLRES_FILES[0] if FULLRES_FILES else FIXTURE_JPEGS[0])
    return {
        "noise": png(rng.integers(0, 256, (600, 500), dtype=np.uint8)),
        "blank": png(np.full((512, 512), 128, np.uint8)),
        "inverted film": png(255 - film),
        "film on its side": png(np.ascontiguousarray(np.rot90(film))),
    }


@pytest.mark.parametrize("kind", list(_negatives()))
def test_a_non_chest_upload_gets_no_label_and_says_why(client: TestClient, kind: str) -> None:
    body = predict(client, _negatives()[kind])
    assert body["in_distribution"] is False
    assert body["ood_score"] > 1.0
    assert body["label"] is None
    assert 0.0 <= body["probability"] <= 1.0  # still given, for transparency
    assert any("does not look like a frontal chest X-ray" in w for w in body["warnings"])
    assert body["gradcam_overlay"] is None


def test_a_real_film_passes_the_check(client: TestClient) -> None:
    for path in FIXTURE_JPEGS:
        body = predict(client, path.read_bytes(), path.name)
        assert body["in_distribution"] is True and body["ood_score"] <= 1.0
        assert body["label"] in ("PNEUMONIA", "NORMAL")


def test_a_dicom_whose_header_says_ct_is_flagged(client: TestClient) -> None:
    film = gray(FIXTURE_JPEGS[0])
    body = predict(client, dicom_from_gray(film, modality="CT"), "slice.dcm")
    assert body["in_distribution"] is False and body["label"] is None
    assert body["dicom"]["modality"] == "CT"
    # The same pixels as a chest radiograph pass.
    assert predict(client, dicom_from_gray(film), "film.dcm")["in_distribution"] is True


def test_batch_items_carry_the_check(client: TestClient) -> None:
    files = [("files", ("film.jpeg", FIXTURE_JPEGS[0].read_bytes())), ("files", ("noise.png", _negatives()["noise"]))]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200, response.text
    film, noise = response.json()["results"]
    assert film["in_distribution"] is True and film["label"] in ("PNEUMONIA", "NORMAL")
    assert noise["in_distribution"] is False and noise["label"] is None


def test_a_tinted_film_is_flagged_by_its_colour(client: TestClient) -> None:
    """The decoder measures colour where it decodes colour (PNG): a real film, tinted, passes every
    other check and is flagged for its colour alone."""
    film = gray(FIXTURE_JPEGS[0])
    tinted = np.stack([film, film, np.clip(film.astype(np.int16) + 60, 0, 255).astype(np.uint8)], axis=-1)
    assert predict(client, png(np.stack([film] * 3, axis=-1)))["in_distribution"] is True  # grey in RGB: fine
    body = predict(client, png(tinted))
    assert body["in_distribution"] is False and body["label"] is None
    assert any("in colour" in w for w in body["warnings"]), body["warnings"]
