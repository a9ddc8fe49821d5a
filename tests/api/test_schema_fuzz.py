"""Schema-based fuzzing of the real API (schemathesis, from the app's own OpenAPI document).

The app runs in-process on the real model (lifespan started, so the model is loaded);
the Grad-CAM sidecar URL points at a closed localhost port. Every operation of the
schema gets generated requests (valid and invalid); none may answer 5xx, and every
response must match the schema. The `slow` variant tries more cases.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from app.api.main import create_app
from tests.api.conftest import make_settings
from tests.conftest import REPO

CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
CALLS: Counter[str] = Counter()
STATUSES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def api(model_dir: Path) -> Iterator[object]:
    app = create_app(make_settings(model_dir, gradcam_timeout_s=0.2))
    with TestClient(app):  # runs the lifespan: the model is loaded
        yield app
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    path = out / "fuzz_counts.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous["api_schema"] = {"requests_by_operation": dict(CALLS), "total": sum(CALLS.values()),
                             "statuses": dict(STATUSES)}
    path.write_text(json.dumps(previous, indent=2))


def _fuzz_one(operation: Any, mode: GenerationMode, max_examples: int, derandomize: bool) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=max_examples, deadline=None, derandomize=derandomize, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: schemathesis.Case) -> None:
        CALLS[f"{operation.label} ({mode.value})"] += 1
        response = case.call_and_validate(checks=CHECKS)
        STATUSES[f"{operation.label} {response.status_code}"] += 1

    try:
        run()
    except Unsatisfiable:  # no invalid request exists for an operation without inputs
        assert mode is GenerationMode.NEGATIVE


def _fuzz(app: object, max_examples: int, derandomize: bool) -> None:
    """Every operation of the app's schema, `max_examples` valid and as many invalid cases each."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6, [op.label for op in operations]
    for operation, mode in itertools.product(operations, GenerationMode):
        _fuzz_one(operation, mode, max_examples, derandomize)


def test_api_schema_fuzz(api: object) -> None:
    _fuzz(api, max_examples=20, derandomize=True)


@pytest.mark.slow
def test_api_schema_fuzz_long(api: object) -> None:
    _fuzz(api, max_examples=100, derandomize=False)
