"""Health: /health (readiness plus sidecar status), /health/live, /health/ready."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.state import ServiceState, State

router = APIRouter()


def _not_ready(state: ServiceState) -> JSONResponse:
    return JSONResponse(status_code=503, content={
        "status": "unavailable", "model_loaded": False, "detail": state.public_load_status,
    })


@router.get("/health", summary="200 once the model is loaded (503 before), with the sidecar's status")
async def health(state: State) -> JSONResponse:
    if state.engine is None:
        return _not_ready(state)
    reachable, detail = (False, "not configured")
    if state.gradcam is not None:
        reachable, detail = await state.gradcam.healthy()
    return JSONResponse({
        "status": "ok",
        "model_loaded": True,
        "model_version": state.engine.card.version,
        "sidecar": {"url": state.settings.gradcam_url, "reachable": reachable, "detail": detail},
    })


@router.get("/health/live", summary="the process answers")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/health/ready", summary="the model is loaded (no sidecar check)")
async def ready(state: State) -> JSONResponse:
    if state.engine is None:
        return _not_ready(state)
    return JSONResponse({"status": "ok", "model_loaded": True, "model_version": state.engine.card.version})
