"""/health, /model, /metrics and configuration."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.api.config import Settings
from app.api.main import create_app
from app.model.card import load_model_card, sha256_of
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


def test_model_returns_card(client: TestClient, model_dir: Path) -> None:
    response = client.get("/model")
    assert response.status_code == 200
    body = response.json()
    card = load_model_card(model_dir)
    assert body["version"] == card.version
    assert body["onnx_sha256"] == sha256_of(model_dir / card.onnx_file)
    assert body["input_size"] == card.preprocessing.input_size
    assert body["threshold"] == card.threshold
    assert body["preprocessing"]["clahe_clip_limit"] == card.preprocessing.clahe_clip_limit
    assert body["validation_metrics"]
    assert body["gradcam_layer"] == card.gradcam_layer
    assert body["gradcam_layers"] == list(card.gradcam_layers)


def test_metrics_counts_requests_and_predictions(client: TestClient) -> None:
    path = FIXTURE_JPEGS[0]
    assert client.post("/predict?gradcam=false", files={"file": (path.name, path.read_bytes())}).status_code == 200
    assert client.post("/predict", files={"file": ("x.txt", b"hello")}).status_code == 415
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cxr_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'cxr_http_requests_total{method="POST",route="/predict",status="415"}' in text
    assert 'cxr_http_request_duration_seconds_bucket{le="0.015",method="POST",route="/predict"}' in text
    assert "cxr_predictions_total{label=" in text
    assert 'cxr_rejected_inputs_total{status="415"} 1.0' in text
    assert 'cxr_predict_stage_duration_seconds_count{stage="inference"}' in text


def test_invented_http_methods_share_one_metrics_series(client: TestClient) -> None:
    for index in range(5):
        assert client.request(f"BREW{index}", "/predict").status_code == 405
    text = client.get("/metrics").text
    assert "BREW" not in text
    assert 'cxr_http_requests_total{method="other",route="/predict",status="405"} 5.0' in text


def test_settings_read_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CXR_MODEL_DIR", str(tmp_path))
    monkeypatch.setenv("CXR_GRADCAM_URL", "http://10.0.0.1:9001")
    monkeypatch.setenv("CXR_GRADCAM_TIMEOUT_S", "0.75")
    monkeypatch.setenv("CXR_MAX_UPLOAD_BYTES", "1234")
    monkeypatch.setenv("CXR_MAX_IMAGE_PIXELS", "5000")
    monkeypatch.setenv("CXR_ORT_THREADS", "2")
    monkeypatch.setenv("CXR_PORT", "9000")
    settings = Settings()
    assert settings.model_dir == tmp_path
    assert settings.gradcam_url == "http://10.0.0.1:9001"
    assert settings.gradcam_timeout_s == 0.75
    assert (settings.max_upload_bytes, settings.max_image_pixels, settings.ort_threads) == (1234, 5000, 2)
    assert (settings.host, settings.port) == ("127.0.0.1", 9000)


def test_settings_defaults() -> None:
    settings = Settings(_env_file=None)
    assert settings.model_dir == Path("models")
    assert settings.gradcam_url == "http://127.0.0.1:8001"
    assert settings.gradcam_timeout_s == 2.0
    assert settings.max_upload_bytes == 20 * 1024 * 1024


def test_predict_pixel_limit_from_settings_returns_413(model_dir: Path) -> None:
    with TestClient(create_app(make_settings(model_dir, max_image_pixels=10_000))) as client:
        path = FIXTURE_JPEGS[0]
        response = client.post("/predict", files={"file": (path.name, path.read_bytes())})
        assert response.status_code == 413
        assert "over the limit" in response.json()["detail"]
