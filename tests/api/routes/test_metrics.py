"""GET /metrics: Prometheus counters of requests and predictions."""


from __future__ import annotations

from fastapi.testclient import TestClient

from tests.serving import FIXTURE_JPEGS


def test_metrics_counts_requests_and_predictions(client: TestClient) -> None:
    path = FIXTURE_JPEGS[0]
    assert client.post("/predict?gradcam=false", files={"file": (path.name, path.read_bytes())}).status_code == 200
    assert client.post("/predict", files={"file": ("x.txt", b"hello")}).status_code == 415
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'cxr_http_requests_total{method="POST",route="/predict",status="200"}' in text
    assert 'cxr_http_requests_total{method="POST",route="/predict",status="415"}' in text
    assert 'cxr_http_request_duration_seconds_bucket{le="0.015",method="POST",route="/predict"}' in text
    assert "cxr_predictions_total{label=" in text
    assert 'cxr_rejected_inputs_total{status="415"} 1.0' in text
    assert 'cxr_predict_stage_duration_seconds_count{stage="inference"}' in text


def test_invented_http_methods_share_one_metrics_series(client: TestClient) -> None:
    for index in range(5):
        assert client.request(f"BREW{index}", "/predict").status_code == 405
    text = client.get("/metrics").text
    assert "BREW" not in text
    assert 'cxr_http_requests_total{method="other",route="/predict",status="405"} 5.0' in text
