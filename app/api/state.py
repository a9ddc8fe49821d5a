"""What the API holds between requests: settings, the loaded model, the sidecar client, metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, HTTPException, Request

from app.api.compute import ComputePool
from app.api.config import Settings
from app.api.middleware.telemetry import Metrics
from app.gradcam.client import GradcamClient
from app.model.engine import InferenceEngine

log = logging.getLogger("cxr.api")
T = TypeVar("T")


@dataclass
class ServiceState:
    settings: Settings
    metrics: Metrics
    engine: InferenceEngine | None = None
    load_error: str | None = None
    gradcam: GradcamClient | None = field(default=None)
    compute: ComputePool | None = field(default=None)

    def load(self) -> None:
        """Start the compute pool, load and warm the model; on failure keep serving 503s with the reason."""
        import cv2

        cv2.setNumThreads(self.settings.opencv_threads or -1)  # OpenCV's own pool (-1: its default)
        self.compute = self.compute or ComputePool(self.settings.compute_pool_size)
        try:
            engine = InferenceEngine(self.settings.model_dir, self.settings.ort_threads,
                                     self.settings.alone_ort_threads)
            engine.warm_up()
        except Exception as exc:  # any failure here must leave the service up and saying why
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model not loaded from %s: %s", self.settings.model_dir, self.load_error)
            return
        self.engine = engine
        self.load_error = None
        log.info("model %s loaded from %s", engine.card.version, self.settings.model_dir)

    @property
    def public_load_status(self) -> str:
        """Why there is no model, for clients: a category, never the exception text (paths, library messages)."""
        if not self.load_error:
            return "model is loading"
        if self.load_error.startswith("FileNotFoundError"):
            return "model_card.json or a model file is missing; see the service log"
        if self.load_error.startswith("ModelIntegrityError"):
            return "a model file's sha256 does not match the model card; see the service log"
        return "the model could not be loaded; see the service log"

    @property
    def compute_idle(self) -> bool:
        """Nothing runs in this process's compute pool: the next call may use every core."""
        return self.compute is not None and self.compute.idle

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking work (decoding, onnxruntime, drawing) in this process's compute pool."""
        assert self.compute is not None, "the compute pool starts with the app (lifespan)"
        return await self.compute.run(function, *args)

    def close(self) -> None:
        if self.compute is not None:
            self.compute.shutdown()
            self.compute = None

    def require_engine(self) -> InferenceEngine:
        if self.engine is None:
            raise HTTPException(status_code=503, detail=f"model not loaded: {self.public_load_status}")
        return self.engine


async def get_state(request: Request) -> ServiceState:
    """The app's state, for routes that declare `state: State`."""
    # `async def` on purpose: FastAPI runs a plain `def` dependency in its threadpool, a thread
    # hand-off on every request (~6% of the event loop's time per /predict in a py-spy profile).
    state: ServiceState = request.app.state.service
    return state


State = Annotated[ServiceState, Depends(get_state)]
