"""Reading the file fields of a multipart upload under a byte cap."""

from __future__ import annotations

from fastapi import HTTPException, Request

from app.api.limits import BodyTooLargeError, too_large_detail
from app.api.multipart import MultipartError, Part, boundary_of, iter_parts

FIELD = "file"
MAX_FIELDS = 16  # plain form fields tolerated beside the files


async def read_parts(request: Request, limit: int, max_parts: int | None) -> list[Part]:
    """Every part of a multipart/form-data body (none for another content type).

    413 when the body crosses the size limit while it is read, 400 when it is malformed.
    """
    try:
        boundary = boundary_of(request.headers.get("content-type"))
        if boundary is None:
            return []
        return list(iter_parts(await request.body(), boundary, max_parts))
    except BodyTooLargeError:
        raise HTTPException(status_code=413, detail=too_large_detail(limit)) from None
    except MultipartError as exc:
        raise HTTPException(status_code=400, detail=f"malformed multipart body: {exc}") from None


def files_named(parts: list[Part], field: str) -> list[Part]:
    """The parts of `field` that are files (have a filename, possibly empty)."""
    return [part for part in parts if part.name == field and part.filename is not None]


async def read_upload(request: Request, limit: int) -> bytes:
    """The bytes of the `file` field; 413 over `limit`, 422 when missing or empty, 400 for two files."""
    files = files_named(await read_parts(request, limit, max_parts=1 + MAX_FIELDS), FIELD)
    if not files:
        raise HTTPException(status_code=422, detail=f"multipart form field '{FIELD}' (an image file) is required")
    if len(files) > 1:
        raise HTTPException(status_code=400, detail="one file per /predict; POST /predict/batch takes several")
    data = files[0].data
    if len(data) > limit:
        raise HTTPException(status_code=413, detail=too_large_detail(limit))
    if not data:
        raise HTTPException(status_code=422, detail="the file is empty")
    return data
