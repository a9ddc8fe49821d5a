"""GET /model: the model card the service runs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from app.api.state import State

router = APIRouter()


@router.get("/model", summary="the model card: version, hashes, input size, preprocessing, threshold, metrics")
async def model(state: State) -> dict[str, Any]:
    card = state.require_engine().card
    return {
        **card.raw,
        "version": card.version,
        "threshold": card.threshold,
        "input_size": card.preprocessing.input_size,
        "preprocessing": {**card.raw.get("preprocessing", {}), **card.preprocessing.to_dict()},
    }
