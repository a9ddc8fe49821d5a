"""The OpenAPI document says what error bodies look like, so clients (and the schema fuzzer) can rely on it.

Every 4xx/5xx answer of this API is a small JSON object with a `detail` string (see
`errors.py`, `security.py`, `backpressure.py`, `limits.py`); this adds that schema to
each documented error response, plus the 401 (API key) and 503 (busy) every protected
route can give.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from app.api.security import OPEN_PATHS

ERROR_BODY: dict[str, Any] = {
    "title": "ErrorBody",
    "type": "object",
    "required": ["detail"],
    "properties": {
        "detail": {"type": "string", "description": "what went wrong, in a sentence"},
        "error": {"type": "string", "description": "a short machine label"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "for invalid requests: where (loc) and what kind (type) of each problem"},
    },
}
_REF = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}


def document_errors(app: FastAPI) -> None:
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["ErrorBody"] = ERROR_BODY
        for path, operations in schema.get("paths", {}).items():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if path not in OPEN_PATHS:
                    responses.setdefault("401", {"description": "missing or invalid API key (when CXR_API_KEY is set)"})
                    responses.setdefault("503", {"description": "busy (too many requests in flight; see Retry-After)"})
                responses.setdefault("422", {"description": "invalid request"}) if operation.get("parameters") \
                    or operation.get("requestBody") else None
                for code, response in responses.items():
                    if code[0] in "45" and (code == "422" or "content" not in response):
                        response["content"] = _REF
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
