"""The prediction steps shared by `/predict` and `/predict/batch`.

Each step is a function of the service state and one upload, so the single route and
the batch route stay the same computation: the same chain, the same warnings, the same
overlay checks. Only the onnxruntime call differs (one image vs one stacked batch).
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from app.api.state import ServiceState
from app.gradcam.client import GradcamResult, GradcamUnavailable, check_agreement
from app.imaging.overlay import OverlayFormat, encode_png, overlay_image
from app.model.engine import OOD_WARNING, Assessment, InferenceEngine, PreparedImage


class PredictionFields(BaseModel):
    """What `/predict` answers for one image (and each good file of a batch)."""

    label: str | None = Field(description="PNEUMONIA or NORMAL; null when the upload is not a chest X-ray")
    probability: float = Field(description="calibrated P(pneumonia), 0..1 (given for transparency even when "
                                           "in_distribution is false)")
    in_distribution: bool = Field(description="false when the upload does not look like a frontal chest X-ray: "
                                              "then label is null and no Grad-CAM is drawn")
    ood_score: float | None = Field(description="the input check's score: above 1.0 is out of distribution "
                                                "(null for a model without the check)")
    threshold: float
    model_version: str
    gradcam_overlay: str | None = Field(
        description="base64 image (JPEG unless ?overlay_format=png), the heat map over the upload, long side <= 512")
    gradcam_overlay_type: str | None = Field(None, description="media type of gradcam_overlay: image/jpeg or image/png")
    warnings: list[str]
    gradcam_layer: str | None = None
    gradcam_label: str | None = Field(
        None, description="the class whose evidence gradcam_overlay shows: always the returned label")
    image_size: list[int] = Field(description="[width, height] of the image as decoded")
    dicom: dict[str, Any] | None = Field(
        None, description="for DICOM uploads: modality, view position and other non-identifying tags")
    preview_png: str | None = Field(
        None, description="with ?preview=true: base64 PNG of the image as decoded (8-bit gray, long side <= 512)")


@dataclass
class Upload:
    """One prepared upload: the model input plus what the response echoes about it."""

    prepared: PreparedImage
    warnings: list[str] = field(default_factory=list)


def prepare_upload(engine: InferenceEngine, data: bytes, max_pixels: int) -> Upload:
    """Bytes -> `Upload` (blocking: call from a worker thread); raises `ImageError` subclasses."""
    prepared = engine.prepare(data, max_pixels)
    upload = Upload(prepared)
    if min(prepared.width, prepared.height) < engine.input_size:
        upload.warnings.append(
            f"image is {prepared.width}x{prepared.height}, smaller than the model input "
            f"({engine.input_size}x{engine.input_size}); it was upscaled"
        )
    return upload


@dataclass
class Scored:
    """One upload prepared and scored in a single trip to the compute pool."""

    upload: Upload
    assessment: Assessment
    seconds: dict[str, float]  # "preprocess" and "inference", timed in the worker thread


def score_upload(engine: InferenceEngine, data: bytes, max_pixels: int, alone: bool = False) -> Scored:
    """Bytes -> `Scored` (blocking). One pool trip instead of two when no overlay is wanted. `alone`: see
    `InferenceEngine.assess`."""
    start = time.perf_counter()
    upload = prepare_upload(engine, data, max_pixels)
    mark = time.perf_counter()
    (assessment,) = engine.assess([upload.prepared], alone=alone)
    return Scored(upload, assessment, {"preprocess": mark - start, "inference": time.perf_counter() - mark})


def predict_before_overlay(engine: InferenceEngine, prepared: PreparedImage) -> Assessment:
    """The answer for one image (blocking), and the overlay's background made now, while
    the sidecar computes the heat map, instead of after it."""
    draw_background(prepared)
    (assessment,) = engine.assess([prepared])
    return assessment


def draw_background(prepared: PreparedImage) -> None:
    """The overlay's background (blocking): call while the sidecar computes the map."""
    _ = prepared.preview


