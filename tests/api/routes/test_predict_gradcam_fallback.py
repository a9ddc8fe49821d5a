"""The sidecar down, slow or wrong: /predict still answers 200 with the prediction and says why."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.api.conftest import make_settings
from tests.serving import FIXTURE_JPEGS


def predict(client: TestClient) -> dict:
    path = FIXTURE_JPEGS[1]
    response = client.post("/predict", files={"file": (path.name, path.read_bytes(), "image/jpeg")})
    assert response.status_code == 200
    body = response.json()
    assert body["label"] in ("PNEUMONIA", "NORMAL")
    assert body["gradcam_overlay"] is None
    return body


def _answer(heatmap: object) -> dict:
    return {"heatmaps": {"PNEUMONIA": heatmap, "NORMAL": heatmap},
            "empty_heatmaps": {"PNEUMONIA": False, "NORMAL": False},
            "layer": "conv", "probability": 0.5, "model_version": "x"}


WRONG_ANSWERS = {  # each must be refused as an invalid response, not drawn
    "not json fields": {"overlay": "%%%", "model_version": "x"},
    "heatmap not a grid": _answer([1, 2, 3]),
    "heatmap out of range": _answer([[0.0, 7.5], [0.1, 0.2]]),
    "heatmap not numbers": _answer([["a", "b"]]),
}


class _WrongSidecar(BaseHTTPRequestHandler):
    """Answers 200 to everything, with a JSON body that is not a valid sidecar answer."""

    answer: dict = {}

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.dumps(self.answer).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(params=sorted(WRONG_ANSWERS))
def wrong_sidecar(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (_WrongSidecar,), {"answer": WRONG_ANSWERS[request.param]})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture()
def silent_sidecar() -> Iterator[str]:
    """Accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_predict_sidecar_down_returns_prediction_with_warning(model_dir: Path) -> None:
    with TestClient(create_app(make_settings(model_dir))) as client:
        body = predict(client)
        assert any("unreachable" in w for w in body["warnings"])
        metrics = client.get("/metrics").text
    assert 'cxr_gradcam_failures_total{reason="unreachable"} 1.0' in metrics


def test_predict_sidecar_slow_times_out_with_warning(model_dir: Path, silent_sidecar: str) -> None:
    settings = make_settings(model_dir, gradcam_url=silent_sidecar, gradcam_timeout_s=0.3)
    with TestClient(create_app(settings)) as client:
        body = predict(client)
        assert any("did not answer within 0.3 s" in w for w in body["warnings"])
        assert body["timings_ms"]["total"] < 3000


def test_predict_sidecar_wrong_answer_returns_warning(model_dir: Path, wrong_sidecar: str) -> None:
    with TestClient(create_app(make_settings(model_dir, gradcam_url=wrong_sidecar))) as client:
        body = predict(client)
        assert any("invalid response" in w for w in body["warnings"]), body["warnings"]
