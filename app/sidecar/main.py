"""The Grad-CAM sidecar app: `uvicorn app.sidecar.main:app` (TensorFlow lives here only)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from app.gradcam.protocol import (
    ACTIVATIONS_PATH,
    ACTIVATIONS_SHAPE_HEADER,
    HEATMAP_DECIMALS,
    IMAGE_PATH,
    INPUT_SHAPE_HEADER,
    MODEL_VERSION_HEADER,
    ProtocolError,
    decode_activations_request,
    decode_request,
    parse_shape,
)
from app.imaging.preprocess import Preprocessor
from app.model.card import ModelCard, load_model_card, sha256_of
from app.sidecar.config import SidecarSettings

if TYPE_CHECKING:  # TensorFlow is imported when the model loads, not with this module
    from app.sidecar.gradcam import GradCam, GradcamMap

log = logging.getLogger("cxr.sidecar")


class ModelMismatchError(RuntimeError):
    """model.keras is not the file the card describes."""


@dataclass
class SidecarState:
    settings: SidecarSettings
    card: ModelCard | None = None
    gradcam: GradCam | None = None
    load_error: str | None = None
    warmup_ms: float | None = None

    def load(self) -> None:
        try:
            self.card, self.gradcam = load_gradcam(self.settings)
            start = time.perf_counter()
            self.gradcam.warm_up()
            self.warmup_ms = round((time.perf_counter() - start) * 1000.0, 1)
        except Exception as exc:  # keep serving 503s that say why
            self.gradcam = None
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("Grad-CAM model not loaded from %s: %s", self.settings.model_dir, self.load_error)


def load_gradcam(settings: SidecarSettings) -> tuple[ModelCard, GradCam]:
    """Card, hash check, Keras model, compiled Grad-CAM."""
    card = load_model_card(settings.model_dir)
    keras_path = settings.model_dir / card.keras_file
    expected = card.raw.get("keras_sha256")
    if not expected:
        raise ModelMismatchError("the model card has no keras_sha256")
    digest = sha256_of(keras_path)
    if digest != expected:
        raise ModelMismatchError(f"{keras_path} has sha256 {digest}, the card says {expected}")
    import keras
    import tensorflow as tf

    if settings.tf_threads:
        tf.config.threading.set_intra_op_parallelism_threads(settings.tf_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    from app.sidecar.gradcam import GradCam

    model = keras.models.load_model(keras_path, compile=False)
    if int(model.inputs[0].shape[1]) != card.preprocessing.input_size:
        raise ModelMismatchError("Keras input size differs from the card's preprocessing input_size")
    return card, GradCam(model, card.gradcam_layers, card.threshold)


def create_app(settings: SidecarSettings | None = None) -> FastAPI:
    settings = settings or SidecarSettings()
    state = SidecarState(settings)
    # One Grad-CAM at a time (the cores are shared with the API); an asyncio lock so a
    # request whose caller gave up while queued is dropped instead of computed.
    gate = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await run_in_threadpool(state.load)
        yield

    app = FastAPI(title="Grad-CAM sidecar", version="1.0.0", lifespan=lifespan)
    app.state.sidecar = state

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.gradcam is None or state.card is None:
            return JSONResponse(status_code=503, content={
                "status": "unavailable", "detail": state.load_error or "model is loading"})
        return JSONResponse({
            "status": "ok", "model_version": state.card.version, "layer": state.gradcam.layer_name,
            "grid": list(state.gradcam.grid), "warmup_ms": state.warmup_ms, "xla": state.gradcam.jit_compile,
        })

    def loaded(request: Request) -> tuple[ModelCard, GradCam]:
        """The card and engine, or the HTTP error that says why not (503, or 409 for another model)."""
        if state.gradcam is None or state.card is None:
            raise HTTPException(status_code=503, detail=f"model not loaded: {state.load_error or 'starting'}")
        version = request.headers.get(MODEL_VERSION_HEADER)
        if version is not None and version != state.card.version:
            raise HTTPException(status_code=409,
                                detail=f"sidecar runs model {state.card.version}, request is for {version}")
        return state.card, state.gradcam

    async def read_body(request: Request, expected_bytes: int) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) != expected_bytes:
            raise HTTPException(status_code=422, detail=f"body has {declared} bytes, the shape says {expected_bytes}")
        return await request.body()

    async def answer(request: Request, card: ModelCard, engine: GradCam, compute: Callable[[], GradcamMap]
                     ) -> JSONResponse:
        def work() -> dict:
            start = time.perf_counter()
            result = compute()
            return {
                "model_version": card.version,
                "layer": engine.layer_name,
                "probability": result.probability,
                "heatmaps": {label: np.round(heat, HEATMAP_DECIMALS).tolist()
                             for label, heat in result.heatmaps.items()},
                "empty_heatmaps": result.empty,
                "timings_ms": {"gradcam": round((time.perf_counter() - start) * 1000, 2)},
            }

        async with gate:
            if await request.is_disconnected():
                return JSONResponse(status_code=499, content={"detail": "client went away while queued"})
            return JSONResponse(await run_in_threadpool(work))

    @app.post(IMAGE_PATH)
    async def gradcam(request: Request) -> JSONResponse:
        """The maps of one model input (uint8 S x S): the whole network forward and back."""
        card, engine = loaded(request)
        try:
            input_shape = parse_shape(request.headers.get(INPUT_SHAPE_HEADER), INPUT_SHAPE_HEADER)
        except ProtocolError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        size = card.preprocessing.input_size
        if input_shape != (size, size):
            raise HTTPException(status_code=422, detail=f"model input must be {size},{size}")
        body = await read_body(request, size * size)
        try:
            enhanced = decode_request(body, (size, size))
        except ProtocolError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return await answer(request, card, engine, lambda: engine.compute(Preprocessor.to_float(enhanced)))

    @app.post(ACTIVATIONS_PATH)
    async def gradcam_from_activations(request: Request) -> JSONResponse:
        """The maps from the Grad-CAM layers' activations (float32 C x H x W, from the API's ONNX call): only
        the network after those layers runs here."""
        card, engine = loaded(request)
        try:
            shape = parse_shape(request.headers.get(ACTIVATIONS_SHAPE_HEADER), ACTIVATIONS_SHAPE_HEADER, "C,H,W")
        except ProtocolError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        if shape != engine.activations_shape:
            expected = ",".join(str(n) for n in engine.activations_shape)
            raise HTTPException(status_code=422, detail=f"activations must be {expected}")
        body = await read_body(request, 4 * int(np.prod(shape)))
        try:
            activations = decode_activations_request(body, shape)
        except ProtocolError as exc:
            raise HTTPException(status_code=422, detail=str(exc)) from None
        return await answer(request, card, engine, lambda: engine.compute_from_activations(activations))

    return app


app = create_app()
