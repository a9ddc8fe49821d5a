"""Fixtures for the sidecar tests: the real sidecar app on the real Keras model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.sidecar.config import SidecarSettings
from app.sidecar.main import create_app
from tests.serving import model_dir  # noqa: F401  (fixture)


@pytest.fixture(scope="module")
def sidecar(model_dir: Path) -> Iterator[TestClient]:  # noqa: F811
    with TestClient(create_app(SidecarSettings(model_dir=model_dir))) as client:
        yield client
