"""Reading the uploaded files: Starlette's form parser (python-multipart) under the API's limits.

The body size is capped before and while it is read by `BodySizeLimitMiddleware`; here a body
that crosses the cap is a 413, a malformed multipart body a 400, and a missing or empty file a
422, with the same messages for `/predict` and `/predict/batch`.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.api.middleware.body_limit import BodyTooLargeError, too_large_detail

FILE_FIELD = "file"  # /predict
FILES_FIELD = "files"  # /predict/batch, repeated once per file
MAX_FIELDS = 16  # plain form fields tolerated beside the files
MAX_FIELD_BYTES = 64 * 1024  # a plain form field is a short string, never an image


class FileError(Exception):
    """One file's failure outside the image chain (empty, over the size limit); `status_code` as /predict says it."""

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(detail)
        self.status_code = status_code


@dataclass(frozen=True)
class UploadedFile:
    filename: str
    data: bytes | FileError


async def read_files(request: Request, field: str, limit: int, max_parts: int) -> list[UploadedFile]:
    """The files of `field`, in order, with their bytes or each one's own error (413 over `limit`, 422 empty).

    The request as a whole: 413 when the body crosses the size limit while it is read, 400 when it
    is malformed or has more than `max_parts` files (the body's size limit bounds the work anyway).
    """
    try:
        form = await _parse(request, max_parts)
    except BodyTooLargeError:
        raise HTTPException(status_code=413, detail=too_large_detail(limit)) from None
    except MultiPartException as exc:
        raise HTTPException(status_code=400, detail=f"malformed multipart body: {exc.message}") from None
    try:
        return [await _read(value, limit) for name, value in form.multi_items()
                if name == field and isinstance(value, UploadFile)]
    finally:
        await form.close()


class _CompleteBodyParser(MultiPartParser):
    """Starlette's multipart parser, which also notices a body that stops before its closing boundary.

    python-multipart's `finalize` does not check that it reached the end (a TODO in its source), so a
    truncated upload would otherwise lose its last part silently and be answered "file required".
    """

    ended = False

    def on_end(self) -> None:
        self.ended = True


async def _parse(request: Request, max_parts: int) -> FormData:
    """The request's multipart form (empty for any other content type); MultiPartException when malformed."""
    content_type, _ = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data":
        return FormData()
    parser = _CompleteBodyParser(request.headers, request.stream(), max_files=max_parts, max_fields=MAX_FIELDS,
                                 max_part_size=MAX_FIELD_BYTES)
    form = await parser.parse()
    if not parser.ended:
        await form.close()
        raise MultiPartException("the body ends before its closing boundary")
    return form


async def _read(upload: UploadFile, limit: int) -> UploadedFile:
    data = await upload.read()
    error = (FileError(413, too_large_detail(limit)) if len(data) > limit
             else FileError(422, "the file is empty") if not data else None)
    return UploadedFile(upload.filename or "", error or data)


async def read_upload(request: Request, limit: int) -> bytes:
    """The bytes of the `file` field: 413 over `limit`, 422 when missing or empty, 400 for two files."""
    files = await read_files(request, FILE_FIELD, limit, max_parts=1 + MAX_FIELDS)
    if not files:
        raise HTTPException(status_code=422, detail=f"multipart form field '{FILE_FIELD}' (an image file) is required")
    if len(files) > 1:
        raise HTTPException(status_code=400, detail="one file per /predict; POST /predict/batch takes several")
    data = files[0].data
    if isinstance(data, FileError):
        raise HTTPException(status_code=data.status_code, detail=str(data))
    return data
