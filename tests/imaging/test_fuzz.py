"""Property-based fuzzing of the shared decode + preprocess chain (hypothesis).

Every input, however broken, must end in one of two ways: a 2-D uint8 image within the
pixel limit (and then a model input of the configured size), or an `ImageError`
subclass. Any other exception is a crash; the per-example deadline catches hangs; the
traced-memory peak (numpy and OpenCV output arrays) catches unbounded allocations.

The normal run tries a few hundred inputs; `slow` variants try about six times more.
Counts per strategy are written to test-artifacts/fuzz_counts.json.
"""

from __future__ import annotations

import io
import json
import struct
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable, Iterator

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from app.imaging.decode import decode_image, read_header
from app.imaging.errors import ImageError
from app.imaging.preprocess import PreprocessConfig, Preprocessor
from tests.conftest import REPO
from tests.dicom_files import dicom_12bit_windowed, dicom_from_gray, dicom_jpeg_baseline

MAX_PIXELS = 4_000_000
INPUT_SIZE = 64
# Largest decoded image within the limit is 4 MP; 16-bit, 4 channels, plus copies: well under this.
MEMORY_BOUND = 160 * 1024 * 1024
# A guard against hangs, not a timing (timings live in benchmarks/): one input takes milliseconds
# alone, but CI may share the cores with other suites, and tracemalloc slows allocation.
PER_INPUT_S = 30.0
FAST = settings(max_examples=40, deadline=PER_INPUT_S * 1000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
LONG = settings(FAST, max_examples=250, derandomize=False)
COUNTS: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()


@pytest.fixture(scope="module", autouse=True)
def _traced_memory_and_counts() -> Iterator[None]:
    tracemalloc.start()
    yield
    tracemalloc.stop()
    out = REPO / "test-artifacts"
    out.mkdir(exist_ok=True)
    path = out / "fuzz_counts.json"
    previous = json.loads(path.read_text()) if path.exists() else {}
    previous["decode_chain"] = {"inputs_by_strategy": dict(COUNTS), "total": sum(COUNTS.values()),
                                "outcomes": dict(OUTCOMES)}
    path.write_text(json.dumps(previous, indent=2))


def check_chain(data: bytes, kind: str) -> None:
    """The property: processed or rejected with the module's own error type, in bounded time and memory."""
    COUNTS[kind] += 1
    pre = Preprocessor(PreprocessConfig(input_size=INPUT_SIZE))
    tracemalloc.reset_peak()
    start = time.perf_counter()
    try:
        header = read_header(data)
        gray = decode_image(data, max_pixels=MAX_PIXELS, reduce_to_min_side=INPUT_SIZE)
        model_input = pre.from_gray(gray)
    except ImageError as exc:
        assert 400 <= exc.status_code < 500
        OUTCOMES[type(exc).__name__] += 1
    else:
        OUTCOMES["decoded"] += 1
        assert gray.ndim == 2 and gray.dtype == np.uint8 and gray.size > 0
        assert gray.size <= MAX_PIXELS and header.width * header.height <= MAX_PIXELS
        assert model_input.shape == (INPUT_SIZE, INPUT_SIZE) and model_input.dtype == np.float32
        assert np.isfinite(model_input).all() and 0.0 <= model_input.min() <= model_input.max() <= 1.0
    assert time.perf_counter() - start < PER_INPUT_S
    assert tracemalloc.get_traced_memory()[1] < MEMORY_BOUND


# --- valid images of every awkward kind -----------------------------------------------------------

def _pixels(width: int, height: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (height, width), dtype=np.uint8)


def _pil(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def _make(kind: str, width: int, height: int, seed: int) -> bytes:
    gray = _pixels(width, height, seed)
    if kind == "jpeg_gray":
        return _pil(Image.fromarray(gray), "JPEG")
    if kind == "jpeg_rgb":
        return _pil(Image.fromarray(np.dstack([gray] * 3)), "JPEG", quality=70)
    if kind == "jpeg_cmyk":
        return _pil(Image.fromarray(np.dstack([gray] * 4), "CMYK"), "JPEG")
    if kind == "jpeg_progressive":
        return _pil(Image.fromarray(gray), "JPEG", progressive=True)
    if kind == "png_gray":
        return _pil(Image.fromarray(gray), "PNG")
    if kind == "png_16bit":
        return cv2.imencode(".png", gray.astype(np.uint16) * 257)[1].tobytes()
    if kind == "png_16bit_rgb":
        return cv2.imencode(".png", np.dstack([gray.astype(np.uint16) * 64] * 3))[1].tobytes()
    if kind == "png_palette":
        return _pil(Image.fromarray(np.dstack([gray] * 3)).convert("P", palette=Image.Palette.ADAPTIVE), "PNG")
    if kind == "png_palette_transparent":
        return _pil(Image.fromarray(gray % 16).convert("P"), "PNG", transparency=0)
    if kind == "png_1bit":
        return _pil(Image.fromarray(gray).convert("1"), "PNG")
    if kind == "png_rgba":
        return _pil(Image.fromarray(np.dstack([gray] * 4), "RGBA"), "PNG")
    if kind == "png_la":
        return _pil(Image.fromarray(np.dstack([gray] * 2), "LA"), "PNG")
    if kind == "png_interlaced":
        return cv2.imencode(".png", gray)[1].tobytes()  # plus a gray PNG from another encoder
    if kind == "apng":
        frames = [Image.fromarray(gray), Image.fromarray(255 - gray)]
        return _pil(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=100, loop=0)
    if kind == "gif_animated":
        frames = [Image.fromarray(gray), Image.fromarray(255 - gray)]
        return _pil(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    if kind == "webp_animated":
        frames = [Image.fromarray(gray).convert("RGB"), Image.fromarray(255 - gray).convert("RGB")]
        return _pil(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=100)
    if kind == "dicom_8bit":
        return dicom_from_gray(gray)
    if kind == "dicom_12bit":
        return dicom_12bit_windowed(gray)
    if kind == "dicom_jpeg":
        return dicom_jpeg_baseline(gray)
    raise AssertionError(kind)


KINDS = ["jpeg_gray", "jpeg_rgb", "jpeg_cmyk", "jpeg_progressive", "png_gray", "png_16bit", "png_16bit_rgb",
         "png_palette", "png_palette_transparent", "png_1bit", "png_rgba", "png_la", "png_interlaced", "apng",
         "gif_animated", "webp_animated", "dicom_8bit", "dicom_12bit", "dicom_jpeg"]
SIDES = st.one_of(st.integers(1, 48), st.sampled_from([1, 2, 3, 7, 8, 9, 15, 16, 17]))
SHAPES = st.one_of(
    st.tuples(SIDES, SIDES),
    st.tuples(st.just(1), st.integers(100, 6000)),  # extreme aspect ratios, both ways
    st.tuples(st.integers(100, 6000), st.just(1)),
    st.tuples(st.integers(2, 4), st.integers(500, 3000)),
)


@st.composite
def valid_images(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(KINDS))
    width, height = draw(SHAPES)
    if kind.startswith(("gif", "webp")):
        width, height = min(width, 64), min(height, 64)
    return kind, _make(kind, width, height, draw(st.integers(0, 2**16)))


# --- broken ones -------------------------------------------------------------------------------

_BASE_CACHE: dict[str, bytes] = {}


def _base(kind: str) -> bytes:
    if kind not in _BASE_CACHE:
        _BASE_CACHE[kind] = _make(kind, 40, 32, seed=1)
    return _BASE_CACHE[kind]


@st.composite
def corrupted_images(draw: st.DrawFn) -> tuple[str, bytes]:
    kind = draw(st.sampled_from([k for k in KINDS if not k.startswith(("gif", "webp"))]))
    data = bytearray(_base(kind))
    how = draw(st.sampled_from(["truncate", "flip", "splice", "truncate+flip"]))
    if "flip" in how:
        for position, value in draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(0, 255)),
                                             min_size=1, max_size=12)):
            data[position] = value
    if how == "splice":
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(min_size=1, max_size=64))
    if "truncate" in how:
        data = data[:draw(st.integers(0, len(data) - 1))]
    return f"{kind}:{how}", bytes(data)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@st.composite
