"""Fixtures for the integration tests."""

from tests.serving import model_dir  # noqa: F401  (fixture)
