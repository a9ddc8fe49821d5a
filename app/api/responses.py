"""Answering with a pydantic model serialized once.

A route that returns the model object has it validated again by FastAPI against the
`response_model`, turned into Python objects, then dumped by `json.dumps`; returning this
Response skips to pydantic's own JSON encoder (the route keeps `response_model` for the
OpenAPI schema, and the tests check answers against it).
"""

from __future__ import annotations

from fastapi.responses import Response
from pydantic import BaseModel


def json_response(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")
