"""POST /predict on the real model: contract, consistency with `training.evaluate`, all input formats."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.model.card import load_model_card
from tests.serving import FIXTURE_JPEGS, FULLRES_FILES, PNG16, PNG_RGBA
from training.evaluate import predict_files

CONTRACT_FIELDS = {"label", "probability", "threshold", "model_version", "gradcam_overlay", "warnings"}


def post_file(client: TestClient, path: Path, **params: str):
    return client.post("/predict", params=params, files={"file": (path.name, path.read_bytes(), "image/jpeg")})


def assert_contract(body: dict, model_dir: Path) -> None:
    card = load_model_card(model_dir)
    assert CONTRACT_FIELDS <= body.keys()
    assert body["label"] in ("PNEUMONIA", "NORMAL")
    assert 0.0 <= body["probability"] <= 1.0
    assert body["threshold"] == pytest.approx(card.threshold)
    assert body["model_version"] == card.version
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= body["threshold"] else "NORMAL")
    assert isinstance(body["warnings"], list) and all(isinstance(w, str) for w in body["warnings"])


def test_predict_fixture_jpeg_returns_contract(client: TestClient, model_dir: Path) -> None:
    response = post_file(client, FIXTURE_JPEGS[0])
    assert response.status_code == 200
    body = response.json()
    assert_contract(body, model_dir)
    assert body["gradcam_overlay"] is None  # no sidecar in these tests
    assert any("Grad-CAM sidecar unreachable" in w for w in body["warnings"])
    assert body["request_id"] and body["timings_ms"]["total"] > 0


@pytest.mark.parametrize("path", FIXTURE_JPEGS + [PNG16, PNG_RGBA], ids=lambda p: p.name)
def test_predict_fixture_matches_evaluate(client: TestClient, model_dir: Path, path: Path) -> None:
    response = post_file(client, path, gradcam="false")
    assert response.status_code == 200
    body = response.json()
    assert_contract(body, model_dir)
    expected = float(predict_files(model_dir, [path])[0])
    assert body["probability"] == pytest.approx(expected, abs=1e-6)


@pytest.mark.skipif(not FULLRES_FILES, reason="../shared/data/val16_fullres is not beside the repo")
@pytest.mark.parametrize("path", FULLRES_FILES, ids=lambda p: p.name)
def test_predict_fullres_matches_evaluate(client: TestClient, model_dir: Path, path: Path) -> None:
    response = post_file(client, path, gradcam="false")
    assert response.status_code == 200
    body = response.json()
    assert_contract(body, model_dir)
    assert body["probability"] == pytest.approx(float(predict_files(model_dir, [path])[0]), abs=1e-6)
    assert body["warnings"] == []  # full-resolution films need no upscaling, Grad-CAM was not asked for


def test_predict_16bit_png_warns_when_upscaled(client: TestClient, model_dir: Path) -> None:
    response = post_file(client, PNG16, gradcam="false")
    assert response.status_code == 200
    body = response.json()
    assert body["image_size"] == [256, 204]
    upscaled = load_model_card(model_dir).preprocessing.input_size > 204
    assert any("upscaled" in w for w in body["warnings"]) == upscaled


def test_predict_gradcam_false_skips_sidecar(client: TestClient) -> None:
    response = post_file(client, FIXTURE_JPEGS[1], gradcam="false")
    assert response.status_code == 200
    body = response.json()
    assert body["gradcam_overlay"] is None
    assert not any("Grad-CAM" in w for w in body["warnings"])
    assert "gradcam_wait" not in body["timings_ms"]


def test_predict_same_file_twice_is_deterministic(client: TestClient) -> None:
    first = post_file(client, FIXTURE_JPEGS[0], gradcam="false")
    second = post_file(client, FIXTURE_JPEGS[0], gradcam="false")
    assert first.status_code == 200 and second.status_code == 200
    assert first.json()["probability"] == second.json()["probability"]
    assert first.json()["request_id"] != second.json()["request_id"]
