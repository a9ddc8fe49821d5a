"""Access, back-pressure, circuit breaker, request ids, logs and error bodies of the API (issue 6)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from app.api.config import Settings
from app.api.main import create_app
from app.api.middleware.backpressure import InFlightLimitMiddleware
from app.api.middleware.request_log import ACCESS_LOGGER, JsonFormatter
from tests.api.conftest import make_settings
from tests.serving import FIXTURE_JPEGS

KEY = "k" * 20 + "-secret-0123"


def _post(client: TestClient, **kwargs: object) -> httpx.Response:
    path = FIXTURE_JPEGS[0]
    return client.post("/predict?gradcam=false", files={"file": ("jane_doe_1970.jpeg", path.read_bytes())},
                       **kwargs)


# --- settings ---

@pytest.mark.parametrize("overrides", [
    {"api_key": "short"}, {"api_key": " " + KEY}, {"cors_origins": "*"}, {"cors_origins": "https://a.example/path"},
    {"cors_origins": "ftp://a.example"}, {"cors_origins": "https://user:pw@a.example"}, {"max_in_flight": 0},
    {"gradcam_breaker_failures": -1}, {"gradcam_breaker_open_s": 0}, {"log_format": "xml"}, {"log_level": "LOUD"},
])
def test_settings_refuse_unsafe_values(overrides: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Settings(**overrides)


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CXR_API_KEY", KEY)
    monkeypatch.setenv("CXR_CORS_ORIGINS", "https://a.example, http://127.0.0.1:3000/")
    monkeypatch.setenv("CXR_GRADCAM_BREAKER_FAILURES", "0")
    settings = Settings()
    assert settings.api_key is not None and settings.api_key.get_secret_value() == KEY
    assert KEY not in repr(settings)
    assert settings.cors_origins == ["https://a.example", "http://127.0.0.1:3000"]
    assert settings.gradcam_breaker_failures == 0
    monkeypatch.setenv("CXR_API_KEY", "")
    assert Settings().api_key is None


# --- API key, CORS ---

@pytest.fixture(scope="module")
def keyed(model_dir: Path) -> Iterator[TestClient]:
    with TestClient(create_app(make_settings(model_dir, api_key=KEY))) as client:
        yield client


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong-key-wrong-key"}, {"X-API-Key": KEY[:-1]},
                                     {"Authorization": KEY}, {"Authorization": "Basic " + KEY}])
@pytest.mark.parametrize("route", ["/model", "/metrics", "/openapi.json", "/"])
def test_api_key_required_everywhere_but_health(keyed: TestClient, route: str, headers: dict[str, str]) -> None:
    response = keyed.get(route, headers=headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "missing or invalid API key", "error": "unauthorized"}
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_api_key_accepted_as_bearer_or_header(keyed: TestClient) -> None:
    assert _post(keyed).status_code == 401
    assert _post(keyed, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert _post(keyed, headers={"X-API-Key": KEY}).status_code == 200
    assert keyed.get("/model", headers={"authorization": f"bearer {KEY}"}).status_code == 200
    for route in ("/health", "/health/live", "/health/ready"):
        assert keyed.get(route).status_code == 200


def test_cors_closed_by_default(client: TestClient) -> None:
    preflight = client.options("/predict", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in client.get("/health/live", headers={"Origin": "https://x"}).headers


def test_cors_allows_configured_origin_only(model_dir: Path) -> None:
    settings = make_settings(model_dir, cors_origins=["https://viewer.example"], api_key=KEY)
    with TestClient(create_app(settings)) as client:
        ok = client.options("/predict", headers={"Origin": "https://viewer.example",
                                                 "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "authorization"})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == "https://viewer.example"
        other = client.options("/predict", headers={"Origin": "https://evil.example",
                                                    "Access-Control-Request-Method": "POST"})
        assert other.headers.get("access-control-allow-origin") != "https://evil.example"


# --- back-pressure ---

def test_in_flight_bound_answers_503_with_retry_after_at_once() -> None:
    release = asyncio.Event()

    async def slow_app(scope: dict, receive: object, send: object) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    limited = InFlightLimitMiddleware(slow_app, limit=2, retry_after_s=3)

    async def scenario() -> None:
        transport = httpx.ASGITransport(app=limited)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            held = [asyncio.create_task(http.get("/predict")) for _ in range(2)]
            await asyncio.sleep(0.05)
            assert limited.in_flight == 2
            busy = await asyncio.wait_for(http.get("/predict"), timeout=1.0)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "3"
            assert busy.json()["error"] == "overloaded"
            release.set()
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            assert limited.in_flight == 0
            assert (await http.get("/predict")).status_code == 200
            assert limited.rejected == 1

    asyncio.run(scenario())


def test_predict_skips_sidecar_while_breaker_open(model_dir: Path) -> None:
    settings = make_settings(model_dir, gradcam_breaker_failures=2, gradcam_breaker_open_s=60)
    with TestClient(create_app(settings)) as client:
        path = FIXTURE_JPEGS[1]
        bodies = [client.post("/predict", files={"file": (path.name, path.read_bytes())}).json() for _ in range(4)]
        metrics = client.get("/metrics").text
    assert all(b["gradcam_overlay"] is None for b in bodies)
    assert all("unreachable" in b["warnings"][-1] for b in bodies[:2])
    assert all("failed 2 times in a row" in b["warnings"][-1] for b in bodies[2:])
    assert 'cxr_gradcam_failures_total{reason="circuit_open"} 2.0' in metrics


# --- request ids and logs ---

@pytest.fixture()
def access_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def test_request_id_echoed_and_logged_as_json(client: TestClient, access_log: io.StringIO) -> None:
    response = _post(client, headers={"X-Request-ID": "abc-123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc-123" and response.json()["request_id"] == "abc-123"
    generated = _post(client, headers={"X-Request-ID": "bad id\nwith newline"})
    request_id = generated.headers["x-request-id"]
    assert len(request_id) == 32 and generated.json()["request_id"] == request_id
    lines = [json.loads(line) for line in access_log.getvalue().splitlines()]
    first = lines[-2]
    assert first["request_id"] == "abc-123" and first["route"] == "/predict" and first["status"] == 200
    assert first["method"] == "POST" and first["latency_ms"] > 0 and first["model_version"]
    assert lines[-1]["request_id"] == request_id
    text = access_log.getvalue()
    assert "jane_doe" not in text and "gradcam=" not in text and "JFIF" not in text and "/9j/" not in text


def test_error_bodies_carry_no_paths_or_library_messages(tmp_path: Path, model_dir: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path / "nowhere")), raise_server_exceptions=False) as client:
        for response in (client.get("/health"), _post(client)):
            assert response.status_code == 503
            assert str(tmp_path) not in response.text and "Error" not in response.text
    app = create_app(make_settings(model_dir))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"secret at {tmp_path}/x.py line 3")

    with TestClient(app, raise_server_exceptions=False) as client:
        crashed = client.get("/boom")
        assert crashed.status_code == 500
        assert crashed.json() == {"detail": "internal error", "error": "internal"}
        invalid = client.post("/predict?gradcam=not-a-bool", files={"file": ("a.jpeg", b"secret-bytes")})
        assert invalid.status_code == 422
        assert "secret-bytes" not in invalid.text and "not-a-bool" not in invalid.text
        assert invalid.json()["errors"][0]["loc"] == ["query", "gradcam"]
