"""multipart/form-data (RFC 7578) parts out of a whole request body held in memory.

The body is already capped by `BodySizeLimitMiddleware`, so it is read in full and the
parts are found with `bytes.find`. Starlette's streaming parser, which spools every part
through a SpooledTemporaryFile with a Python callback per chunk, took ~9% of the event
loop's time per `/predict` in a py-spy profile; this takes a few microseconds. Part
headers are parsed with python-multipart's own `parse_options_header` (quoted strings,
escapes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from python_multipart.multipart import parse_options_header

CRLF = b"\r\n"


class MultipartError(ValueError):
    """The body is not well-formed multipart/form-data (answered 400)."""


@dataclass(frozen=True)
class Part:
    name: str
    filename: str | None  # None for a plain form field, "" for a file sent without a name
    data: bytes


def boundary_of(content_type: str | None) -> bytes | None:
    """The boundary of a multipart/form-data Content-Type; None for any other type."""
    if not content_type:
        return None
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    boundary = options.get(b"boundary", b"")
    if not 1 <= len(boundary) <= 200:  # RFC 2046: 1 to 70 characters; be lenient, not unbounded
        raise MultipartError("multipart boundary missing or too long")
    return boundary


def iter_parts(body: bytes, boundary: bytes, max_parts: int | None = None) -> Iterator[Part]:
    """Each part in order; MultipartError if the body is malformed or has over `max_parts` parts
    (None: no count limit; the body's size limit bounds it)."""
    delimiter = b"--" + boundary
    if body.startswith(delimiter):
        position = len(delimiter)
    else:  # a preamble before the first delimiter is allowed and ignored
        found = body.find(CRLF + delimiter)
        if found < 0:
            raise MultipartError("no multipart boundary in the body")
        position = found + 2 + len(delimiter)
    count = 0
    while True:
        if body.startswith(b"--", position):
            return  # close delimiter; an epilogue after it is ignored
        line_end = body.find(CRLF, position)
        if line_end < 0 or body[position:line_end].strip(b" \t"):
            raise MultipartError("malformed multipart delimiter line")
        count += 1
        if max_parts is not None and count > max_parts:
            raise MultipartError(f"more than {max_parts} parts in the form")
        headers_start = line_end + 2
        if body.startswith(CRLF, headers_start):  # a part without headers
            headers_end, data_start = headers_start, headers_start + 2
        else:
            headers_end = body.find(CRLF + CRLF, headers_start)
            if headers_end < 0:
                raise MultipartError("unterminated part headers")
            data_start = headers_end + 4
        data_end = body.find(CRLF + delimiter, data_start)
        if data_end < 0:
            raise MultipartError("multipart body ends inside a part")
        yield _part(body[headers_start:headers_end], body[data_start:data_end])
        position = data_end + 2 + len(delimiter)


def _part(headers: bytes, data: bytes) -> Part:
    disposition = None
    for line in headers.split(CRLF) if headers else []:
        name, colon, value = line.partition(b":")
        if not colon:
            raise MultipartError("malformed part header")
        if name.strip().lower() == b"content-disposition":
            disposition = value.strip()
    if disposition is None:
        raise MultipartError("a part has no Content-Disposition header")
    kind, options = parse_options_header(disposition)
    if kind != b"form-data" or b"name" not in options:
        raise MultipartError("a part is not form-data with a name")
    filename = options.get(b"filename")
    return Part(options[b"name"].decode("utf-8", "replace"),
                None if filename is None else filename.decode("utf-8", "replace"), data)
