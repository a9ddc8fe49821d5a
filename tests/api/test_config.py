"""Settings: from the environment, their defaults, and the limits they set."""


from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.api.config import Settings
from app.api.main import create_app
from tests.api.conftest import make_settings
from tests.serving import FIXTURE_JPEGS


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


def test_a_lone_predict_runs_on_the_all_core_session(model_dir: Path) -> None:
    """With nothing else in the compute pool, both /predict paths (without Grad-CAM, and with it, here
    with no sidecar listening) make their ONNX call on the second session: the shared one is taken away."""
    with TestClient(create_app(make_settings(model_dir, ort_threads=1, ort_threads_alone=2))) as client:
        engine = client.app.state.service.engine
        assert engine.alone_session is not None
        shared, engine.session = engine.session, None
        try:
            path = FIXTURE_JPEGS[0]
            for query in ("?gradcam=false", ""):
                response = client.post(f"/predict{query}", files={"file": (path.name, path.read_bytes())})
                assert response.status_code == 200, response.text
                assert response.json()["label"] in ("NORMAL", "PNEUMONIA")
        finally:
            engine.session = shared
