"""Access control: the optional API key, and CORS (closed unless origins are configured)."""

from __future__ import annotations

import hashlib
import hmac
import json

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Load balancers and orchestrators probe these without credentials.
OPEN_PATHS = frozenset({"/health", "/health/live", "/health/ready"})


def _digest(value: bytes) -> bytes:
    # Comparing fixed-length digests keeps the comparison constant-time whatever the lengths.
    return hashlib.sha256(value).digest()


def presented_key(headers: list[tuple[bytes, bytes]]) -> bytes | None:
    """The key from `Authorization: Bearer <key>` or `X-API-Key: <key>`, if any."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.strip()
    return None


class ApiKeyMiddleware:
    """401 for every HTTP request but the health checks unless it carries the key."""

    def __init__(self, app: ASGIApp, api_key: str, open_paths: frozenset[str] = OPEN_PATHS) -> None:
        self.app = app
        self._expected = _digest(api_key.encode())
        self.open_paths = open_paths

    def authorized(self, scope: Scope) -> bool:
        key = presented_key(scope.get("headers", []))
        # Always one digest comparison, key or not, so timing says nothing about what was sent.
        return hmac.compare_digest(_digest(key or b""), self._expected) and key is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.open_paths or self.authorized(scope):
            await self.app(scope, receive, send)
            return
        body = json.dumps({"detail": "missing or invalid API key", "error": "unauthorized"}).encode()
        await send({"type": "http.response.start", "status": 401, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Bearer realm="cxr"')]})
        await send({"type": "http.response.body", "body": body})


def add_cors(app: FastAPI, origins: list[str]) -> None:
    """CORS only for the listed origins; with none, no CORS headers (browsers refuse cross-origin calls)."""
    if not origins:
        return
    app.add_middleware(
        CORSMiddleware, allow_origins=origins, allow_credentials=False, allow_methods=["GET", "POST"],
        allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"],
        expose_headers=["X-Request-ID", "Retry-After"], max_age=600,
    )
