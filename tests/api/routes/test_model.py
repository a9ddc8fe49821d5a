"""GET /model: the card as the service loaded it."""


from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from app.model.card import load_model_card, sha256_of


def test_model_returns_card(client: TestClient, model_dir: Path) -> None:
    response = client.get("/model")
    assert response.status_code == 200
    body = response.json()
    card = load_model_card(model_dir)
    assert body["version"] == card.version
    assert body["onnx_sha256"] == sha256_of(model_dir / card.onnx_file)
    assert body["input_size"] == card.preprocessing.input_size
    assert body["threshold"] == card.threshold
    assert body["preprocessing"]["clahe_clip_limit"] == card.preprocessing.clahe_clip_limit
    assert body["validation_metrics"]
    assert body["gradcam_layer"] == card.gradcam_layer
    assert body["gradcam_layers"] == list(card.gradcam_layers)
