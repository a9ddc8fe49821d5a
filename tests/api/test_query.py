"""`parse_query` must accept and refuse exactly what FastAPI does for declared query parameters."""

from __future__ import annotations

from typing import Annotated

import pytest
from fastapi import FastAPI, Query, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel, Field

from app.api.query import parse_query, query_parameters
from app.imaging.overlay import OverlayFormat


class Options(BaseModel):
    flag: bool = Field(True, description="a flag")
    kind: OverlayFormat = Field(OverlayFormat.JPEG, description="an enum")


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/declared")
    def declared(flag: Annotated[bool, Query()] = True,
                 kind: Annotated[OverlayFormat, Query()] = OverlayFormat.JPEG) -> dict:
        return {"flag": flag, "kind": kind.value}

    @app.get("/parsed", openapi_extra={"parameters": query_parameters(Options)})
    def parsed(request: Request) -> dict:
        options = parse_query(Options, request)
        return {"flag": options.flag, "kind": options.kind.value}

    return app


CLIENT = TestClient(_app())
QUERIES = [
    "", "flag=true", "flag=false", "flag=1", "flag=0", "flag=yes", "flag=no", "flag=on", "flag=off", "flag=TRUE",
    "flag=False", "flag=maybe", "flag=", "flag=2", "kind=png", "kind=jpeg", "kind=PNG", "kind=gif", "kind=",
    "flag=false&flag=true", "flag=true&flag=false", "other=1", "flag=off&kind=png", "flag=%20true",
]


@pytest.mark.parametrize("query", QUERIES)
def test_parse_query_answers_as_fastapi_does(query: str) -> None:
    declared = CLIENT.get(f"/declared?{query}")
    parsed = CLIENT.get(f"/parsed?{query}")
    assert parsed.status_code == declared.status_code
    if declared.status_code == 200:
        assert parsed.json() == declared.json()
    else:
        assert [e["loc"] for e in parsed.json()["detail"]] == [e["loc"] for e in declared.json()["detail"]]


def test_query_parameters_document_what_fastapi_documents() -> None:
    paths = CLIENT.app.openapi()["paths"]
    declared = {p["name"]: p for p in paths["/declared"]["get"]["parameters"]}
    parsed = {p["name"]: p for p in paths["/parsed"]["get"]["parameters"]}
    assert declared.keys() == parsed.keys() == {"flag", "kind"}
    for name in declared:
        assert parsed[name]["in"] == "query" and parsed[name]["required"] is declared[name]["required"] is False
        assert parsed[name]["schema"]["default"] == declared[name]["schema"]["default"]
    assert parsed["flag"]["schema"]["type"] == "boolean"
    assert parsed["kind"]["schema"]["enum"] == [f.value for f in OverlayFormat]
