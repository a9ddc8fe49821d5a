"""The web page for people: `/` and its static files (plain HTML, CSS, JS; no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

STATIC = Path(__file__).resolve().parents[1] / "static"
_FILES = {"app.css": "text/css", "app.js": "text/javascript"}

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/static/{name}", include_in_schema=False)
async def static(name: str) -> FileResponse:
    if name not in _FILES:  # a fixed list: no path handling, no traversal
        raise HTTPException(status_code=404, detail="not found")
    return FileResponse(STATIC / name, media_type=_FILES[name], headers={"Cache-Control": "no-cache"})
