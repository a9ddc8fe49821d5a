"""API configuration: every knob is an environment variable with the `CXR_` prefix."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.imaging.decode import DEFAULT_MAX_PIXELS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXR_", protected_namespaces=(), extra="ignore")

    model_dir: Path = Path("models")
    gradcam_url: str = "http://127.0.0.1:8001"
    gradcam_timeout_s: float = Field(2.0, gt=0)
    max_upload_bytes: int = Field(20 * 1024 * 1024, gt=0)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    # Most files in one POST /predict/batch (the body size limit applies to the whole request).
    batch_max_files: int = Field(32, gt=0)
    # 0 lets onnxruntime pick (one thread per physical core).
    ort_threads: int = Field(0, ge=0)
    host: str = "127.0.0.1"
    port: int = 8000
