"""A tiny real run end to end: train -> calibrate -> export (tf2onnx) -> parity -> evaluate."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from app.model.card import load_model_card, sha256_of
from tests.conftest import REPO, VAL16


def test_tiny_run_writes_split_lists_without_shared_patients(tiny_run):
    run_dir, _ = tiny_run
    from training.data import patient_id

    def patients(name: str) -> set[str]:
        lines = (run_dir / "splits" / f"{name}.txt").read_text().splitlines()
        return {patient_id(line.split("\t")[0].rsplit("/", 1)[-1]) for line in lines if line}

    train, val = patients("train"), patients("val")
    assert train and val
    assert train.isdisjoint(val)
    assert (run_dir / "history.csv").is_file()
    assert (run_dir / "checkpoint.keras").is_file()


def test_export_passes_parity_and_records_hashes(tiny_model_dir):
    card = load_model_card(tiny_model_dir)
    raw = card.raw
    assert raw["parity"]["max_abs_diff"] <= 1e-4
    assert isinstance(raw["parity"]["subnormal_weights_zeroed"], int)  # the count itself: onnx_graph/test_denormals.py
    assert raw["onnx_opset"] in (17, 18)
    assert card.onnx_sha256 == sha256_of(tiny_model_dir / card.onnx_file)
    assert raw["keras_sha256"] == sha256_of(tiny_model_dir / card.keras_file)
    assert card.preprocessing.input_size == 128
    assert 0.0 < card.threshold < 1.0
    assert raw["calibration"]["method"].startswith("platt")
    for plot in raw["plots"]:
        assert (tiny_model_dir / plot).stat().st_size > 1000
    markdown = (tiny_model_dir / "MODEL_CARD.md").read_text()
    assert "Not a medical device" in markdown and "set to zero in the ONNX file at export" in markdown


def test_calibration_is_folded_into_the_exported_weights(tiny_run):
    """The exported model's output equals sigmoid(a * raw_logit + b) of the uncalibrated best epoch."""
    import keras

    from training.model import LOGIT_LAYER

    run_dir, model_dir = tiny_run
    card = load_model_card(model_dir).raw["calibration"]
    raw_model = keras.models.load_model(run_dir / "checkpoint.keras")
    shipped = keras.models.load_model(model_dir / "model.keras")
    x = np.random.default_rng(0).random((4, 128, 128, 1), dtype=np.float32)
    raw_logit = keras.Model(raw_model.inputs, raw_model.get_layer(LOGIT_LAYER).output)(x).numpy().reshape(-1)
    expected = 1 / (1 + np.exp(-(card["a"] * raw_logit + card["b"])))
    np.testing.assert_allclose(shipped(x).numpy().reshape(-1), expected, atol=1e-5)


def test_evaluate_cli_prints_the_json_contract(tiny_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "training", "evaluate", "--data", str(VAL16.parent), "--split", VAL16.name,
         "--model", str(tiny_model_dir), "--out", str(tmp_path), "--bootstrap", "50"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    for key in ("n", "accuracy", "precision", "recall", "specificity", "f1", "roc_auc", "pr_auc", "ece",
                "threshold", "confusion_matrix", "accuracy_ci95", "roc_auc_ci95"):
        assert key in report, key
    assert report["n"] == 16
    assert sum(map(sum, report["confusion_matrix"])) == 16
    assert report["threshold"] == load_model_card(tiny_model_dir).threshold
    errors = report["ranking_errors"]
    assert errors["pairs"] == 8 * 8  # val16: 8 normal and 8 pneumonia films
    assert errors["misordered_pairs"] == pytest.approx((1 - report["roc_auc"]) * errors["pairs"])
    counts = [film["misordered_pairs"] for film in errors["films"]]
    assert counts == sorted(counts, reverse=True) and all(count > 0 for count in counts)
    assert bool(counts) == (report["roc_auc"] < 1)  # a film is listed exactly when some pair is misordered
    for name in ("roc.png", "pr.png", "confusion_matrix.png", "reliability.png", "metrics.json"):
        assert (tmp_path / name).is_file()


def test_evaluate_by_default_writes_outside_the_model_folder(tiny_model_dir, tmp_path):
    """A check of a shipped model must leave its folder as it was (issue 13): plots go under runs/."""
    before = sorted(p.relative_to(tiny_model_dir) for p in tiny_model_dir.rglob("*"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "training", "evaluate", "--data", str(VAL16.parent.resolve()), "--split", VAL16.name,
         "--model", str(tiny_model_dir), "--bootstrap", "10"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.relative_to(tiny_model_dir) for p in tiny_model_dir.rglob("*")) == before
    version = load_model_card(tiny_model_dir).version
    assert (tmp_path / "runs" / "evaluation" / version / VAL16.name / "metrics.json").is_file()


def test_refinalize_reproduces_the_calibration_from_the_checkpoint(tiny_run, tmp_path):
    import shutil

    from training.train import refinalize

    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = json.loads((run_dir / "run.json").read_text())
    after = refinalize(copy)
    assert after["threshold"] == before["threshold"]
    assert after["calibration"]["a"] == before["calibration"]["a"]


def test_card_reports_robustness_under_acquisition_shifts(tiny_model_dir):
    rows = load_model_card(tiny_model_dir).raw["robustness"]
    names = [row["perturbation"] for row in rows]
    assert names[0] == "none" and "gamma 1.4" in names and "noise (sigma 8)" in names
    assert rows[0]["normal_shift"] == 0.0
    assert all(0.0 <= row["specificity"] <= 1.0 for row in rows)
    assert "| perturbation |" in (tiny_model_dir / "MODEL_CARD.md").read_text()


def test_a_member_sent_back_as_bare_weights_loads_like_its_checkpoint(tiny_run, tmp_path):
    """What a run on another machine returns (weights only, no optimizer) joins an ensemble the same."""
    import shutil

    import keras

    from training.train_ensemble import load_member

    run_dir, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    full = load_member(copy)
    bare = keras.Model.from_config(full.get_config())
    bare.set_weights(full.get_weights())
    bare.save_weights(copy / "best.weights.h5")
    (copy / "checkpoint.keras").unlink()
    x = np.random.default_rng(3).random((2, 128, 128, 1), dtype=np.float32)
    np.testing.assert_allclose(load_member(copy)(x).numpy(), full(x).numpy(), atol=1e-6)
    (copy / "best.weights.h5").unlink()
    with pytest.raises(FileNotFoundError):
        load_member(copy)
