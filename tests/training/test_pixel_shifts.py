"""`training.shift.pixel_shift_stability`: how far an answer moves when the film moves by a pixel or three."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TRAIN_224
from training.cli import main
from training.data import list_samples
from training.metrics import roc_auc
from training.shift import Scorer, _translate, load_films, pixel_shift_stability


def test_translate_moves_the_film_by_whole_pixels_and_fills_the_gap_from_the_edge():
    img = np.arange(36, dtype=np.uint8).reshape(6, 6) * 7
    right = _translate(2, 0)(img)
    np.testing.assert_array_equal(right[:, 2:], img[:, :-2])
    np.testing.assert_array_equal(right[:, :2], np.repeat(img[:, :1], 2, axis=1))  # edge column repeated
    down = _translate(0, -1)(img)  # negative dy moves it up
    np.testing.assert_array_equal(down[:-1], img[1:])


def test_pixel_shift_stability_summarises_each_films_worst_direction(tiny_model_dir: Path):
    scorer = Scorer(tiny_model_dir)
    films = load_films(list_samples(TRAIN_224 / "train")[:12])
    rows = pixel_shift_stability(scorer, films, pixels=(1, 3))
    assert [r["pixels"] for r in rows] == [1, 3]
    # recomputed by hand for 3 px: the four directions scored one by one (`_translate` is tested above)
    base, threshold = scorer.gray(films), scorer.card.threshold
    moved = np.stack([scorer.gray(films, _translate(dx, dy)) for dx, dy in ((3, 0), (0, 3), (-3, 0), (0, -3))])
    worst = np.abs(moved - base).max(axis=0)
    assert rows[1]["mean_abs_change"] == pytest.approx(np.abs(moved - base).mean())
    assert rows[1]["worst_direction_p95"] == pytest.approx(np.quantile(worst, 0.95))
    assert rows[1]["max_abs_change"] == pytest.approx(worst.max()) and worst.max() > 0  # not shift-invariant
    flips = ((moved >= threshold) != (base >= threshold)).any(axis=0).mean()
    assert rows[1]["label_flip_rate"] == pytest.approx(flips)
    # a film shifted by 0 pixels is the film: nothing moves
    assert pixel_shift_stability(scorer, films, pixels=(0,))[0]["max_abs_change"] == 0


def test_the_stability_command_reports_one_models_steadiness(tiny_model_dir: Path, tmp_path: Path, capsys):
    out = tmp_path / "stability.json"
    assert main(["stability", "--model", str(tiny_model_dir), "--data", str(TRAIN_224), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report == json.loads(capsys.readouterr().out)
    test_dev = list_samples(TRAIN_224 / "test_dev")
    assert report["split"] == "test_dev" and report["films"] == len(test_dev)
    assert [r["pixels"] for r in report["pixel_shifts"]] == [1, 2, 3]
    scorer = Scorer(tiny_model_dir)
    as_is = next(r for r in report["framing_sensitivity"] if r["framing"] == "as is")
    labels = np.array([s.label for s in test_dev])
    assert as_is["roc_auc"] == pytest.approx(roc_auc(labels, scorer.gray(load_films(test_dev))))
    assert list(report["resize_paths"]) == ["PNG of the full decode", "PNG, Pillow bilinear to model size",
                                            "PNG, OpenCV area to model size", "PNG, Pillow bicubic to model size"]
    # the chain decodes a JPEG fully, so its lossless PNG gets the very same answer
    assert report["resize_paths"]["PNG of the full decode"]["max_abs_diff_vs_jpeg"] == 0
