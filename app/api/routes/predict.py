"""POST /predict: the prediction from ONNX, the overlay from the sidecar (best effort)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.api.direct_route import DirectRoute
from app.api.query import parse_query, query_parameters
from app.api.service import (
    Overlay,
    PredictionFields,
    collect_overlay,
    fields_for,
    predict_before_overlay,
    prepare_upload,
    score_upload,
    start_heatmap,
)
from app.api.state import state_of
from app.api.upload import FIELD, read_upload
from app.gradcam.client import GradcamResult
from app.imaging.overlay import OverlayFormat

router = APIRouter(route_class=DirectRoute)  # reads its own input: no FastAPI parameters (see direct_route.py)

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [FIELD],
            "properties": {FIELD: {"type": "string", "format": "binary", "description": "JPEG, PNG or DICOM X-ray"}},
        }}},
    }
}


class PredictOptions(BaseModel):
    """The query string of /predict (read by `parse_query`, not declared to FastAPI: see app/api/query.py)."""

    gradcam: bool = Field(True, description="also compute the Grad-CAM overlay")
    preview: bool = Field(False, description="also return the decoded image as a PNG (for the web page)")
    overlay_format: OverlayFormat = Field(OverlayFormat.JPEG, description="encoding of gradcam_overlay")


class PredictResponse(PredictionFields):
    label: Literal["PNEUMONIA", "NORMAL"]
    request_id: str
    timings_ms: dict[str, float]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


@router.post("/predict", response_model=PredictResponse,
             openapi_extra={**_UPLOAD_SCHEMA, "parameters": query_parameters(PredictOptions)},
             responses={400: {"description": "malformed multipart body, or more than one file"},
                        413: {"description": "upload or image too large"},
                        415: {"description": "not an image, or an unsupported DICOM transfer syntax"},
                        422: {"description": "missing, empty or undecodable file; multi-frame or non-image DICOM"},
                        503: {"description": "model not loaded"}})
async def predict(request: Request) -> Response:
    options = parse_query(PredictOptions, request)
    gradcam, preview, overlay_format = options.gradcam, options.preview, options.overlay_format
    state = state_of(request)
    engine = state.require_engine()
    settings, metrics = state.settings, state.metrics
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    timings: dict[str, float] = {}
    start = time.perf_counter()

    data = await read_upload(request, settings.max_upload_bytes)
    timings["read"] = _ms(time.perf_counter() - start)

    def record(stage: str, seconds: float) -> None:
        timings[stage] = _ms(seconds)
        metrics.stage_latency.labels(stage).observe(seconds)

    overlay_task: asyncio.Task[GradcamResult] | None = None
    if gradcam and state.gradcam is not None:
        mark = time.perf_counter()
        upload = await state.run(prepare_upload, engine, data, settings.max_image_pixels)
        record("preprocess", time.perf_counter() - mark)
        # The sidecar works while onnxruntime runs: both need only the preprocessed image.
        overlay_task = start_heatmap(state, engine, upload.prepared)
        try:
            mark = time.perf_counter()
            probability = await state.run(predict_before_overlay, engine, upload.prepared)
            record("inference", time.perf_counter() - mark)
        except BaseException:
            overlay_task.cancel()
            raise
    else:
        scored = await state.run(score_upload, engine, data, settings.max_image_pixels)
        upload, probability = scored.upload, scored.probability
        for stage, seconds in scored.seconds.items():
            record(stage, seconds)

    metrics.predictions.labels(engine.label_for(probability)).inc()
    warnings = list(upload.warnings)
    overlay: Overlay | None = None
    if overlay_task is not None:
        mark = time.perf_counter()
        overlay = await collect_overlay(state, overlay_task, upload.prepared, probability, overlay_format, warnings)
        timings["gradcam_wait"] = _ms(time.perf_counter() - mark)

    fields = fields_for(engine, upload, probability, overlay, warnings, preview=preview)
    timings["total"] = _ms(time.perf_counter() - start)
    # Serialized here, once: returned as a model, it would be validated again and dumped by json.dumps.
    body = PredictResponse(**fields, request_id=request_id, timings_ms=timings).model_dump_json()
    return Response(body, media_type="application/json")
