"""Helpers and fixtures shared by the serving tests (api, sidecar, integration).

Imported by those folders' conftest.py files. `model_dir` prefers the shipped model in
models/ and falls back to the tiny model trained by the session fixture; set
CXR_TEST_MODEL=tiny to force the tiny one, or CXR_TEST_MODEL_DIR to use a given folder.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import FIXTURES, REPO, SHIPPED_MODEL, VAL16

FULLRES_FILES = sorted(VAL16.glob("*/*.jpeg")) if VAL16.is_dir() else []
FIXTURE_JPEGS = [FIXTURES / "normal_small.jpeg", FIXTURES / "pneumonia_small.jpeg"]
PNG16 = FIXTURES / "xray_16bit.png"
PNG_RGBA = FIXTURES / "xray_rgba.png"


@pytest.fixture(scope="session")
def model_dir(request: pytest.FixtureRequest) -> Path:
    if os.environ.get("CXR_TEST_MODEL_DIR"):  # a model folder built beforehand (quick local runs)
        return Path(os.environ["CXR_TEST_MODEL_DIR"])
    if os.environ.get("CXR_TEST_MODEL") != "tiny" and (SHIPPED_MODEL / "model_card.json").is_file():
        return SHIPPED_MODEL
    return request.getfixturevalue("tiny_model_dir")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares width x height (a decompression bomb's header) with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(b"\x00" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + idat + chunk(b"IEND", b"")


def serving_env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    env.setdefault("KERAS_HOME", str(REPO / ".keras-home"))
    env.update(extra)
    return env


def start_api(port: int, env: dict[str, str], log: Path, workers: int = 1) -> subprocess.Popen:
    """The API as the image runs it (`python -m app.api`, granian), on 127.0.0.1:`port`."""
    env = {**env, "CXR_HOST": "127.0.0.1", "CXR_PORT": str(port), "CXR_WORKERS": str(workers)}
    return subprocess.Popen([sys.executable, "-m", "app.api"], cwd=REPO, env=env, stdout=open(log, "wb"),
                            stderr=subprocess.STDOUT)


def start_uvicorn(app: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
               "--log-level", "warning"]
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def wait_healthy(url: str, process: subprocess.Popen | None = None, timeout_s: float = 90.0) -> dict:
    """Poll `url` until it answers 200; fail early if `process` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before {url} was healthy")
        try:
            response = httpx.get(url, timeout=1.0)
            if response.status_code == 200:
                return response.json()
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


def stop(process: subprocess.Popen, timeout_s: float = 15.0) -> int:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@dataclass
class Services:
    """The API (`python -m app.api`) and the sidecar (uvicorn) running on free localhost ports."""

    api_url: str
    sidecar_url: str
    api: subprocess.Popen
    sidecar: subprocess.Popen
    logs: Path


@contextmanager
def running_services(
    model_dir: Path, logs: Path, gradcam_timeout_s: float, sidecar_ready_s: float = 90.0
) -> Iterator[Services]:
    """Start both services, wait until they are healthy, stop both on exit."""
    sidecar_port, api_port = free_port(), free_port()
    env = serving_env(CXR_MODEL_DIR=str(model_dir), CXR_GRADCAM_URL=f"http://127.0.0.1:{sidecar_port}",
                      CXR_GRADCAM_TIMEOUT_S=str(gradcam_timeout_s))
    sidecar = start_uvicorn("app.sidecar.main:app", sidecar_port, env, logs / "sidecar.log")
    api = start_api(api_port, env, logs / "api.log")
    found = Services(f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{sidecar_port}", api, sidecar, logs)
    try:
        wait_healthy(found.api_url + "/health/ready", api)
        wait_healthy(found.sidecar_url + "/health", sidecar, timeout_s=sidecar_ready_s)
        yield found
    finally:
        stop(api)
        stop(sidecar)
