"""POST /predict: the prediction from ONNX, the overlay from the sidecar (best effort)."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, Field

from app.api.errors import error_responses
from app.api.service import (
    Overlay,
    PredictionFields,
    collect_overlay,
    draw_background,
    fields_for,
    label_of,
    predict_before_overlay,
    prepare_upload,
    score_upload,
    start_heatmap,
)
from app.api.state import State
from app.api.uploads import FILE_FIELD, read_upload
from app.gradcam.client import GradcamResult
from app.imaging.overlay import OverlayFormat

router = APIRouter()

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [FILE_FIELD],
            "properties": {FILE_FIELD: {"type": "string", "format": "binary",
                                        "description": "JPEG, PNG or DICOM X-ray"}},
        }}},
    }
}


class PredictOptions(BaseModel):
    """The query string of /predict."""

    gradcam: bool = Field(True, description="also compute the Grad-CAM overlay")
    preview: bool = Field(False, description="also return the decoded image as a PNG (for the web page)")
    overlay_format: OverlayFormat = Field(OverlayFormat.JPEG, description="encoding of gradcam_overlay")


class PredictResponse(PredictionFields):
    label: Literal["PNEUMONIA", "NORMAL"] | None
    request_id: str
    timings_ms: dict[str, float]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)


# The upload is read by `read_upload` (the limits and statuses of app/api/uploads.py), so the body is
# declared here for the schema rather than as a FastAPI `File` parameter.
@router.post("/predict", response_model=PredictResponse, openapi_extra=_UPLOAD_SCHEMA,
             responses=error_responses(
                 e400="malformed multipart body, or more than one file",
                 e413="upload or image too large",
                 e415="not an image, or an unsupported DICOM transfer syntax",
                 e422="invalid option; missing, empty or undecodable file; multi-frame or non-image DICOM"))
async def predict(request: Request, state: State, options: Annotated[PredictOptions, Query()]) -> Response:
    gradcam, preview, overlay_format = options.gradcam, options.preview, options.overlay_format
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
        if engine.has_gradcam_output:
            mark = time.perf_counter()
            (assessment,) = await state.run(engine.assess, [upload.prepared], True, state.compute_idle)
            record("inference", time.perf_counter() - mark)
            if assessment.in_distribution:  # no explanation of an answer that is not given
                # The sidecar maps from this call's activations (the end of the network only), while the
                # overlay's background is drawn here.
                overlay_task = start_heatmap(state, engine, upload.prepared, assessment)
                try:
                    await state.run(draw_background, upload.prepared)
                except BaseException:
                    overlay_task.cancel()
                    raise
        else:
            # An older model without the activations output: the sidecar runs the whole network from the
            # model input, while onnxruntime runs.
            overlay_task = start_heatmap(state, engine, upload.prepared)
            try:
                mark = time.perf_counter()
                assessment = await state.run(predict_before_overlay, engine, upload.prepared)
                record("inference", time.perf_counter() - mark)
            except BaseException:
                overlay_task.cancel()
                raise
    else:
        scored = await state.run(score_upload, engine, data, settings.max_image_pixels, state.compute_idle)
        upload, assessment = scored.upload, scored.assessment
        for stage, seconds in scored.seconds.items():
            record(stage, seconds)

    metrics.predictions.labels(label_of(engine, assessment) or "OUT_OF_DISTRIBUTION").inc()
    warnings = list(upload.warnings)
    overlay: Overlay | None = None
    if overlay_task is not None and not assessment.in_distribution:
        overlay_task.cancel()  # no explanation of an answer that is not given
    elif overlay_task is not None:
        mark = time.perf_counter()
        overlay = await collect_overlay(state, overlay_task, upload.prepared, assessment.probability, overlay_format,
                                        warnings)
        timings["gradcam_wait"] = _ms(time.perf_counter() - mark)

    fields = fields_for(engine, upload, assessment, overlay, warnings, preview=preview)
    timings["total"] = _ms(time.perf_counter() - start)
    # Serialized here, once: returned as a model, it would be validated again and dumped by json.dumps.
    body = PredictResponse(**fields, request_id=request_id, timings_ms=timings).model_dump_json()
    return Response(body, media_type="application/json")
