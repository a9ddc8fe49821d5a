"""Sidecar configuration (`CXR_` environment variables)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SidecarSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXR_", protected_namespaces=(), extra="ignore")

    model_dir: Path = Path("models")
    sidecar_host: str = "127.0.0.1"
    sidecar_port: int = 8001
    # 0 lets TensorFlow pick.
    tf_threads: int = Field(0, ge=0)
