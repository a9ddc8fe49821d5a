"""The in-memory multipart reader against Starlette's streaming parser, and on malformed bodies."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.datastructures import UploadFile
from starlette.requests import Request

from app.api.multipart import MultipartError, Part, boundary_of, iter_parts

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
FILENAMES = st.text(alphabet="abcxyz .-_\u00e9", min_size=1, max_size=12)
# Payloads made to look like multipart: CRLFs, dashes and boundary-like prefixes.
DATA = st.lists(st.sampled_from([b"\r\n", b"--", b"-", b"\r", b"\n", b"x", b"\x00\xff", b"--bound", b" "]),
                max_size=40).map(b"".join)


def build(parts: list[tuple[str, str | None, bytes]], boundary: bytes, preamble: bytes = b"",
          epilogue: bytes = b"") -> bytes:
    out = [preamble + b"\r\n" if preamble else b""]
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out.append(b"--" + boundary + b"\r\nContent-Disposition: " + disposition.encode() + b"\r\n")
        if filename is not None:
            out.append(b"Content-Type: application/octet-stream\r\n")
        out.append(b"\r\n" + data + b"\r\n")
    out.append(b"--" + boundary + b"--\r\n" + epilogue)
    return b"".join(out)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def starlette_parts(body: bytes, boundary: bytes) -> list[Part]:
    async def parse() -> list[Part]:
        chunks = [body[i:i + 7] for i in range(0, len(body), 7)]  # small chunks: its streaming paths too

        async def receive() -> dict:
            return {"type": "http.request", "body": chunks.pop(0) if chunks else b"", "more_body": bool(chunks)}

        headers = [(b"content-type", b"multipart/form-data; boundary=" + boundary)]
        form = await Request({"type": "http", "method": "POST", "headers": headers}, receive).form(
            max_files=1000, max_fields=1000)
        out = []
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                out.append(Part(name, value.filename, await value.read()))
            else:
                out.append(Part(name, None, value.encode()))
        await form.close()
        return out

    return asyncio.run(parse())


@settings(max_examples=150, deadline=None)
@given(parts=st.lists(st.tuples(NAMES, st.none() | FILENAMES, DATA), min_size=1, max_size=5),
       preamble=st.sampled_from([b"", b"ignored preamble"]), epilogue=st.sampled_from([b"", b"trailing junk"]))
def test_same_parts_as_starlette(parts: list[tuple[str, str | None, bytes]], preamble: bytes, epilogue: bytes) -> None:
    boundary = b"bound4ry7"  # not in DATA's pieces, as a real client picks one absent from the payload
    body = build(parts, boundary, preamble, epilogue)
    mine = list(iter_parts(body, boundary, max_parts=10))
    assert mine == [Part(n, f, d) for n, f, d in parts]
    # Starlette decodes plain fields as UTF-8, and python-multipart refuses a preamble (RFC 2046 allows one).
    if not preamble and all(filename is not None or _is_utf8(data) for _, filename, data in parts):
        assert mine == starlette_parts(body, boundary)


@pytest.mark.parametrize("body", [
    b"",  # no boundary at all
    b"--b\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\ndata",  # ends inside a part
    b"--b\r\nContent-Disposition: form-data; name=\"f\"",  # unterminated headers
    b"--b\r\nX-Other: 1\r\n\r\ndata\r\n--b--",  # no Content-Disposition
    b"--b\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\ndata\r\n--b--",  # not form-data
    b"--b\r\nContent-Disposition: form-data\r\n\r\ndata\r\n--b--",  # no name
    b"--bjunk\r\nContent-Disposition: form-data; name=\"f\"\r\n\r\nd\r\n--b--",  # bad delimiter line
    b"--b\r\nno colon here\r\n\r\nd\r\n--b--",  # malformed header
])
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(MultipartError):
        list(iter_parts(body, b"b", max_parts=10))


def test_part_count_is_bounded() -> None:
    body = build([("f", None, b"x")] * 5, b"b")
    assert len(list(iter_parts(body, b"b", max_parts=5))) == 5
    with pytest.raises(MultipartError, match="more than 4 parts"):
        list(iter_parts(body, b"b", max_parts=4))


@pytest.mark.parametrize(("content_type", "boundary"), [
    ("multipart/form-data; boundary=abc", b"abc"),
    ('multipart/form-data; boundary="quoted; x"', b"quoted; x"),
    ("Multipart/Form-Data; boundary=abc", b"abc"),
    ("application/json", None),
    ("image/jpeg", None),
    (None, None),
])
def test_boundary_of(content_type: str | None, boundary: bytes | None) -> None:
    assert boundary_of(content_type) == boundary


def test_boundary_missing_is_malformed() -> None:
    with pytest.raises(MultipartError):
        boundary_of("multipart/form-data")
