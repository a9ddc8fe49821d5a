"""Back-pressure: a bound on requests in flight; beyond it, 503 + Retry-After at once.

Queueing without limit only turns overload into timeouts for everyone; answering
"busy" at once lets clients and load balancers go elsewhere or retry later.
Health checks are never refused, so an overloaded instance is not declared dead.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send

from app.api.middleware.security import OPEN_PATHS


class InFlightLimitMiddleware:
    def __init__(self, app: ASGIApp, limit: int, retry_after_s: int, exempt: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.exempt = exempt
        self.in_flight = 0
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:  # one event loop: no lock needed between check and increment
            self.rejected += 1
            await self._busy(send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _busy(self, send: Send) -> None:
        body = json.dumps({"detail": "the service is busy; retry later", "error": "overloaded"}).encode()
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(self.retry_after_s).encode())]})
        await send({"type": "http.response.body", "body": body})
