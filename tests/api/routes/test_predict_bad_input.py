"""Bad uploads get a JSON error with the right status, never a 500, and never harm the next request."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.api.conftest import make_settings
from tests.serving import FIXTURE_JPEGS, PNG16, png_header_only

GOOD = FIXTURE_JPEGS[0]


def post_bytes(client: TestClient, data: bytes, name: str = "x.jpeg"):
    files = {"file": (name, data, "application/octet-stream")}
    return client.post("/predict", params={"gradcam": "false"}, files=files)


def assert_error(response, status: int) -> None:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["detail"]


def test_predict_text_file_returns_415(client: TestClient) -> None:
    assert_error(post_bytes(client, b"name,label\nfilm,1\n", "x.csv"), 415)


def test_predict_gif_returns_415(client: TestClient) -> None:
    assert_error(post_bytes(client, b"GIF89a" + b"\x00" * 100, "x.gif"), 415)


def test_predict_empty_file_returns_422(client: TestClient) -> None:
    assert_error(post_bytes(client, b""), 422)


def test_predict_missing_field_returns_422(client: TestClient) -> None:
    response = client.post("/predict", files={"image": ("x.jpeg", GOOD.read_bytes(), "image/jpeg")})
    assert_error(response, 422)
    assert "file" in response.json()["detail"]


def test_predict_no_body_returns_422(client: TestClient) -> None:
    assert_error(client.post("/predict"), 422)


def test_predict_two_files_returns_400_then_serves_the_next(client: TestClient) -> None:
    data = GOOD.read_bytes()
    response = client.post("/predict", params={"gradcam": "false"},
                           files=[("file", ("a.jpeg", data, "image/jpeg")), ("file", ("b.jpeg", data, "image/jpeg"))])
    assert_error(response, 400)
    assert "/predict/batch" in response.json()["detail"]
    assert post_bytes(client, data).status_code == 200


def test_predict_truncated_multipart_returns_400(client: TestClient) -> None:
    body = b'--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.jpeg"\r\n\r\n' + GOOD.read_bytes()
    response = client.post("/predict", params={"gradcam": "false"}, content=body,
                           headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert_error(response, 400)
    assert "malformed multipart" in response.json()["detail"]


def test_predict_corrupt_jpeg_returns_422(client: TestClient) -> None:
    assert_error(post_bytes(client, b"\xff\xd8\xff\xe0" + b"\x13" * 500), 422)


def test_predict_truncated_png_returns_422(client: TestClient) -> None:
    assert_error(post_bytes(client, PNG16.read_bytes()[:200], "x.png"), 422)


def test_predict_decompression_bomb_returns_413_without_decoding(client: TestClient) -> None:
    bomb = png_header_only(60_000, 60_000)  # 3.6 Gpx declared in a few dozen bytes
    start = time.perf_counter()
    response = post_bytes(client, bomb, "bomb.png")
    assert_error(response, 413)
    assert "pixels" in response.json()["detail"]
    assert time.perf_counter() - start < 2.0


def test_predict_bad_gradcam_param_returns_422(client: TestClient) -> None:
    response = client.post("/predict", params={"gradcam": "maybe"}, files={"file": ("x.jpeg", GOOD.read_bytes())})
    assert_error(response, 422)


def test_predict_upload_over_limit_returns_413(model_dir: Path) -> None:
    settings = make_settings(model_dir, max_upload_bytes=10_000)
    with TestClient(create_app(settings)) as small:
        data = GOOD.read_bytes()
        assert len(data) > 10_000
        response = small.post("/predict", files={"file": ("x.jpeg", data, "image/jpeg")})
        assert_error(response, 413)


def test_predict_streamed_body_over_limit_returns_413(model_dir: Path) -> None:
    """No Content-Length (chunked): the limit is enforced while reading."""
    settings = make_settings(model_dir, max_upload_bytes=1_000)
    boundary = "cxrboundary"

    def chunks():
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="x.jpeg"\r\n\r\n'.encode()
        for _ in range(200):
            yield b"\xff" * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    with TestClient(create_app(settings)) as small:
        response = small.post("/predict", content=chunks(),
                              headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert "content-length" not in response.request.headers
        assert_error(response, 413)


def test_predict_declared_length_over_limit_returns_413_before_reading(model_dir: Path) -> None:
    """A Content-Length over the limit is answered at once: the body is never read."""
    app = create_app(make_settings(model_dir))
    receive_calls = 0
    sent: list[dict] = []

    async def receive() -> dict:
        nonlocal receive_calls
        receive_calls += 1
        return {"type": "http.request", "body": b"x" * 1024, "more_body": True}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": "/predict", "raw_path": b"/predict", "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"multipart/form-data; boundary=x"), (b"content-length", b"1000000000")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert receive_calls == 0
    metrics = app.state.service.metrics.registry.get_sample_value(
        "cxr_http_requests_total", {"route": "/predict", "method": "POST", "status": "413"})
    assert metrics == 1.0


def test_predict_after_bad_requests_still_answers(client: TestClient) -> None:
    for data in (b"", b"not an image", png_header_only(60_000, 60_000), b"\xff\xd8\xff" + b"\x00" * 64):
        assert post_bytes(client, data).status_code in (413, 415, 422)
    response = post_bytes(client, GOOD.read_bytes())
    assert response.status_code == 200
    assert response.json()["label"] in ("PNEUMONIA", "NORMAL")


def test_predict_broken_dicom_is_a_client_error(client: TestClient) -> None:
    broken = b"\x00" * 128 + b"DICM" + b"\x02\x00" * 50  # DICOM magic, nothing readable after it
    response = post_bytes(client, broken, "x.dcm")
    assert response.status_code in (415, 422)
    assert response.json()["detail"]
