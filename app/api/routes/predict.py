"""POST /predict: the prediction from ONNX, the overlay from the sidecar (best effort)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from app.api.gradcam_client import GradcamResult, GradcamUnavailable, check_agreement
from app.api.state import State
from app.api.upload import FIELD, read_upload

router = APIRouter()

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [FIELD],
            "properties": {FIELD: {"type": "string", "format": "binary", "description": "JPEG or PNG X-ray"}},
        }}},
    }
}


class PredictResponse(BaseModel):
    label: Literal["PNEUMONIA", "NORMAL"]
    probability: float = Field(description="calibrated P(pneumonia), 0..1")
    threshold: float
    model_version: str
    gradcam_overlay: str | None = Field(description="base64 PNG, the heat map over the upload, long side <= 512")
    warnings: list[str]
    gradcam_layer: str | None = None
    image_size: list[int] = Field(description="[width, height] of the image as decoded")
    request_id: str
    timings_ms: dict[str, float]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


@router.post("/predict", response_model=PredictResponse, openapi_extra=_UPLOAD_SCHEMA,
             responses={413: {"description": "upload or image too large"}, 415: {"description": "not an image"},
                        422: {"description": "missing, empty or undecodable file"},
                        503: {"description": "model not loaded"}})
async def predict(
    request: Request,
    state: State,
    gradcam: Annotated[bool, Query(description="also compute the Grad-CAM overlay")] = True,
) -> PredictResponse:
    engine = state.require_engine()
    settings, metrics = state.settings, state.metrics
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    timings: dict[str, float] = {}
    start = time.perf_counter()

    data = await read_upload(request, settings.max_upload_bytes)
    timings["read"] = _ms(time.perf_counter() - start)

    mark = time.perf_counter()
    prepared = await run_in_threadpool(engine.prepare, data, settings.max_image_pixels)
    timings["preprocess"] = _ms(time.perf_counter() - mark)
    metrics.stage_latency.labels("preprocess").observe(time.perf_counter() - mark)

    # The sidecar works while onnxruntime runs: both need only the preprocessed image.
    overlay_task: asyncio.Task[GradcamResult] | None = None
    if gradcam and state.gradcam is not None:
        overlay_task = asyncio.create_task(
            state.gradcam.overlay(prepared.enhanced, prepared.preview, engine.card.version)
        )
    try:
        mark = time.perf_counter()
        probability = await run_in_threadpool(engine.predict, prepared)
        timings["inference"] = _ms(time.perf_counter() - mark)
        metrics.stage_latency.labels("inference").observe(time.perf_counter() - mark)
    except BaseException:
        if overlay_task is not None:
            overlay_task.cancel()
        raise

    label = engine.label_for(probability)
    metrics.predictions.labels(label).inc()
    warnings: list[str] = []
    if min(prepared.width, prepared.height) < engine.input_size:
        warnings.append(
            f"image is {prepared.width}x{prepared.height}, smaller than the model input "
            f"({engine.input_size}x{engine.input_size}); it was upscaled"
        )

    overlay: str | None = None
    layer: str | None = None
    if overlay_task is not None:
        mark = time.perf_counter()
        try:
            result = await overlay_task
            check_agreement(result, probability)
        except GradcamUnavailable as exc:
            metrics.gradcam_failures.labels(exc.reason).inc()
            warnings.append(f"gradcam_overlay unavailable: {exc}")
        else:
            overlay, layer = result.overlay_png_base64, result.layer
            if result.empty_heatmap:
                warnings.append("Grad-CAM found no positive evidence for the predicted label; the heat map is empty")
        timings["gradcam_wait"] = _ms(time.perf_counter() - mark)

    timings["total"] = _ms(time.perf_counter() - start)
    return PredictResponse(
        label=label, probability=probability, threshold=engine.card.threshold, model_version=engine.card.version,
        gradcam_overlay=overlay, warnings=warnings, gradcam_layer=layer,
        image_size=[prepared.width, prepared.height], request_id=request_id, timings_ms=timings,
    )
