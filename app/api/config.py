"""API configuration: every knob is an environment variable with the `CXR_` prefix.

Validators refuse unsafe values at start-up (a short API key, a CORS wildcard, a path
or credentials in an origin) instead of serving with them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.api.compute import usable_cores
from app.imaging.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

MIN_API_KEY_LENGTH = 16


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CXR_", protected_namespaces=(), extra="ignore")

    model_dir: Path = Path("models")
    gradcam_url: str = "http://127.0.0.1:8001"
    gradcam_timeout_s: float = Field(2.0, gt=0)
    max_upload_bytes: int = Field(DEFAULT_MAX_BYTES, gt=0)
    max_image_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0)
    # Most files in one POST /predict/batch (the body size limit applies to the whole request).
    batch_max_files: int = Field(32, gt=0)
    # API worker processes started by `python -m app.api` (granian); 0 = one per usable core.
    # Several processes do not share one GIL or one event loop.
    workers: int = Field(0, ge=0, le=64)
    # Threads per process for the CPU work of requests (decode, preprocessing, inference); 0 = twice
    # the process's share of the cores (at most all of them). Keep-alive connections are not spread evenly
    # between workers (4 of 16 and 12 of 16 under granian here): a worker held to its share would idle cores.
    compute_threads: int = Field(0, ge=0, le=256)
    # Intra-op threads of onnxruntime and OpenCV per call; 0 = one per core. Requests run side by side
    # in the compute pool, so each call on one thread wastes nothing on hand-offs under load.
    ort_threads: int = Field(1, ge=0)
    # Intra-op threads of onnxruntime for a call made while nothing else runs in the process's compute
    # pool (a lone request), from a second session; 0 = the usable cores. No second session when it is not
    # more than ort_threads, or ort_threads is 0. At concurrency 1 the ONNX call then uses idle cores.
    ort_threads_alone: int = Field(0, ge=0)
    opencv_threads: int = Field(1, ge=0)
    host: str = "127.0.0.1"
    port: int = 8000

    # --- access ---
    # When set, every route but /health* needs `Authorization: Bearer <key>` or `X-API-Key: <key>`.
    api_key: SecretStr | None = None
    # Origins allowed to call the API from a browser (comma-separated); empty = no CORS headers at all.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # --- back-pressure ---
    # Requests in flight (health checks excluded); beyond it: 503 with Retry-After at once.
    max_in_flight: int = Field(64, ge=1, le=10_000)
    retry_after_s: int = Field(1, ge=1, le=3600)

    # --- Grad-CAM circuit breaker ---
    # Consecutive sidecar failures that open the breaker; 0 disables it (always wait for the sidecar).
    gradcam_breaker_failures: int = Field(3, ge=0, le=1000)
    # How long an open breaker skips the sidecar before one request probes it again.
    gradcam_breaker_open_s: float = Field(15.0, gt=0, le=3600)

    # FastAPI's native OpenTelemetry (spans and metrics through the global providers). Off by default:
    # this service exports Prometheus metrics and JSON logs, and the per-request provider check alone
    # took ~3% of the event loop's time per /predict.
    otel: bool = False

    # --- logs ---
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"

    @field_validator("api_key", mode="before")
    @classmethod
    def _api_key(cls, value: object) -> object:
        if value is None or (isinstance(value, str) and value == ""):
            return None  # CXR_API_KEY= (empty) means no key, not an empty key
        text = value.get_secret_value() if isinstance(value, SecretStr) else str(value)
        if len(text) < MIN_API_KEY_LENGTH or text != text.strip() or not text.isprintable():
            raise ValueError(f"api_key must be at least {MIN_API_KEY_LENGTH} printable characters, no outer spaces")
        return text

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, origins: list[str]) -> list[str]:
        for origin in origins:
            if origin == "*" or "*" in origin:
                raise ValueError("cors_origins: wildcards are refused; list each origin")
            parts = urlsplit(origin)
            if parts.scheme not in ("http", "https") or not parts.hostname or parts.username or parts.password \
                    or parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"cors_origins: {origin!r} is not an origin like https://host[:port]")
        return [origin.rstrip("/") for origin in origins]

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @property
    def worker_count(self) -> int:
        return self.workers or usable_cores()

    @property
    def compute_pool_size(self) -> int:
        cores = usable_cores()
        return self.compute_threads or min(cores, 2 * math.ceil(cores / self.worker_count))

    @property
    def alone_ort_threads(self) -> int:
        """`ort_threads_alone` with 0 read as the usable cores (the cgroup quota included; onnxruntime's own
        0 would count every core of the host)."""
        return self.ort_threads_alone or usable_cores()

    @property
    def log_level_number(self) -> int:
        return logging.getLevelName(self.log_level)
