"""Reading the `file` field of a multipart upload under a byte cap."""

from __future__ import annotations

from fastapi import HTTPException, Request
from starlette.datastructures import UploadFile

from app.api.limits import BodyTooLargeError, too_large_detail

FIELD = "file"


async def read_upload(request: Request, limit: int) -> bytes:
    """The bytes of the `file` field; 413 over `limit`, 422 when missing or empty."""
    try:
        form = await request.form(max_files=1, max_fields=16)
    except BodyTooLargeError:
        raise HTTPException(status_code=413, detail=too_large_detail(limit)) from None
    try:
        upload = form.get(FIELD)
        if not isinstance(upload, UploadFile):
            raise HTTPException(status_code=422, detail=f"multipart form field '{FIELD}' (an image file) is required")
        data = await upload.read(limit + 1)
    finally:
        await form.close()
    if len(data) > limit:
        raise HTTPException(status_code=413, detail=too_large_detail(limit))
    if not data:
        raise HTTPException(status_code=422, detail="the file is empty")
    return data
