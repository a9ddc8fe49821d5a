"""Query options that a route reads itself, validated and documented from one pydantic model.

FastAPI validates each declared query parameter through its generic dependency solver.
For the three options of /predict that cost ~100 us of event-loop CPU per request,
measured in process: about a sixth of what the app spends on the loop per request
(benchmarks/README.md). `parse_query` validates them in one pydantic call instead, by
the rules FastAPI applies (pydantic's: `true/false/1/0/yes/no/on/off` for booleans, enum
values, the last of repeated keys, unknown keys ignored), and a bad value is the same 422.
`query_parameters` documents them in the OpenAPI schema as if they were declared.
"""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, TypeAdapter, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_query(model: type[M], request: Request) -> M:
    """The request's query string as `model`; RequestValidationError (422) for a bad value."""
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError([{**error, "loc": ("query", *error["loc"])} for error in errors]) from None


def query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """OpenAPI `parameters` for the fields of `model`, for a route's `openapi_extra`."""
    parameters = []
    for name, field in model.model_fields.items():
        adapter = TypeAdapter(field.annotation)
        schema = adapter.json_schema()
        if not field.is_required():
            schema["default"] = adapter.dump_python(field.get_default(), mode="json")
        parameters.append({"name": name, "in": "query", "required": field.is_required(),
                           "description": field.description or "", "schema": schema})
    return parameters
