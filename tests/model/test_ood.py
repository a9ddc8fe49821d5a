"""The out-of-distribution check at serving time (app.model.ood), on the shipped model and real films."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.imaging.colour import colour_saturation
from app.imaging.preprocess import Preprocessor
from app.model.card import load_model_card
from app.model.ood import OodDetector, OodIntegrityError, dicom_header_reasons
from app.model.session import open_session
from tests.conftest import TRAIN_224, VAL16, needs_shared


@pytest.fixture(scope="module")
def shipped(shipped_model_dir: Path):
    card = load_model_card(shipped_model_dir)
    detector = OodDetector.from_dir(shipped_model_dir)
    if detector is None or card.features_name is None:
        pytest.skip("the shipped model has no OOD check (run python -m training ood)")
    session = open_session(shipped_model_dir / card.onnx_file)
    pre = Preprocessor(card.preprocessing)

    def check(images: list[bytes], colour: list[float | None] | None = None):
        """Uploads as /predict sees them: decode, chain, ONE onnxruntime call, then the checks."""
        enhanced = np.stack([pre.enhance(pre.resize(pre.decode(data))) for data in images])
        batch = (enhanced.astype(np.float32) / 255.0)[..., np.newaxis]
        _, features = session.run([card.output_name, card.features_name], {card.input_name: batch})
        return detector.check_batch(features, enhanced, colour or [None] * len(images))

    return check


def _jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def _png(image: np.ndarray) -> bytes:
    return cv2.imencode(".png", image)[1].tobytes()


@needs_shared
def test_real_films_pass(shipped):
    films = sorted((TRAIN_224 / "test_dev" / "NORMAL").glob("*.jpeg"))[:12]
    films += sorted((TRAIN_224 / "test_dev" / "PNEUMONIA").glob("*.jpeg"))[:12]
    films += sorted(VAL16.glob("*/*.jpeg"))[:4]  # full resolution: the other resize path
    results = shipped([p.read_bytes() for p in films])
    assert all(r.in_distribution for r in results), [(p.name, r) for p, r in zip(films, results, strict=True)]
    assert all(0.0 < r.score <= 1.0 and not r.reasons for r in results)


@needs_shared
def test_negatives_are_flagged(shipped):
    rng = np.random.default_rng(0)
    film = cv2.imread(str(sorted((TRAIN_224 / "test_dev" / "NORMAL").glob("*.jpeg"))[0]), cv2.IMREAD_GRAYSCALE)
    page = np.full((900, 700), 255, np.uint8)
    for y in range(60, 860, 28):
        cv2.putText(page, "Lorem ipsum dolor sit amet 123", (40, y), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 0, 2)
    negatives = {
        "constant": _png(np.full((512, 512), 128, np.uint8)),
        "noise": _png(rng.integers(0, 256, (400, 600), dtype=np.uint8)),
        "document": _png(page),
        "inverted film": _jpeg(255 - film),
        "rotated film": _jpeg(np.ascontiguousarray(np.rot90(film))),
    }
    results = shipped(list(negatives.values()))
    for name, r in zip(negatives, results, strict=True):
        assert not r.in_distribution and r.score > 1.0 and r.reasons, name


@needs_shared
def test_films_turned_any_way_are_flagged_by_the_orientation_check(shipped, shipped_model_dir: Path):
    if "orientation" not in OodDetector.from_dir(shipped_model_dir).thresholds:  # type: ignore[union-attr]
        pytest.skip("the shipped model's OOD fit predates the orientation check")
    films = sorted((TRAIN_224 / "test_dev" / "NORMAL").glob("*.jpeg"))[:4]
    films += sorted((TRAIN_224 / "test_dev" / "PNEUMONIA").glob("*.jpeg"))[:4]
    gray = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in films]
    upright = shipped([_jpeg(g) for g in gray])
    assert all(r.in_distribution and r.checks["orientation"] < 1.0 for r in upright)
    for turns in (1, 2, 3):
        turned = shipped([_jpeg(np.ascontiguousarray(np.rot90(g, turns))) for g in gray])
        assert all(r.checks["orientation"] > 1.0 and not r.in_distribution for r in turned), (turns, turned)
        assert all("the image looks turned: on its side or upside down" in r.reasons for r in turned)


def test_orientation_ratio_is_a_likelihood_ratio_of_upright_against_turned():
    from app.model.ood import Gaussian, orientation_ratio

    grid = 4
    rng = np.random.default_rng(0)
    upright = np.linspace(0, 1, grid * grid).reshape(grid, grid)  # a layout with a clear top and bottom
    films = upright + 0.02 * rng.standard_normal((50, grid, grid))
    layout = Gaussian(films.reshape(50, -1).mean(0), np.eye(grid * grid) / 0.02)
    assert (orientation_ratio(films.reshape(50, -1), layout, grid) < 0.2).all()
    flipped = np.rot90(films, 2, axes=(1, 2)).reshape(50, -1)
    assert (orientation_ratio(flipped, layout, grid) > 5).all()


@needs_shared
def test_colour_alone_flags_an_otherwise_passing_film(shipped):
    data = (TRAIN_224 / "test_dev" / "NORMAL").glob("*.jpeg").__next__().read_bytes()
    grey, tinted = shipped([data, data], [0.0, 0.3])
    assert grey.in_distribution
    assert not tinted.in_distribution and tinted.checks["colour"] > 1.0
    assert tinted.reasons == ["the image is in colour; X-ray films are grey"]


def test_check_and_check_batch_agree(shipped_model_dir: Path):
    detector = OodDetector.from_dir(shipped_model_dir)
    if detector is None:
        pytest.skip("no OOD check in the shipped model")
    rng = np.random.default_rng(1)
    dim = detector.section["features"]["dim"]
    features = rng.random((3, dim)).astype(np.float32)
    enhanced = rng.integers(0, 256, (3, 224, 224), dtype=np.uint8)
    batch = detector.check_batch(features, enhanced, [None, 0.2, 0.0])
    single = [detector.check(f, e, s) for f, e, s in zip(features, enhanced, [None, 0.2, 0.0], strict=True)]
    for b, one in zip(batch, single, strict=True):  # BLAS may round a batch differently in the last digit
        assert (b.in_distribution, b.reasons, set(b.checks)) == (one.in_distribution, one.reasons, set(one.checks))
        assert b.score == pytest.approx(one.score, rel=1e-9)
    assert "colour" not in batch[0].checks and "colour" in batch[1].checks


def test_a_card_without_an_ood_section_gives_none(shipped_model_dir: Path, tmp_path: Path):
    card = json.loads((shipped_model_dir / "model_card.json").read_text())
    card.pop("ood", None)
    card["output"].pop("features", None)
    (tmp_path / "model_card.json").write_text(json.dumps(card))
    assert OodDetector.from_dir(tmp_path) is None
    assert load_model_card(tmp_path).features_name is None


def test_statistics_that_are_not_the_cards_are_refused(shipped_model_dir: Path, tmp_path: Path):
    card = json.loads((shipped_model_dir / "model_card.json").read_text())
    if "ood" not in card:
        pytest.skip("no OOD check in the shipped model")
    shutil.copyfile(shipped_model_dir / "model_card.json", tmp_path / "model_card.json")
    with pytest.raises(OodIntegrityError, match="missing"):
        OodDetector.from_dir(tmp_path)
    np.savez(tmp_path / card["ood"]["file"], features_mean=np.zeros(3))
    with pytest.raises(OodIntegrityError, match="sha256"):
        OodDetector.from_dir(tmp_path)


@pytest.mark.parametrize(("tags", "flagged"), [
    ({"modality": "CT"}, ["modality is CT"]),
    ({"modality": "MR", "body_part_examined": "HEAD"}, ["modality is MR", "body part is HEAD"]),
    ({"modality": "NM", "body_part_examined": "WHOLE BODY"}, ["modality is NM", "body part is WHOLE BODY"]),
    ({"modality": "US"}, ["modality is US"]),
    ({"modality": "DX", "body_part_examined": "HAND"}, ["body part is HAND"]),
    ({"modality": "CR", "body_part_examined": "CHEST"}, []),
    ({"modality": "DX", "body_part_examined": "Chest", "view_position": "PA"}, []),
    ({"modality": "DX", "body_part_examined": "THORAX"}, []),
    ({"modality": "DX"}, []),
    ({"modality": "OT"}, []),  # secondary capture: says nothing, the image checks decide
    ({"transfer_syntax": "Explicit VR Little Endian"}, []),
    (None, []),
])
def test_dicom_header_reasons(tags, flagged):
    reasons = dicom_header_reasons(tags)
    assert len(reasons) == len(flagged)
    for reason, expected in zip(reasons, flagged, strict=True):
        assert expected in reason


def test_dicom_header_reasons_on_pydicoms_files():
    from pydicom.data import get_testdata_file

    from app.imaging.dicom import dicom_summary

    ct, mr = get_testdata_file("CT_small.dcm"), get_testdata_file("MR_small.dcm")
    assert dicom_header_reasons(dicom_summary(Path(ct).read_bytes()))
    assert dicom_header_reasons(dicom_summary(Path(mr).read_bytes()))


def test_colour_saturation():
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (300, 400), dtype=np.uint8)
    assert colour_saturation(grey) == 0.0
    assert colour_saturation(np.dstack([grey] * 3)) == 0.0
    red = np.zeros((50, 60, 3), np.uint8)
    red[..., 2] = 255
    assert colour_saturation(red) == pytest.approx(1.0)
    rgba = np.dstack([red, np.zeros((50, 60), np.uint8)])  # the alpha channel is not colour
    assert colour_saturation(rgba) == pytest.approx(1.0)
    photo = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)  # sub-sampled: close to the full mean
    full = float((photo.max(axis=2).astype(float) - photo.min(axis=2)).mean() / 255)
    assert colour_saturation(photo) == pytest.approx(full, abs=0.01)
    assert colour_saturation(photo.astype(np.uint16) * 257) == pytest.approx(colour_saturation(photo), abs=1e-3)
    assert colour_saturation(photo.astype(np.float32) / 255) == pytest.approx(colour_saturation(photo), abs=1e-6)
    with pytest.raises(ValueError):
        colour_saturation(np.zeros((4, 4, 2), np.uint8))
