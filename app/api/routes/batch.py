"""POST /predict/batch: several files in the repeated multipart field `files`.

All files are preprocessed (in parallel threads), then the good ones go through ONE
onnxruntime call. Each file gets its own result, in upload order: the `/predict`
fields, or `error` with the status code `/predict` would have answered for that file
alone. A bad file never affects the others. Grad-CAM is off unless asked for, and then
runs one file at a time (the sidecar computes one overlay at a time anyway).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from app.api.errors import error_responses
from app.api.service import Overlay, Upload, collect_overlay, fields_for, label_of, prepare_upload, start_heatmap
from app.api.state import ServiceState, State
from app.api.uploads import FILES_FIELD, FileError, UploadedFile, read_files
from app.imaging.errors import ImageError
from app.imaging.overlay import OverlayFormat
from app.model.engine import Assessment, InferenceEngine

router = APIRouter()

_UPLOAD_SCHEMA = {
    "requestBody": {
        "required": True,
        "content": {"multipart/form-data": {"schema": {
            "type": "object", "required": [FILES_FIELD],
            "properties": {FILES_FIELD: {"type": "array", "items": {"type": "string", "format": "binary"},
                                   "description": "JPEG, PNG or DICOM X-rays, the field repeated once per file"}},
        }}},
    }
}


class BatchResponse(BaseModel):
    results: list[dict[str, Any]] = Field(
        description="one per file, in order: {index, filename, status: 200, ...the /predict fields} "
                    "or {index, filename, status, error, error_type}")
    model_version: str
    request_id: str
    timings_ms: dict[str, float]


async def read_batch(request: Request, limit: int, max_files: int) -> list[UploadedFile]:
    """Each `files` part with its bytes or its own error; 413/422 for the request as a whole."""
    # The parser's file bound is generous (the body's size limit bounds the work): too many files is a 413 here.
    files = await read_files(request, FILES_FIELD, limit, max_parts=max_files + 1000)
    if len(files) > max_files:
        raise HTTPException(status_code=413, detail=f"more than {max_files} files in one batch")
    if not files:
        raise HTTPException(status_code=422, detail=f"multipart form field '{FILES_FIELD}' (image files) is required")
    return files


def _error(index: int, name: str, exc: ImageError | FileError) -> dict[str, Any]:
    return {"index": index, "filename": name, "status": exc.status_code, "error": str(exc),
            "error_type": type(exc).__name__}


async def _prepare_all(
    state: ServiceState, engine: InferenceEngine, files: list[UploadedFile], max_pixels: int
) -> list[Upload | ImageError | FileError]:
    async def one(item: bytes | FileError) -> Upload | ImageError | FileError:
        if isinstance(item, FileError):
            return item
        try:
            return await state.run(prepare_upload, engine, item, max_pixels)
        except ImageError as exc:
            return exc

    return list(await asyncio.gather(*(one(f.data) for f in files)))


async def _overlays(
    state: ServiceState, engine: InferenceEngine, uploads: list[Upload], assessments: list[Assessment],
    overlay_format: OverlayFormat,
) -> list[tuple[Overlay | None, list[str]]]:
    """One sidecar call at a time, each with its own deadline; none for an upload that is not a chest X-ray."""
    results = []
    for upload, assessment in zip(uploads, assessments, strict=True):
        warnings = list(upload.warnings)
        overlay = None
        if assessment.in_distribution:
            task = start_heatmap(state, engine, upload.prepared, assessment)
            overlay = await collect_overlay(state, task, upload.prepared, assessment.probability, overlay_format,
                                            warnings)
        results.append((overlay, warnings))
    return results


@router.post("/predict/batch", response_model=BatchResponse, openapi_extra=_UPLOAD_SCHEMA,
             responses=error_responses(e400="malformed multipart body",
                                       e413="request body too large, or too many files",
                                       e422="invalid option, or no files"))
async def predict_batch(
    request: Request,
    state: State,
    gradcam: Annotated[bool, Query(description="also compute the Grad-CAM overlay of each file (slow)")] = False,
    overlay_format: Annotated[OverlayFormat, Query(description="encoding of the overlays")] = OverlayFormat.JPEG,
) -> BatchResponse:
    engine = state.require_engine()
    settings, metrics = state.settings, state.metrics
    request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
    start = time.perf_counter()
    timings: dict[str, float] = {}

    files = await read_batch(request, settings.max_upload_bytes, settings.batch_max_files)
    timings["read"] = _ms(time.perf_counter() - start)

    mark = time.perf_counter()
    with_overlays = gradcam and state.gradcam is not None
    prepared = await _prepare_all(state, engine, files, settings.max_image_pixels)
    timings["preprocess"] = _ms(time.perf_counter() - mark)
    metrics.stage_latency.labels("preprocess_batch").observe(time.perf_counter() - mark)

    good = [(i, p) for i, p in enumerate(prepared) if isinstance(p, Upload)]
    uploads = [p for _, p in good]
    mark = time.perf_counter()
    assessments = await state.run(engine.assess, [u.prepared for u in uploads], with_overlays)
    timings["inference"] = _ms(time.perf_counter() - mark)
    metrics.stage_latency.labels("inference_batch").observe(time.perf_counter() - mark)

    if with_overlays:
        mark = time.perf_counter()
        extras = await _overlays(state, engine, uploads, assessments, overlay_format)
        timings["gradcam"] = _ms(time.perf_counter() - mark)
    else:
        extras = [(None, list(u.warnings)) for u in uploads]

    results: list[dict[str, Any]] = [{} for _ in files]
    for (index, upload), assessment, (overlay, warnings) in zip(good, assessments, extras, strict=True):
        metrics.predictions.labels(label_of(engine, assessment) or "OUT_OF_DISTRIBUTION").inc()
        fields = fields_for(engine, upload, assessment, overlay, warnings)
        fields.pop("preview_png")
        results[index] = {"index": index, "filename": files[index].filename, "status": 200, **fields}
    for index, outcome in enumerate(prepared):
        if not isinstance(outcome, Upload):
            metrics.rejected_inputs.labels(str(outcome.status_code)).inc()
            results[index] = _error(index, files[index].filename, outcome)

    timings["total"] = _ms(time.perf_counter() - start)
    return BatchResponse(results=results, model_version=engine.card.version, request_id=request_id,
                         timings_ms=timings)


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 2)
