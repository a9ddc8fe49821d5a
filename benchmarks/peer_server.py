"""The naive peer: how most public projects serve a Keras model (a benchmark artefact).

One FastAPI endpoint that reads the upload, runs the same preprocessing chain and
calls Keras `model.predict` on every request, inside the async handler. Same model,
same preprocessing, same answer; only the serving is done the usual way.

    CXR_MODEL_DIR=models uvicorn benchmarks.peer_server:app --port 8002
"""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
from fastapi import FastAPI, File, UploadFile

from app.imaging.preprocess import Preprocessor
from app.model.card import load_model_card

MODEL_DIR = Path(os.environ.get("CXR_MODEL_DIR", "models"))
card = load_model_card(MODEL_DIR)
model = keras.models.load_model(MODEL_DIR / card.keras_file)
preprocessor = Preprocessor(card.preprocessing)

app = FastAPI(title="naive Keras peer")


@app.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
async def predict(file: UploadFile = File(...)) -> dict:  # noqa: B008  (the usual tutorial style)
    data = await file.read()
    image = preprocessor.from_bytes(data)
    batch = np.expand_dims(np.expand_dims(image, axis=-1), axis=0)
    probability = float(model.predict(batch, verbose=0)[0][0])
    label = "PNEUMONIA" if probability >= card.threshold else "NORMAL"
    return {"label": label, "probability": probability}
