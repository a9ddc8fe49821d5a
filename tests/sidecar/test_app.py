"""The sidecar's HTTP surface: /health, POST /gradcam, and its refusal of a model that is not the card's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.gradcam.protocol import (
    ACTIVATIONS_PATH,
    ACTIVATIONS_SHAPE_HEADER,
    IMAGE_PATH,
    INPUT_SHAPE_HEADER,
    MODEL_VERSION_HEADER,
    encode_activations_request,
    encode_request,
)
from app.model.card import load_model_card
from app.model.engine import InferenceEngine
from app.sidecar.config import SidecarSettings
from app.sidecar.main import create_app
from tests.serving import FIXTURE_JPEGS


def request_for(model_dir: Path, path: Path) -> tuple[bytes, dict[str, str], float]:
    """(body, headers, the ONNX probability) for one upload."""
    engine = InferenceEngine(model_dir)
    prepared = engine.prepare(path.read_bytes(), 10**8)
    body, headers = encode_request(prepared.enhanced, engine.card.version)
    return body, headers, engine.predict(prepared)


def test_health_returns_ok_with_layer(sidecar: TestClient, model_dir: Path) -> None:
    response = sidecar.get("/health")
    assert response.status_code == 200
    body = response.json()
    card = load_model_card(model_dir)
    assert body["status"] == "ok"
    assert body["model_version"] == card.version
    assert body["layer"] == "+".join(card.gradcam_layers)
    assert min(body["grid"]) >= 14


def test_gradcam_returns_heatmap_of_the_layer_grid(sidecar: TestClient, model_dir: Path) -> None:
    body, headers, probability = request_for(model_dir, FIXTURE_JPEGS[0])
    response = sidecar.post("/gradcam", content=body, headers=headers)
    assert response.status_code == 200
    payload = response.json()
    assert "overlay" not in payload  # the API draws it
    assert payload["probability"] == pytest.approx(probability, abs=1e-4)
    assert set(payload["heatmaps"]) == set(payload["empty_heatmaps"]) == {"PNEUMONIA", "NORMAL"}
    for heat in map(np.array, payload["heatmaps"].values()):
        assert heat.shape == tuple(sidecar.get("/health").json()["grid"])
        assert np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1
    # The two maps are the two signs of one class-activation map: where one is lit the other is dark.
    pneumonia, normal = (np.array(payload["heatmaps"][label]) for label in ("PNEUMONIA", "NORMAL"))
    assert not np.any((pneumonia > 0) & (normal > 0))
    assert payload["model_version"] == load_model_card(model_dir).version
    assert 0.0 <= payload["probability"] <= 1.0


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> InferenceEngine:
    return InferenceEngine(model_dir)


def activations_request_for(engine: InferenceEngine, path: Path) -> tuple[bytes, dict[str, str], np.ndarray]:
    """(body, headers, activations) of POST /gradcam/activations for one upload, from the ONNX call."""
    (assessment,) = engine.assess([engine.prepare(path.read_bytes(), 10**8)], gradcam=True)
    assert assessment.gradcam_activations is not None, "the model's graph has no gradcam_activations output"
    body, headers = encode_activations_request(assessment.gradcam_activations, engine.card.version)
    return body, headers, assessment.gradcam_activations


def test_activations_give_the_maps_of_the_image(
    sidecar: TestClient, model_dir: Path, engine: InferenceEngine
) -> None:
    body, headers, _ = request_for(model_dir, FIXTURE_JPEGS[1])
    from_image = sidecar.post(IMAGE_PATH, content=body, headers=headers).json()
    body, headers, _ = activations_request_for(engine, FIXTURE_JPEGS[1])
    response = sidecar.post(ACTIVATIONS_PATH, content=body, headers=headers)
    assert response.status_code == 200
    payload = response.json()
    assert payload["probability"] == pytest.approx(from_image["probability"], abs=1e-4)
    assert payload["layer"] == from_image["layer"] and payload["empty_heatmaps"] == from_image["empty_heatmaps"]
    for label, heat in payload["heatmaps"].items():
        np.testing.assert_allclose(np.array(heat), np.array(from_image["heatmaps"][label]), atol=2e-3)


@pytest.mark.parametrize("damage", ["shape", "length", "negative", "nan", "version"])
def test_bad_activations_requests_are_refused(sidecar: TestClient, engine: InferenceEngine, damage: str) -> None:
    body, headers, activations = activations_request_for(engine, FIXTURE_JPEGS[0])
    good = body, dict(headers)
    channels, height, width = activations.shape
    expected = 422
    if damage == "shape":
        headers[ACTIVATIONS_SHAPE_HEADER] = f"{channels + 1},{height},{width}"
    elif damage == "length":
        body = body[:-4]
    elif damage in ("negative", "nan"):
        bad = activations.copy()
        bad[0, 0, 0] = -1.0 if damage == "negative" else np.nan
        body, _ = encode_activations_request(bad, headers[MODEL_VERSION_HEADER])
    else:
        headers[MODEL_VERSION_HEADER], expected = "0.0.0+other", 409
    response = sidecar.post(ACTIVATIONS_PATH, content=body, headers=headers)
    assert response.status_code == expected
    assert response.json()["detail"]
    assert sidecar.post(ACTIVATIONS_PATH, content=good[0], headers=good[1]).status_code == 200  # the next one is served


def test_gradcam_wrong_body_length_returns_422(sidecar: TestClient, model_dir: Path) -> None:
    body, headers, _ = request_for(model_dir, FIXTURE_JPEGS[0])
    response = sidecar.post("/gradcam", content=body[:-1], headers=headers)
    assert response.status_code == 422
    assert "bytes" in response.json()["detail"]


def test_gradcam_missing_shape_header_returns_422(sidecar: TestClient, model_dir: Path) -> None:
    body, headers, _ = request_for(model_dir, FIXTURE_JPEGS[0])
    del headers[INPUT_SHAPE_HEADER]
    assert sidecar.post("/gradcam", content=body, headers=headers).status_code == 422


def test_gradcam_other_model_version_returns_409(sidecar: TestClient, model_dir: Path) -> None:
    body, headers, _ = request_for(model_dir, FIXTURE_JPEGS[0])
    headers[MODEL_VERSION_HEADER] = "0.0.0+other"
    assert sidecar.post("/gradcam", content=body, headers=headers).status_code == 409


def test_health_keras_hash_mismatch_returns_503(tmp_path: Path, model_dir: Path) -> None:
    card = json.loads((model_dir / "model_card.json").read_text())
    card["keras_sha256"] = "0" * 64
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    (tmp_path / card["files"]["keras"]).write_bytes((model_dir / card["files"]["keras"]).read_bytes())
    with TestClient(create_app(SidecarSettings(model_dir=tmp_path))) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert "sha256" in response.json()["detail"]
        assert client.post("/gradcam", content=b"").status_code == 503
