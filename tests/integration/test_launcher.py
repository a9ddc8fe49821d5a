"""`python -m app.api` as the image runs it: several worker processes that answer as one service."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.serving import FIXTURE_JPEGS, REPO, free_port, serving_env, stop, wait_healthy

WORKERS = 2
BATCH = 8


def _predict(url: str) -> int:
    with httpx.Client(timeout=30) as client:
        data = FIXTURE_JPEGS[0].read_bytes()
        return client.post(url + "/predict", params={"gradcam": "false"}, files={"file": ("a.jpeg", data)}).status_code


def _serving_pids(log: Path) -> set[int]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return {line["pid"] for line in lines if line.get("route") == "/predict"}


def _predictions(metrics_text: str) -> float:
    return sum(float(v) for v in re.findall(r"^cxr_predictions_total\{[^}]*\} (\S+)$", metrics_text, re.M))


def test_workers_share_metrics_and_stop_cleanly_on_sigterm(model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = serving_env(CXR_MODEL_DIR=str(model_dir), CXR_GRADCAM_URL="http://127.0.0.1:9", CXR_WORKERS=str(WORKERS),
                      CXR_HOST="127.0.0.1", CXR_PORT=str(port), PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    log = tmp_path / "api.log"
    api = subprocess.Popen([sys.executable, "-m", "app.api"], cwd=REPO, env=env, stdout=open(log, "wb"),
                           stderr=subprocess.STDOUT)
    try:
        wait_healthy(url + "/health/ready", api)
        sent = 0
        while len(_serving_pids(log)) < WORKERS:  # until both workers have answered some
            assert sent < 20 * BATCH, "one worker took every connection"
            with ThreadPoolExecutor(BATCH) as pool:  # concurrent new connections: both workers accept some
                statuses = list(pool.map(lambda _: _predict(url), range(BATCH)))
            assert statuses == [200] * BATCH
            sent += BATCH
        # Whichever worker answers /metrics, it counts the predictions of both.
        for _ in range(6):
            with httpx.Client(timeout=10) as client:
                assert _predictions(client.get(url + "/metrics").text) == sent

        api.send_signal(signal.SIGTERM)
        assert api.wait(timeout=30) in (0, -signal.SIGTERM)
    finally:
        stop(api)
    # One log format for everything the process writes, the HTTP server's own lines included.
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    server = [line for line in lines if line["logger"].startswith("_granian")]
    assert any("worker" in line["message"].lower() for line in server)
