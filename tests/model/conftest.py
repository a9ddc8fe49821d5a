"""Fixtures for the model package tests: the shipped model (or the tiny one when it is absent)."""

from tests.serving import model_dir  # noqa: F401  (fixture)
