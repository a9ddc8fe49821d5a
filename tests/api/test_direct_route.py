"""DirectRoute: the endpoint gets the Request itself; FastAPI keeps routing, errors and the schema."""

from __future__ import annotations

import pytest
from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.testclient import TestClient

from app.api.direct_route import DirectRoute


def _app() -> FastAPI:
    router = APIRouter(route_class=DirectRoute)

    @router.post("/echo", responses={418: {"description": "a teapot"}},
                 openapi_extra={"parameters": [{"name": "n", "in": "query", "schema": {"type": "integer"}}]})
    async def echo(request: Request) -> Response:
        if request.query_params.get("n") == "418":
            raise HTTPException(status_code=418, detail="teapot")
        return JSONResponse({"body": (await request.body()).decode(), "n": request.query_params.get("n")})

    app = FastAPI()
    app.include_router(router)
    return app


def test_endpoint_reads_the_request_and_errors_go_through_fastapi() -> None:
    client = TestClient(_app())
    assert client.post("/echo?n=3", content=b"hello").json() == {"body": "hello", "n": "3"}
    teapot = client.post("/echo?n=418")
    assert teapot.status_code == 418 and teapot.json() == {"detail": "teapot"}
    assert client.get("/echo").status_code == 405


def test_schema_keeps_responses_and_openapi_extra() -> None:
    operation = _app().openapi()["paths"]["/echo"]["post"]
    assert "418" in operation["responses"]
    assert [p["name"] for p in operation["parameters"]] == ["n"]


def test_endpoints_with_declared_parameters_are_refused() -> None:
    router = APIRouter(route_class=DirectRoute)

    async def takes_a_query(request: Request, n: int = 0) -> Response:
        return Response()

    def not_async(request: Request) -> Response:
        return Response()

    for endpoint in (takes_a_query, not_async):
        with pytest.raises(TypeError, match="DirectRoute"):
            router.add_api_route("/x", endpoint, methods=["GET"])
