"""Exception handlers: every error body is a short message of ours.

No stack traces, file paths or library messages reach a client; details go to the log.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

log = logging.getLogger("cxr.api")


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