@dataclass(frozen=True)
class Overlay:
    """The heat map drawn over the upload, encoded for the response."""

    base64: str
    format: OverlayFormat
    layer: str
    label: str  # the class whose evidence the map shows: the label the response returns


def start_heatmap(
    state: ServiceState, engine: InferenceEngine, prepared: PreparedImage, assessment: Assessment | None = None,
) -> asyncio.Task[GradcamResult]:
    """Ask the sidecar now; the answer is awaited by `collect_overlay`. From the assessment's Grad-CAM
    activations when it has them (the sidecar then runs only the end of the network), else from the
    model input (the whole network: it can start before onnxruntime answers)."""
    assert state.gradcam is not None
    version = engine.card.version
    if assessment is not None and assessment.gradcam_activations is not None:
        return asyncio.create_task(state.gradcam.heatmap_from_activations(assessment.gradcam_activations, version))
    return asyncio.create_task(state.gradcam.heatmap(prepared.enhanced, version))


def render_overlay(
    prepared: PreparedImage, result: GradcamResult, label: str, overlay_format: OverlayFormat
) -> Overlay:
    """Blend the map of `label` over the part of the upload the model saw and encode (blocking, ~3 ms for
    JPEG: call from a worker thread)."""
    encoded = overlay_image(prepared.preview, result.heatmaps[label], overlay_format, view=prepared.view)
    return Overlay(base64.b64encode(encoded).decode("ascii"), overlay_format, result.layer, label)


async def collect_overlay(
    state: ServiceState, task: asyncio.Task[GradcamResult], prepared: PreparedImage, probability: float,
    overlay_format: OverlayFormat, warnings: list[str],
) -> Overlay | None:
    """The sidecar's map of the label this response returns, drawn over the upload, or None with the
    reason appended to `warnings`."""
    try:
        result = await task
        check_agreement(result, probability)
    except GradcamUnavailable as exc:
        state.metrics.gradcam_failures.labels(exc.reason).inc()
        warnings.append(f"gradcam_overlay unavailable: {exc}")
        return None
    engine = state.require_engine()
    label = engine.label_for(probability)
    if result.empty[label]:
        warnings.append(f"Grad-CAM found no evidence for {label}; the heat map is empty")
    return await state.run(render_overlay, prepared, result, label, overlay_format)


def preview_png(prepared: PreparedImage) -> str:
    """The decoded image as the page shows it beside the overlay (DICOM has no browser preview)."""
    return base64.b64encode(encode_png(prepared.preview)).decode("ascii")


def label_of(engine: InferenceEngine, assessment: Assessment) -> str | None:
    """The label to return: None when the upload is not a chest X-ray."""
    return engine.label_for(assessment.probability) if assessment.in_distribution else None


def fields_for(
    engine: InferenceEngine, upload: Upload, assessment: Assessment, overlay: Overlay | None,
    warnings: list[str], preview: bool = False,
) -> dict[str, Any]:
    """The `PredictionFields` of one image, as a dict."""
    prepared = upload.prepared
    if not assessment.in_distribution:
        warnings = [OOD_WARNING.format(reasons="; ".join(assessment.ood_reasons) or "input check"), *warnings]
    return {
        "label": label_of(engine, assessment), "probability": assessment.probability,
        "in_distribution": assessment.in_distribution, "ood_score": assessment.ood_score,
        "threshold": engine.card.threshold,
        "model_version": engine.card.version, "warnings": warnings,
        "gradcam_overlay": overlay.base64 if overlay else None,
        "gradcam_overlay_type": overlay.format.media_type if overlay else None,
        "gradcam_layer": overlay.layer if overlay else None,
        "gradcam_label": overlay.label if overlay else None,
        "image_size": [prepared.width, prepared.height], "dicom": prepared.dicom,
        "preview_png": preview_png(prepared) if preview else None,
    }