def huge_declared(draw: st.DrawFn) -> tuple[str, bytes]:
    """Headers that declare up to 2^31 x 2^31 (PNG) or 65535 x 65535 (JPEG) over a few real bytes."""
    fmt = draw(st.sampled_from(["png", "jpeg", "dicom"]))
    if fmt == "png":
        width, height = draw(st.integers(1, 2**31 - 1)), draw(st.integers(1, 2**31 - 1))
        depth, color = draw(st.sampled_from([(8, 0), (16, 0), (8, 2), (16, 6), (8, 3), (1, 0)]))
        ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, draw(st.sampled_from([0, 1])))
        idat = _png_chunk(b"IDAT", zlib.compress(b"\x00" * draw(st.integers(0, 4096))))
        return "huge:png", b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + idat + _png_chunk(b"IEND", b"")
    if fmt == "jpeg":
        data = bytearray(_base("jpeg_gray"))
        sof = next(i for i in range(2, len(data) - 1) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
        data[sof + 5:sof + 7] = draw(st.integers(0, 65535)).to_bytes(2, "big")  # height
        data[sof + 7:sof + 9] = draw(st.integers(0, 65535)).to_bytes(2, "big")  # width
        return "huge:jpeg", bytes(data)
    gray = _pixels(8, 8, 0)
    from tests.dicom_files import make_dataset, to_bytes

    ds = make_dataset(gray, bits_stored=8)
    ds.Rows, ds.Columns = draw(st.integers(0, 65535)), draw(st.integers(0, 65535))
    return "huge:dicom", to_bytes(ds)


MAGICS = [b"", b"\xff\xd8\xff", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
          b"\x00" * 128 + b"DICM", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"BM", b"II*\x00"]


@st.composite
def random_bytes(draw: st.DrawFn) -> tuple[str, bytes]:
    magic = draw(st.sampled_from(MAGICS))
    return "random" if not magic else "random+magic", magic + draw(st.binary(max_size=2048))


# --- the properties, in a normal and a long variant ----------------------------------------------

def _both(strategy: st.SearchStrategy[tuple[str, bytes]]) -> tuple[Callable, Callable]:
    def body(case: tuple[str, bytes]) -> None:
        check_chain(case[1], case[0])

    fast = FAST(given(strategy)(body))
    long = pytest.mark.slow(LONG(given(strategy)(body)))
    return fast, long


test_valid_awkward_images, test_valid_awkward_images_long = _both(valid_images())
test_corrupted_images, test_corrupted_images_long = _both(corrupted_images())
test_huge_declared_dimensions, test_huge_declared_dimensions_long = _both(huge_declared())
test_random_bytes, test_random_bytes_long = _both(random_bytes())


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("shape", [(1, 1), (1, 5000), (5000, 1), (2, 1999)])
def test_fixed_awkward_cases(kind: str, shape: tuple[int, int]) -> None:
    """1x1 and extreme aspect ratios of every kind, always tried (not left to chance)."""
    width, height = shape
    if kind.startswith(("gif", "webp")):
        width, height = min(width, 64), min(height, 64)
    check_chain(_make(kind, width, height, 0), f"fixed:{kind}")


def test_dicom_with_a_short_meta_element_is_rejected_not_crashed() -> None:
    """Found by the long fuzzer: a 1-byte (0002,0000) UL value made pydicom raise BytesLengthException."""
    data = bytearray(_base("dicom_8bit"))
    assert data[132:138] == b"\x02\x00\x00\x00UL"
    broken = bytes(data[:138]) + b"\x01\x00" + bytes(data[140:141]) + bytes(data[144:])
    check_chain(broken, "regression:dicom_short_ul")
    from app.imaging.dicom import dicom_summary

    with pytest.raises(ImageError):
        dicom_summary(broken)


def test_animated_and_foreign_formats_are_refused_not_crashed() -> None:
    from app.imaging.errors import UnsupportedFormatError

    for kind in ("gif_animated", "webp_animated"):
        with pytest.raises(UnsupportedFormatError):
            decode_image(_make(kind, 16, 16, 0))
    apng = decode_image(_make("apng", 16, 12, 0))  # the first frame, like any viewer's still
    assert apng.shape == (12, 16)
