"""Fixtures for the sidecar tests."""

from tests.serving import model_dir  # noqa: F401  (fixture)
