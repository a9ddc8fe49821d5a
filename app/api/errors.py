"""Error answers: one body shape (`ErrorBody`), the exception handlers that make it, and the
`responses=` declarations that put it in the OpenAPI document.

No stack traces, file paths or library messages reach a client; details go to the log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

log = logging.getLogger("cxr.api")


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer of this API (handlers here, `security`, `backpressure`, `body_limit`)."""

    detail: str = Field(description="what went wrong, in a sentence")
    error: str | None = Field(None, description="a short machine label")
    errors: list[dict[str, Any]] | None = Field(
        None, description="for invalid requests: where (loc) and what kind (type) of each problem")


def error_responses(**descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: `error_responses(e413="upload too large")` -> {413: ErrorBody, described}."""
    return {int(code.removeprefix("e")): {"model": ErrorBody, "description": text}
            for code, text in descriptions.items()}


# What every route behind the optional API key and the in-flight bound can answer.
PROTECTED_RESPONSES = error_responses(
    e401="missing or invalid API key (when CXR_API_KEY is set)",
    e503="busy (too many requests in flight; see Retry-After), or the model is not loaded",
)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and what kind, never the input (it can be large or sensitive) or library context.
        errors = [{"loc": [str(part) for part in error.get("loc", ())], "type": str(error.get("type", ""))}
                  for error in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": "invalid request", "errors": errors})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc, extra={"fields": {
            "request_id": request.headers.get("x-request-id")}})
        return JSONResponse(status_code=500, content={"detail": "internal error", "error": "internal"})
