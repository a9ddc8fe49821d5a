"""GET /health, /health/live, /health/ready: ready only with a model whose hashes match."""


from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.api.main import create_app
from app.model.card import load_model_card
from tests.api.conftest import make_settings
from tests.serving import FIXTURE_JPEGS


def test_health_model_loaded_returns_ok(client: TestClient, model_dir: Path) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["model_version"] == load_model_card(model_dir).version
    assert body["sidecar"]["reachable"] is False


def test_health_live_and_ready_return_200(client: TestClient) -> None:
    assert client.get("/health/live").status_code == 200
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["model_loaded"] is True


def test_health_without_model_returns_503(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path))) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert response.json()["status"] == "unavailable"
        assert "model_card.json" in response.json()["detail"]
        assert client.get("/health/ready").status_code == 503
        assert client.get("/health/live").status_code == 200
        path = FIXTURE_JPEGS[0]
        assert client.post("/predict", files={"file": (path.name, path.read_bytes())}).status_code == 503
        assert client.get("/model").status_code == 503


def test_health_onnx_hash_mismatch_returns_503(tmp_path: Path, model_dir: Path) -> None:
    card = load_model_card(model_dir)
    for name in ("model_card.json", card.onnx_file):
        (tmp_path / name).write_bytes((model_dir / name).read_bytes())
    with open(tmp_path / card.onnx_file, "ab") as handle:
        handle.write(b"\x00")
    with TestClient(create_app(make_settings(tmp_path))) as client:
        response = client.get("/health")
        assert response.status_code == 503
        assert "sha256" in response.json()["detail"]
