"""The API app: `uvicorn app.api.main:app`, or `create_app(Settings(...))` in tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.api.config import Settings
from app.api.errors import PROTECTED_RESPONSES, install_error_handlers
from app.api.middleware.access import AccessMiddleware
from app.api.middleware.backpressure import InFlightLimitMiddleware
from app.api.middleware.body_limit import (
    MULTIPART_OVERHEAD,
    BodySizeLimitMiddleware,
    BodyTooLargeError,
    too_large_detail,
)
from app.api.middleware.request_log import configure_logging
from app.api.middleware.security import ApiKeyMiddleware, add_cors
from app.api.middleware.telemetry import Metrics
from app.api.routes import batch, health, metrics, model, predict, web
from app.api.state import ServiceState
from app.gradcam.circuit_breaker import CircuitBreaker
from app.gradcam.client import GradcamClient
from app.imaging.errors import ImageError


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    configure_logging(settings.log_level_number, settings.log_format)
    state = ServiceState(settings=settings, metrics=Metrics())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.load)
        breaker = CircuitBreaker(settings.gradcam_breaker_failures, settings.gradcam_breaker_open_s)
        state.gradcam = GradcamClient(settings.gradcam_url, settings.gradcam_timeout_s, breaker)
        try:
            yield
        finally:
            await state.gradcam.aclose()
            await run_in_threadpool(state.close)

    app = FastAPI(
        title="Chest X-ray pneumonia classifier",
        description="PNEUMONIA vs NORMAL with a Grad-CAM explanation. Decision support at most.",
        version="1.0.0",
        lifespan=lifespan,
        telemetry={"tracing": settings.otel, "metrics": settings.otel, "logs": settings.otel},
    )
    app.state.service = state
    app.include_router(health.router)  # open: orchestrators probe it without credentials
    for module in (predict, batch, model, metrics, web):
        app.include_router(module.router, responses=PROTECTED_RESPONSES)

    @app.exception_handler(ImageError)
    async def image_error(request: Request, exc: ImageError) -> JSONResponse:
        state.metrics.rejected_inputs.labels(str(exc.status_code)).inc()
        return JSONResponse(status_code=exc.status_code, content={"detail": str(exc), "error": type(exc).__name__})

    @app.exception_handler(BodyTooLargeError)
    async def body_too_large(request: Request, exc: BodyTooLargeError) -> JSONResponse:
        state.metrics.rejected_inputs.labels("413").inc()
        return JSONResponse(status_code=413, content={"detail": too_large_detail(settings.max_upload_bytes)},
                            headers={"Connection": "close"})

    install_error_handlers(app)

    # Added last = outermost. From the outside in: request id, log line and metrics (they see every
    # answer, the early 401/413/503s included), CORS, API key, in-flight bound, body size limit.
    app.add_middleware(BodySizeLimitMiddleware, max_body_bytes=settings.max_upload_bytes + MULTIPART_OVERHEAD,
                       upload_limit=settings.max_upload_bytes)
    app.add_middleware(InFlightLimitMiddleware, limit=settings.max_in_flight, retry_after_s=settings.retry_after_s)
    if settings.api_key is not None:
        app.add_middleware(ApiKeyMiddleware, api_key=settings.api_key.get_secret_value())
    add_cors(app, settings.cors_origins)
    app.add_middleware(AccessMiddleware, metrics=state.metrics,
                       model_version=lambda: state.engine.card.version if state.engine is not None else None)
    return app


app = create_app()
