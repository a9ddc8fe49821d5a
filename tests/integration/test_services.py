"""Both services as real processes on free localhost ports, called over HTTP."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest

from app.model.card import load_model_card
from tests.conftest import REPO
from tests.serving import (
    FIXTURE_JPEGS,
    FULLRES_FILES,
    Services,
    free_port,
    running_services,
    serving_env,
    stop,
    wait_healthy,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def services(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    # A generous Grad-CAM timeout: CI machines are shared.
    with running_services(model_dir, tmp_path_factory.mktemp("service-logs"), gradcam_timeout_s=5) as found:
        yield found


def post(url: str, path: Path, **params: str) -> httpx.Response:
    with open(path, "rb") as handle:
        return httpx.post(url + "/predict", params=params, files={"file": (path.name, handle, "image/jpeg")},
                          timeout=30)


def decode_overlay(text: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(text), np.uint8), cv2.IMREAD_COLOR)


def test_health_over_http_sees_sidecar(services: Services) -> None:
    response = httpx.get(services.api_url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.json()["sidecar"]["reachable"] is True


@pytest.mark.parametrize("path", FIXTURE_JPEGS + FULLRES_FILES[:1], ids=lambda p: p.name)
def test_predict_over_http_returns_overlay(services: Services, model_dir: Path, path: Path) -> None:
    response = post(services.api_url, path)
    assert response.status_code == 200
    body = response.json()
    card = load_model_card(model_dir)
    assert body["model_version"] == card.version
    assert body["label"] == ("PNEUMONIA" if body["probability"] >= body["threshold"] else "NORMAL")
    assert body["gradcam_layer"] == "+".join(card.gradcam_layers)
    assert body["gradcam_label"] == body["label"]  # the map explains the answer given
    assert not any("unavailable" in w for w in body["warnings"])
    overlay = decode_overlay(body["gradcam_overlay"])
    height, width = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).shape
    assert max(overlay.shape[:2]) == min(512, max(height, width))
    assert overlay.shape[1] / overlay.shape[0] == pytest.approx(width / height, rel=0.02)


def test_real_films_pass_the_input_check_over_http(services: Services, model_dir: Path) -> None:
    """Issue 14: at most 0.5% of real films flagged (test_dev and the 16 full-resolution films; the
    validation films are checked in tests/training/test_ood.py)."""
    from app.model.ood import OodDetector
    from tests.conftest import TRAIN_224

    if OodDetector.from_dir(model_dir) is None:
        pytest.skip("this model has no input check")
    films = sorted((TRAIN_224 / "test_dev").glob("*/*.jpeg")) + list(FULLRES_FILES)
    if len(films) < 300:
        pytest.skip("../shared/data is not beside the repo")
    flagged = []
    with httpx.Client(timeout=30) as client:
        for path in films:
            response = client.post(services.api_url + "/predict", params={"gradcam": "false"},
                                   files={"file": (path.name, path.read_bytes(), "image/jpeg")})
            assert response.status_code == 200, response.text
            if not response.json()["in_distribution"]:
                flagged.append(path.name)
    assert len(flagged) <= 0.005 * len(films), flagged


def test_predict_over_http_png_overlay_on_request(services: Services) -> None:
    path = FIXTURE_JPEGS[0]
    default = post(services.api_url, path).json()
    png = post(services.api_url, path, overlay_format="png").json()
    assert default["gradcam_overlay_type"] == "image/jpeg"
    assert base64.b64decode(default["gradcam_overlay"]).startswith(b"\xff\xd8\xff")
    assert png["gradcam_overlay_type"] == "image/png"
    assert base64.b64decode(png["gradcam_overlay"]).startswith(b"\x89PNG")
    assert decode_overlay(png["gradcam_overlay"]).shape == decode_overlay(default["gradcam_overlay"]).shape
    assert png["probability"] == default["probability"]


def test_predict_over_http_unknown_overlay_format_returns_422(services: Services) -> None:
    response = post(services.api_url, FIXTURE_JPEGS[0], overlay_format="gif")
    assert response.status_code == 422


def test_predict_over_http_declared_oversize_returns_413(services: Services) -> None:
    """Only the headers and a few bytes are sent: the 413 comes without waiting for the body."""
    port = int(services.api_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: 1000000000\r\n\r\n--b\r\n")
        answer = b""
        while chunk := sock.recv(4096):  # the server closes the connection after its answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413")
    assert b"over the limit" in answer


def test_metrics_over_http_count_predictions(services: Services) -> None:
    response = httpx.get(services.api_url + "/metrics", timeout=10)
    assert response.status_code == 200
    assert 'route="/predict",status="200"' in response.text
    assert "cxr_predictions_total" in response.text


def test_a_model_without_the_activations_output_gets_the_same_overlay(
    services: Services, model_dir: Path, tmp_path: Path
) -> None:
    """A card without `output.gradcam` (an older export): the sidecar runs the whole network from the model
    input instead of mapping from the API's activations, and draws the same picture."""
    older = tmp_path / "older"
    shutil.copytree(model_dir, older, ignore=shutil.ignore_patterns("plots"))
    card = json.loads((older / "model_card.json").read_text())
    del card["output"]["gradcam"]
    (older / "model_card.json").write_text(json.dumps(card))
    film = FIXTURE_JPEGS[1]
    with running_services(older, tmp_path, gradcam_timeout_s=5) as image_path:
        from_image = post(image_path.api_url, film).json()
    from_activations = post(services.api_url, film).json()
    assert from_image["probability"] == from_activations["probability"]
    assert from_image["gradcam_label"] == from_activations["gradcam_label"]
    difference = np.abs(decode_overlay(from_image["gradcam_overlay"]).astype(int)
                        - decode_overlay(from_activations["gradcam_overlay"]).astype(int))
    assert difference.mean() < 1.0  # grey levels: JPEG of maps equal to ~1e-3


def test_predict_sidecar_stopped_returns_prediction_with_warning(services: Services) -> None:
    """Runs last in this module: it stops the sidecar."""
    before = post(services.api_url, FIXTURE_JPEGS[0], gradcam="false")
    assert stop(services.sidecar) is not None
    response = post(services.api_url, FIXTURE_JPEGS[0])
    assert response.status_code == 200
    body = response.json()
    assert body["gradcam_overlay"] is None
    assert any("unreachable" in w for w in body["warnings"])
    assert body["probability"] == before.json()["probability"]
    health = httpx.get(services.api_url + "/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["sidecar"]["reachable"] is False


def test_serve_script_starts_both_and_stops_on_sigint(model_dir: Path, tmp_path: Path) -> None:
    api_port, sidecar_port = free_port(), free_port()
    command = [sys.executable, str(REPO / "scripts" / "serve.py"), "--api-port", str(api_port),
               "--sidecar-port", str(sidecar_port), "--model-dir", str(model_dir), "--log-level", "warning"]
    with open(tmp_path / "serve.log", "wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=serving_env(), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_healthy(f"http://127.0.0.1:{sidecar_port}/health", process)
        wait_healthy(f"http://127.0.0.1:{api_port}/health/ready", process)
        response = post(f"http://127.0.0.1:{api_port}", FIXTURE_JPEGS[1])
        assert response.status_code == 200
        assert response.json()["gradcam_overlay"] is not None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        stop(process)
    for port in (api_port, sidecar_port):
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    assert '"message": "request"' not in (tmp_path / "serve.log").read_text()  # --log-level reaches the API too

