"""Back-pressure and graceful shutdown of a real API process (`python -m app.api`) over HTTP.

The sidecar is a socket that accepts and never answers, so each /predict with Grad-CAM
stays in flight for the Grad-CAM deadline: long enough to fill the in-flight bound and
to send SIGTERM while requests are running.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.serving import FIXTURE_JPEGS, free_port, serving_env, start_api, stop, wait_healthy

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
DEADLINE_S = 2.5


@pytest.fixture()
def silent_sidecar() -> Iterator[int]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def _predict(url: str, results: list, **params: str) -> None:
    path = FIXTURE_JPEGS[0]
    try:
        response = httpx.post(url + "/predict", params=params, files={"file": (path.name, path.read_bytes())},
                              timeout=30)
        results.append(response)
    except httpx.HTTPError as exc:
        results.append(exc)


def test_in_flight_bound_then_sigterm_finishes_running_requests_and_refuses_new_ones(
    model_dir: Path, silent_sidecar: int, tmp_path: Path
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serving_env(CXR_MODEL_DIR=str(model_dir), CXR_GRADCAM_URL=f"http://127.0.0.1:{silent_sidecar}",
                      CXR_GRADCAM_TIMEOUT_S=str(DEADLINE_S), CXR_MAX_IN_FLIGHT="2", CXR_RETRY_AFTER_S="2",
                      CXR_GRADCAM_BREAKER_FAILURES="0")
    log = tmp_path / "api.log"
    api = start_api(port, env, log)
    try:
        wait_healthy(url + "/health/ready", api)
        held: list = []
        threads = [threading.Thread(target=_predict, args=(url, held)) for _ in range(2)]
        for thread in threads:
            thread.start()
        time.sleep(0.8)  # both are now waiting on the silent sidecar

        start = time.monotonic()
        busy = httpx.post(url + "/predict", params={"gradcam": "false"},
                          files={"file": ("a.jpeg", FIXTURE_JPEGS[0].read_bytes())}, timeout=10)
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert time.monotonic() - start < 1.0  # at once, not queued
        assert httpx.get(url + "/health/live", timeout=5).status_code == 200  # health is never refused

        api.send_signal(signal.SIGTERM)
        refused_at = time.monotonic() + 3.0
        while True:  # the listening socket closes at once
            try:
                httpx.get(url + "/health/live", timeout=1)
            except httpx.ConnectError:
                break
            assert time.monotonic() < refused_at, "new connections still accepted after SIGTERM"
            time.sleep(0.05)
        for thread in threads:
            thread.join(timeout=30)
        assert [getattr(r, "status_code", r) for r in held] == [200, 200]  # in-flight requests finished
        assert all(r.json()["gradcam_overlay"] is None for r in held)
        # A clean shutdown exits 0 (-SIGTERM where the server re-raises the signal), not a crash code.
        assert api.wait(timeout=20) in (0, -signal.SIGTERM)
    finally:
        stop(api)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    requests = [line for line in lines if line.get("message") == "request"]
    assert {(r["route"], r["status"]) for r in requests} >= {("/predict", 200), ("/predict", 503)}
    assert all(len(r["request_id"]) == 32 and r["model_version"] for r in requests)
