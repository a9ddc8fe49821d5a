"""Fitting the out-of-distribution check: the features output, the threshold rule, a small real fit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from app.imaging.preprocess import Preprocessor, to_batch
from app.model.card import load_model_card, sha256_of
from app.model.ood import OOD_FILE, OodDetector
from app.model.session import open_session
from tests.conftest import TRAIN_224, VAL16, needs_shared
from training.onnx_graph.features import (
    FEATURES_OUTPUT,
    has_features_output,
    with_features_output,
    without_features_output,
)
from training.ood import negatives as ood_negatives
from training.ood.data import ChainRunner
from training.ood.fit import (
    CHECKS,
    COLOUR_FLOOR,
    TAIL_P,
    FilmSets,
    fit_gaussian,
    ledoit_wolf,
    tail_threshold,
    threshold_for,
)


def _films(split: str, n: int) -> list[Path]:
    half = n // 2
    return (sorted((TRAIN_224 / split / "NORMAL").glob("*.jpeg"))[:half]
            + sorted((TRAIN_224 / split / "PNEUMONIA").glob("*.jpeg"))[: n - half])


@needs_shared
def test_the_features_output_leaves_probability_bit_identical(shipped_model_dir: Path, tmp_path: Path):
    card = load_model_card(shipped_model_dir)
    shipped = onnx.load(str(shipped_model_dir / card.onnx_file))
    if not has_features_output(shipped):
        pytest.skip("the shipped model has no features output yet")
    bare = without_features_output(shipped)
    assert not has_features_output(bare)
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    onnx.save(with_features_output(bare), str(tmp_path / "again.onnx"))
    pre = Preprocessor(card.preprocessing)
    batch = to_batch([pre.from_bytes(p.read_bytes()) for p in _films("test_dev", 24) + sorted(VAL16.glob("*/*"))[:4]])
    (before,) = open_session(tmp_path / "bare.onnx").run(["probability"], {"image": batch})
    after, features = open_session(shipped_model_dir / card.onnx_file).run(["probability", FEATURES_OUTPUT],
                                                                          {"image": batch})
    assert np.array_equal(before, after)
    assert features.shape == (len(batch), card.raw["output"]["features"]["dim"]) and features.dtype == np.float32
    again, features_again = open_session(tmp_path / "again.onnx").run(["probability", FEATURES_OUTPUT],
                                                                       {"image": batch})
    assert np.array_equal(again, after) and np.array_equal(features_again, features)
    with pytest.raises(ValueError, match="already"):
        with_features_output(shipped)


def test_tail_threshold_and_the_pass_rate_rule():
    rng = np.random.default_rng(0)
    validation, test_dev = rng.gamma(4.0, 1.0, 785), rng.gamma(4.0, 1.2, 299) + 0.5  # test_dev shifted up
    t = threshold_for("features", {"validation": validation, "test_dev": test_dev})
    assert t >= max(validation.max(), test_dev.max())
    assert np.mean(validation <= t) >= 0.995 and np.mean(test_dev <= t) >= 0.995
    # The exponential tail: about TAIL_P of fresh films from the same distribution exceed it, not 1/(n+1).
    fresh = rng.gamma(4.0, 1.2, 200_000) + 0.5
    assert np.mean(fresh > t) < 3 * TAIL_P
    # A set with one outlier: the threshold is at least its maximum.
    assert tail_threshold(np.r_[validation, 99.0]) >= 99.0
    # Contrast flags small values; colour never goes below its floor.
    std = rng.normal(55, 7, 1000)
    low = threshold_for("contrast", {"validation": std})
    assert 0 < low <= std.min()
    assert threshold_for("colour", {"validation": np.zeros(500), "test_dev": np.full(10, np.nan)}) == COLOUR_FLOOR


def test_ledoit_wolf():
    rng = np.random.default_rng(0)
    scales = np.linspace(1.0, 4.0, 20)
    many = rng.normal(size=(5000, 20)) * scales  # far from a scaled identity: little shrinkage
    cov, shrinkage = ledoit_wolf(many)
    assert 0.0 <= shrinkage < 0.05
    np.testing.assert_allclose(np.diag(cov), scales**2, rtol=0.1)
    _, shrinkage = ledoit_wolf(rng.normal(size=(5000, 20)))  # the target itself: shrink all the way
    assert shrinkage > 0.5
    few = rng.normal(size=(30, 100))  # fewer samples than dimensions: singular without shrinkage
    cov, shrinkage = ledoit_wolf(few)
    assert shrinkage > 0.5 and np.linalg.eigvalsh(cov).min() > 0
    mean, whitening, _ = fit_gaussian(few)
    z = (few - mean) @ whitening
    assert np.isfinite(z).all()


def test_negatives_are_deterministic_and_decodable():
    from app.imaging.decode import decode_image

    films = [p.read_bytes() for p in _films("test_dev", 4)] if TRAIN_224.is_dir() else None
    for kind in (*ood_negatives.DESIGN_KINDS, *ood_negatives.HELD_OUT_KINDS):
        if kind in ood_negatives.FILM_KINDS and films is None:
            continue
        first = list(ood_negatives.generate(kind, 2, films))
        second = list(ood_negatives.generate(kind, 2, films))
        assert [n.data for n in first] == [n.data for n in second], kind
        assert first and all(n.kind == kind for n in first)
        if kind != "pydicom_images":  # some of pydicom's files are refused by the decoder, on purpose
            assert all(decode_image(n.data).ndim == 2 for n in first), kind
    assert set(ood_negatives.DESIGN_KINDS).isdisjoint(ood_negatives.HELD_OUT_KINDS)


def test_a_figure_makes_its_film_count_of_the_film_kinds_and_its_other_count_of_the_rest():
    films = [p.read_bytes() for p in _films("test_dev", 4)] if TRAIN_224.is_dir() else None
    assert len(list(ood_negatives.generate_for_figure("noise", 2, 3, films))) == 2
    if films is not None:
        assert len(list(ood_negatives.generate_for_figure("film_rot90", 2, 3, films))) == 3


@needs_shared
def test_a_small_fit_meets_the_rule_and_flags_negatives(shipped_model_dir: Path, tmp_path: Path):
    """The whole fit on a copy of the shipped model with few films: card, ood.npz, pass rates, negatives."""
    from training.ood.run import fit_model_dir

    if not load_model_card(shipped_model_dir).features_name:
        pytest.skip("the shipped model has no features output yet")
    model = tmp_path / "model"
    shutil.copytree(shipped_model_dir, model, ignore=shutil.ignore_patterns("plots", "*.keras"))
    sets = FilmSets(train=_films("train", 160), validation=_films("train", 400)[-60:],
                    test_dev=_films("test_dev", 60), val16=sorted(VAL16.glob("*/*"))[:2])
    card, _ = fit_model_dir(model, sets, per_kind=2, per_film_kind=3, cost=False)
    ood = card["ood"]
    assert json.loads((model / "model_card.json").read_text())["ood"] == ood
    assert ood["sha256"] == sha256_of(model / OOD_FILE)
    assert set(ood["checks"]) == set(CHECKS) and ood["fitted_on"]["n"] == 160
    for name in ("validation", "test_dev"):
        assert ood["pass_rates"][name]["pass_rate"] >= 0.995
    detector = OodDetector.from_dir(model)
    assert detector is not None and detector.thresholds == {k: v["threshold"] for k, v in ood["checks"].items()}
    rates = {r["kind"]: r["detection_rate"] for r in ood["detection"]}
    for kind in ("constant", "noise", "colour_field", "film_inverted"):
        assert rates[kind] == 1.0, (kind, ood["detection"])
    assert "Out-of-distribution check" in (model / "MODEL_CARD.md").read_text()


@needs_shared
def test_the_features_output_is_added_once_with_a_new_version(shipped_model_dir: Path, tmp_path: Path):
    from training.ood.run import ensure_features_output

    card = json.loads((shipped_model_dir / "model_card.json").read_text())
    model = tmp_path / "model"
    model.mkdir()
    bare = without_features_output(onnx.load(str(shipped_model_dir / card["files"]["onnx"])))
    onnx.save(bare, str(model / "model.onnx"))
    card["output"].pop("features", None)
    card.pop("ood", None)
    card["onnx_sha256"] = sha256_of(model / "model.onnx")
    (model / "model_card.json").write_text(json.dumps(card))
    added = ensure_features_output(model, _films("test_dev", 8))
    new = json.loads((model / "model_card.json").read_text())
    assert added is not None and added["probability_bit_identical_on"] == 8
    assert new["onnx_sha256"] == sha256_of(model / "model.onnx")
    assert new["version"] == f"1.0.0+{new['onnx_sha256'][:12]}"
    assert new["output"]["features"]["name"] == FEATURES_OUTPUT and new["output"]["features"]["dim"] == added["dim"]
    assert ensure_features_output(model, _films("test_dev", 8)) is None  # idempotent
    runner = ChainRunner(model)
    assert runner.score_files(_films("test_dev", 2)).features.shape == (2, added["dim"])
