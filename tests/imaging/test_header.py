"""The byte-level size reader agrees with PIL on every real file, and defers to PIL on odd ones."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.imaging.decode import ImageFormat, _fast_size, read_header, sniff_format
from app.imaging.errors import CorruptImageError
from tests.conftest import FIXTURES, TRAIN_224, VAL16

REAL_FILES = (sorted(FIXTURES.glob("*.jpeg")) + sorted(FIXTURES.glob("*.png")) + sorted(VAL16.glob("*/*.jpeg"))
              + sorted(TRAIN_224.glob("train/NORMAL/*.jpeg"))[:20])


def _pil_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size


@pytest.mark.parametrize("path", REAL_FILES, ids=lambda p: p.name)
def test_fast_size_matches_pil(path) -> None:
    data = path.read_bytes()
    assert _fast_size(sniff_format(data), data) == _pil_size(data)
    header = read_header(data)
    assert (header.width, header.height) == _pil_size(data)


@pytest.mark.parametrize("fmt,ext", [(ImageFormat.JPEG, "JPEG"), (ImageFormat.PNG, "PNG")])
@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize("progressive", [False, True])
def test_fast_size_synthetic(fmt, ext, mode, progressive) -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 53, 3), np.uint8)).convert(mode)
    buffer = io.BytesIO()
    options = {"progressive": progressive, "exif": Image.Exif()} if ext == "JPEG" else {}
    image.save(buffer, format=ext, **options)
    data = buffer.getvalue()
    assert _fast_size(fmt, data) == (53, 37)


def test_truncated_jpeg_defers_to_pil() -> None:
    data = (FIXTURES / "normal_small.jpeg").read_bytes()[:40]
    assert _fast_size(ImageFormat.JPEG, data) is None
    with pytest.raises(CorruptImageError):
        read_header(data)


def test_garbage_after_soi_defers_to_pil() -> None:
    data = b"\xff\xd8\xff" + b"\x00" * 64
    assert _fast_size(ImageFormat.JPEG, data) is None
    with pytest.raises(CorruptImageError):
        read_header(data)


def test_the_decoder_measures_colour_only_where_it_has_colour_pixels() -> None:
    import cv2
    import numpy as np

    from app.imaging.decode import decode_with_header

    grey = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    tinted = np.stack([grey, grey, np.clip(grey.astype(np.int16) + 80, 0, 255).astype(np.uint8)], axis=-1)
    colour_png = cv2.imencode(".png", tinted)[1].tobytes()
    header, gray = decode_with_header(colour_png)
    assert header.colour_saturation is not None and header.colour_saturation > 0.1
    assert gray.ndim == 2
    assert decode_with_header(cv2.imencode(".png", grey)[1].tobytes())[0].colour_saturation is None
    assert decode_with_header(cv2.imencode(".png", np.stack([grey] * 3, -1))[1].tobytes())[0].colour_saturation == 0.0
    # JPEGs are decoded straight to grey: no colour measure, by design (a colour decode costs ~7 ms at 2.5 Mpx).
    assert decode_with_header(cv2.imencode(".jpg", tinted)[1].tobytes())[0].colour_saturation is None
