"""The outermost middleware: request id, access log line and request metrics, in one pass.

It sees every answer, the early 401/413/503s of the inner middlewares included, and
wraps `send` once to learn the status, so logging and metrics share one timer.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.middleware.request_log import log_request, request_id_from
from app.api.middleware.telemetry import Metrics, route_name


class AccessMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, model_version: Callable[[], str | None]) -> None:
        self.app = app
        self.metrics = metrics
        self.model_version = model_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope.get("headers", [])) or uuid.uuid4().hex
        id_header = (b"x-request-id", request_id.encode())
        headers = [(k, v) for k, v in scope.get("headers", []) if k != b"x-request-id"]
        scope = {**scope, "headers": [*headers, id_header]}  # routes echo the same id
        status = 500
        start = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route, method = route_name(scope), scope.get("method", "")
            self.metrics.record_request(route, method, status, seconds)
            log_request({
                "request_id": request_id, "method": method, "route": route, "status": status,
                "latency_ms": round(seconds * 1000.0, 2), "model_version": self.model_version(),
            })
