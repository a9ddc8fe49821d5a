"""POST /predict/batch: per-file results in order, per-file errors, one inference call, limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.api.main import create_app
from tests.api.conftest import make_settings
from tests.dicom_files import dicom_from_gray, gray
from tests.serving import FIXTURE_JPEGS, PNG16, PNG_RGBA, png_header_only

PREDICT_FIELDS = {"label", "probability", "threshold", "model_version", "gradcam_overlay", "warnings",
                  "gradcam_layer", "image_size", "dicom"}


def part(name: str, data: bytes, kind: str = "application/octet-stream") -> tuple[str, tuple[str, bytes, str]]:
    return ("files", (name, data, kind))


def single(client: TestClient, name: str, data: bytes) -> tuple[int, dict]:
    response = client.post("/predict", params={"gradcam": "false"}, files={"file": (name, data, "image/jpeg")})
    return response.status_code, response.json()


def test_batch_matches_single_predictions_with_errors_in_place(client: TestClient) -> None:
    files = [
        (FIXTURE_JPEGS[0].name, FIXTURE_JPEGS[0].read_bytes()),
        ("notes.txt", b"this is not an image at all"),
        (PNG16.name, PNG16.read_bytes()),
        ("bomb.png", png_header_only(30000, 30000)),
        ("scan.dcm", dicom_from_gray(gray(FIXTURE_JPEGS[1]))),
        ("empty.png", b""),
        ("broken.jpeg", FIXTURE_JPEGS[1].read_bytes()[:200]),
        (PNG_RGBA.name, PNG_RGBA.read_bytes()),
    ]
    response = client.post("/predict/batch", files=[part(n, d) for n, d in files])
    assert response.status_code == 200
    body = response.json()
    results = body["results"]
    assert [r["index"] for r in results] == list(range(len(files)))
    assert [r["filename"] for r in results] == [n for n, _ in files]
    for (name, data), result in zip(files, results, strict=True):
        if not data:
            assert result["status"] == 422 and result["error"] == "the file is empty"
            continue
        status, expected = single(client, name, data)
        assert result["status"] == status, name
        if status == 200:
            assert PREDICT_FIELDS <= result.keys()
            assert result["probability"] == pytest.approx(expected["probability"], abs=1e-6)
            for key in ("label", "threshold", "model_version", "image_size", "warnings", "dicom"):
                assert result[key] == expected[key], (name, key)
            assert result["gradcam_overlay"] is None
        else:
            assert result["error"] == expected["detail"]
            assert result["error_type"] == expected["error"]
    assert [r["status"] for r in results] == [200, 415, 200, 413, 200, 422, 422, 200]
    assert results[4]["dicom"]["modality"] == "DX"
    assert body["model_version"] == results[0]["model_version"]
    assert body["timings_ms"]["inference"] > 0


def test_batch_uses_one_inference_call(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = client.app.state.service.engine
    calls: list[int] = []
    real_run = engine.session.run

    class CountingSession:
        def run(self, outputs, feeds):
            calls.append(next(iter(feeds.values())).shape[0])
            return real_run(outputs, feeds)

        def __getattr__(self, name: str):
            return getattr(real_run.__self__, name)

    monkeypatch.setattr(engine, "session", CountingSession())
    files = [part(f"{i}.jpeg", FIXTURE_JPEGS[i % 2].read_bytes()) for i in range(5)] + [part("x.txt", b"nope")]
    response = client.post("/predict/batch", files=files)
    assert response.status_code == 200
    assert calls == [5]


def test_batch_gradcam_is_off_by_default_and_optional(client: TestClient) -> None:
    files = [part(p.name, p.read_bytes()) for p in FIXTURE_JPEGS]
    default = client.post("/predict/batch", files=files).json()["results"]
    assert all(r["gradcam_overlay"] is None and r["warnings"] == [] for r in default)
    asked = client.post("/predict/batch", params={"gradcam": "true"}, files=files).json()["results"]
    # No sidecar in these tests: each file says so, and the predictions are unaffected.
    assert all(any("Grad-CAM sidecar unreachable" in w for w in r["warnings"]) for r in asked)
    assert [r["probability"] for r in asked] == [r["probability"] for r in default]


def test_batch_without_files_is_422(client: TestClient) -> None:
    response = client.post("/predict/batch", files={"file": ("a.jpeg", FIXTURE_JPEGS[0].read_bytes(), "image/jpeg")})
    assert response.status_code == 422
    assert "'files'" in response.json()["detail"]


@pytest.fixture(scope="module")
def small_client(model_dir: Path):
    """The API with a batch limit of 3 files and a 100 kB upload limit (body: 100 kB + 64 kB multipart)."""
    with TestClient(create_app(make_settings(model_dir, batch_max_files=3, max_upload_bytes=100_000))) as client:
        yield client


def test_batch_file_count_limit_is_configurable(small_client: TestClient) -> None:
    three = [part(f"{i}.jpeg", FIXTURE_JPEGS[0].read_bytes()) for i in range(3)]
    assert small_client.post("/predict/batch", files=three).status_code == 200
    response = small_client.post("/predict/batch", files=three + [part("4.jpeg", FIXTURE_JPEGS[1].read_bytes())])
    assert response.status_code == 413
    assert "more than 3 files" in response.json()["detail"]


def test_batch_total_body_limit_applies(small_client: TestClient) -> None:
    big = [part(f"{i}.png", PNG_RGBA.read_bytes()) for i in range(3)]  # 3 x 76 kB > 164 kB
    response = small_client.post("/predict/batch", files=big)
    assert response.status_code == 413
