"""The shared chain: every input kind decodes to the same kind of model input, deterministically."""

from __future__ import annotations

from dataclasses import astuple

import cv2
import numpy as np
import pytest

from app.imaging.decode import decode_image, read_header, sniff_format, to_uint8_gray
from app.imaging.errors import CorruptImageError, ImageTooLargeError, UnsupportedFormatError
from app.imaging.preprocess import FULL_VIEW, PreprocessConfig, Preprocessor, View, to_batch


def _film(h: int = 300, w: int = 260, seed: int = 0) -> np.ndarray:
    """A smooth synthetic 'film' (gradients + blobs) so CLAHE has structure to work on."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = 80 + 60 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + rng.normal(0, 8, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def _encode(ext: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.fixture
def pre() -> Preprocessor:
    return Preprocessor(PreprocessConfig())


def test_from_bytes_output_is_unit_float_at_model_size(pre):
    out = pre.from_bytes(_encode(".png", _film()))
    assert out.shape == (224, 224)
    assert out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert out.std() > 0.05  # CLAHE spread the histogram


def test_from_bytes_is_deterministic(pre):
    data = _encode(".jpg", _film())
    first = pre.from_bytes(data)
    second = Preprocessor(PreprocessConfig()).from_bytes(data)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_png_channel_counts_give_the_same_input(pre, channels):
    gray = _film()
    image = gray if channels == 1 else cv2.merge([gray] * 3 + ([np.full_like(gray, 255)] if channels == 4 else []))
    np.testing.assert_array_equal(pre.from_bytes(_encode(".png", image)), pre.from_gray(gray))


def test_sixteen_bit_png_of_an_eight_bit_film_matches_it_exactly(pre):
    gray = _film()
    wide = gray.astype(np.uint16) * 257
    np.testing.assert_array_equal(pre.from_bytes(_encode(".png", wide)), pre.from_gray(gray))


def test_twelve_bit_data_keeps_its_contrast():
    twelve = (np.linspace(0, 4095, 64 * 64).reshape(64, 64)).astype(np.uint16)
    gray = to_uint8_gray(twelve)
    assert gray.dtype == np.uint8
    assert gray.min() == 0 and gray.max() == 255


def test_large_jpeg_is_decoded_at_full_scale_by_default(pre):
    """One film, one answer: a JPEG takes the pixels a PNG of its full decode would give."""
    big = cv2.resize(_film(), (2000, 1600))
    assert pre.decode(_encode(".jpg", big)).shape == (1600, 2000)


def test_large_jpeg_is_decoded_at_reduced_scale_on_request_but_not_below_twice_the_input():
    pre = Preprocessor(PreprocessConfig(jpeg_reduced_decode=True))
    big = cv2.resize(_film(), (2000, 1600))
    gray = pre.decode(_encode(".jpg", big))
    assert min(gray.shape) >= 2 * 224
    assert gray.shape[0] < 1600
    assert gray.shape[0] / gray.shape[1] == pytest.approx(1600 / 2000, rel=0.01)


def test_decode_rejects_non_images_by_magic_bytes():
    with pytest.raises(UnsupportedFormatError) as err:
        decode_image(b"GIF89a" + b"\0" * 64)
    assert err.value.status_code == 415


@pytest.mark.parametrize("data", [b"", b"\xff\xd8\xff" + b"\0" * 20, b"\x89PNG\r\n\x1a\n" + b"garbage" * 5])
def test_decode_rejects_empty_and_corrupt_files(data):
    with pytest.raises(CorruptImageError) as err:
        decode_image(data)
    assert err.value.status_code == 422


def test_truncated_jpeg_is_rejected_or_decoded_never_crashes(pre):
    data = _encode(".jpg", _film())
    try:
        out = pre.from_bytes(data[: len(data) // 2])
    except CorruptImageError:
        return
    assert out.shape == (224, 224)


def test_pixel_limit_is_checked_from_the_header_before_decoding():
    data = _encode(".png", np.zeros((400, 500), np.uint8))
    assert read_header(data).width == 500
    with pytest.raises(ImageTooLargeError) as err:
        decode_image(data, max_pixels=400 * 500 - 1)
    assert err.value.status_code == 413
    assert decode_image(data, max_pixels=400 * 500).shape == (400, 500)


def test_sniff_format_knows_jpeg_png_and_dicom():
    assert sniff_format(_encode(".jpg", _film())).value == "jpeg"
    assert sniff_format(_encode(".png", _film())).value == "png"
    assert sniff_format(b"\0" * 128 + b"DICM" + b"\0" * 8).value == "dicom"


def test_config_refuses_bad_values():
    with pytest.raises(ValueError):
        PreprocessConfig(median_kernel=4)
    with pytest.raises(ValueError):
        PreprocessConfig(interpolation="nearest-ish")
    with pytest.raises(ValueError):
        PreprocessConfig(clahe_clip_limit=0)


def test_config_round_trips_through_a_dict():
    config = PreprocessConfig(input_size=128, clahe_clip_limit=3.0)
    assert PreprocessConfig.from_dict({**config.to_dict(), "chain": ["ignored"]}) == config


def test_to_batch_is_nhwc_float32():
    batch = to_batch([np.zeros((8, 8), np.float32)] * 3)
    assert batch.shape == (3, 8, 8, 1) and batch.dtype == np.float32


def test_decode_with_header_reports_the_declared_size_of_a_reduced_jpeg():
    pre = Preprocessor(PreprocessConfig(jpeg_reduced_decode=True))
    big = cv2.resize(_film(), (2000, 1600))
    header, gray = pre.decode_with_header(_encode(".jpg", big))
    assert (header.format.value, header.width, header.height) == ("jpeg", 2000, 1600)
    assert gray.shape[1] < 2000  # decoded at a reduced scale, the header still says the real size


def test_border_crop_keeps_the_centre_at_model_size():
    film = np.zeros((224, 224), np.uint8)
    film[:, :5] = 255  # a bright strip in the outer 2.2% of the left side (the crop starts at 5)
    film[100:124, 100:124] = 200
    pre = Preprocessor(PreprocessConfig(border_crop=0.95, median_kernel=1))
    framed = pre.resize(film)
    assert framed.shape == (224, 224)
    assert framed.max() == 200  # the strip is cropped away
    assert framed[112, 112] == 200  # the centre stays where it was
    assert np.array_equal(Preprocessor(PreprocessConfig()).resize(film), film)  # 1.0: no crop


def test_border_crop_is_one_step_for_large_and_model_size_films():
    """A full-size film and the same film shrunk to model size go through the same crop once."""
    big = cv2.resize(_film(), (896, 896), interpolation=cv2.INTER_CUBIC)
    pre = Preprocessor(PreprocessConfig(border_crop=0.9))
    small = Preprocessor(PreprocessConfig()).resize(big)  # the sender's shrink, same Pillow filter
    np.testing.assert_array_equal(pre.resize(big), pre.resize(small))


@pytest.mark.parametrize("keep", [0.3, 1.2])
def test_border_crop_outside_its_range_is_refused(keep):
    with pytest.raises(ValueError, match="border_crop"):
        PreprocessConfig(border_crop=keep)


def _body_on_air(body_cols: tuple[int, int]) -> np.ndarray:
    """A bright 'body' (with structure) between two columns of dark air, at model size."""
    film = np.full((224, 224), 12, np.uint8)
    start, stop = body_cols
    checks = (np.add.outer(np.arange(224), np.arange(224)) // 4) % 2  # half of every row and column brighter
    film[:, start:stop] = (150 + 60 * checks[:, start:stop]).astype(np.uint8)
    return film


def test_body_crop_drops_the_air_beside_the_body():
    film = _body_on_air((40, 184))
    pre = Preprocessor(PreprocessConfig(body_crop=0.25))
    cropped = pre.resize(film)
    assert cropped.shape == (224, 224)
    assert cropped[:, :5].min() > 100 and cropped[:, -5:].min() > 100  # the body now reaches both sides
    assert np.array_equal(Preprocessor(PreprocessConfig()).resize(film), film)  # 0.0: off


def test_body_crop_leaves_a_film_the_body_fills_and_a_failed_threshold_alone():
    pre = Preprocessor(PreprocessConfig(body_crop=0.25))
    filled = _body_on_air((0, 224))
    assert np.array_equal(pre.resize(filled), filled)
    narrow = _body_on_air((100, 160))  # a box under 60% of the side is taken for a failed threshold
    assert np.array_equal(pre.resize(narrow), narrow)


def test_body_crop_then_border_crop_is_one_step_for_large_and_model_size_films():
    big = cv2.resize(_body_on_air((40, 184)), (896, 896), interpolation=cv2.INTER_NEAREST)
    pre = Preprocessor(PreprocessConfig(body_crop=0.25, border_crop=0.95))
    small = Preprocessor(PreprocessConfig()).resize(big)
    np.testing.assert_array_equal(pre.resize(big), pre.resize(small))


def test_frame_says_which_part_of_the_film_the_crops_keep():
    film = _body_on_air((40, 184))
    assert Preprocessor(PreprocessConfig()).frame(film)[1] == FULL_VIEW
    _, body = Preprocessor(PreprocessConfig(body_crop=0.25)).frame(film)
    assert body == View(0.0, 40 / 224, 1.0, 184 / 224)
    _, border = Preprocessor(PreprocessConfig(border_crop=0.9)).frame(cv2.resize(film, (500, 400)))
    assert astuple(border) == pytest.approx((11 / 224, 11 / 224, 213 / 224, 213 / 224))  # 202 px of 224 kept
    _, both = Preprocessor(PreprocessConfig(body_crop=0.25, border_crop=0.9)).frame(film)
    left, width = 40 / 224, 144 / 224  # the border crop's share of the body's columns
    assert astuple(both) == pytest.approx((11 / 224, left + width * 11 / 224, 213 / 224, left + width * 213 / 224))


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_body_crop_outside_its_range_is_refused(share):
    with pytest.raises(ValueError, match="body_crop"):
        PreprocessConfig(body_crop=share)
