"""One film, one answer, whatever way it was resized before upload (issue 12, part 5).

The same full-resolution film as its original JPEG, as a lossless PNG of its full decode,
and as a PNG already shrunk to the model input with Pillow's bilinear filter must get
probabilities within 0.01.
"""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from app.model.card import load_model_card
from tests.serving import FULLRES_FILES

TOLERANCE = 0.01


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def probability(client: TestClient, data: bytes, name: str) -> float:
    response = client.post("/predict?gradcam=false", files={"file": (name, data)})
    assert response.status_code == 200, response.text
    return response.json()["probability"]


@pytest.mark.skipif(not FULLRES_FILES, reason="../shared/data/val16_fullres is not beside the repo")
def test_jpeg_png_and_presized_png_get_one_answer(client: TestClient, model_dir) -> None:
    size = load_model_card(model_dir).preprocessing.input_size
    spreads = {}
    for path in FULLRES_FILES:
        original = path.read_bytes()
        decoded = Image.open(io.BytesIO(original)).convert("L")
        assert max(decoded.size) > 2 * size  # really full resolution
        probs = [
            probability(client, original, path.name),
            probability(client, png(decoded), path.stem + ".png"),
            probability(client, png(decoded.resize((size, size), Image.Resampling.BILINEAR)), path.stem + "_small.png"),
        ]
        spreads[path.name] = max(probs) - min(probs)
    assert max(spreads.values()) <= TOLERANCE, spreads
