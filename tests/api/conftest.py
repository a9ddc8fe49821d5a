"""Fixtures for the API tests: the real app on the real model, sidecar absent unless a test brings one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.config import Settings
from app.api.main import create_app
from tests.serving import free_port, model_dir  # noqa: F401  (fixture)


def make_settings(folder: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "model_dir": folder, "gradcam_url": f"http://127.0.0.1:{free_port()}", "gradcam_timeout_s": 1.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture(scope="module")
def client(model_dir: Path) -> Iterator[TestClient]:  # noqa: F811
    """The API with nothing listening at its sidecar URL."""
    with TestClient(create_app(make_settings(model_dir))) as test_client:
        yield test_client
