"""`python -m training calibrate`: a new model version whose ONNX output is the site fit, card and all."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from app.model.card import load_model_card, sha256_of
from tests.conftest import REPO, VAL16
from training import calibration
from training.data import list_samples
from training.evaluate import predict_files
from training.site_calibration import calibrate_site


@pytest.fixture(scope="module")
def site_model(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "model"
    before = sha256_of(tiny_model_dir / "model.onnx")
    card = calibrate_site(VAL16.parent, VAL16.name, tiny_model_dir, out, min_sensitivity=0.875, n_boot=50)
    assert sha256_of(tiny_model_dir / "model.onnx") == before  # the parent is left as it was
    return out, card


def test_calibrated_onnx_returns_the_fitted_probabilities(site_model, tiny_model_dir):
    out, card = site_model
    site = card["site_calibration"]
    paths = [s.path for s in list_samples(VAL16)]
    parent = predict_files(tiny_model_dir, paths).astype(np.float64)
    expected = 1 / (1 + np.exp(-(site["a"] * calibration.logit(parent) + site["b"])))
    np.testing.assert_allclose(predict_files(out, paths), expected, atol=1e-4)


def test_card_records_the_calibration_set_rule_and_figures(site_model, tiny_model_dir):
    out, card = site_model
    loaded = load_model_card(out)
    site = loaded.raw["site_calibration"]
    assert loaded.version != load_model_card(tiny_model_dir).version
    assert loaded.onnx_sha256 == sha256_of(out / loaded.onnx_file)
    assert loaded.raw["keras_sha256"] == sha256_of(out / loaded.keras_file)
    assert site["calibration_set"] == {"name": VAL16.name, "path": str(VAL16), "n": 16, "NORMAL": 8,
                                       "PNEUMONIA": 8}
    assert site["parent_version"] == load_model_card(tiny_model_dir).version
    assert site["after_in_sample"]["recall"] >= 0.875
    assert site["after_in_sample"]["threshold"] == loaded.threshold
    assert 0.0 <= site["after_cross_validated"]["specificity"] <= 1.0
    assert "Site calibration" in (out / "MODEL_CARD.md").read_text()


def test_refuses_to_overwrite_its_parent_and_one_class_sets(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="another folder"):
        calibrate_site(VAL16.parent, VAL16.name, tiny_model_dir, tiny_model_dir)
    one_class = tmp_path / "site"
    (one_class / "only" / "NORMAL").mkdir(parents=True)
    (one_class / "only" / "PNEUMONIA").mkdir(parents=True)
    for path in sorted((VAL16 / "NORMAL").glob("*.jpeg"))[:2]:
        (one_class / "only" / "NORMAL" / path.name).write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="both classes"):
        calibrate_site(one_class, "only", tiny_model_dir, tmp_path / "out")


def test_calibrate_cli_prints_before_and_after(tiny_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "training", "calibrate", "--data", str(VAL16.parent), "--split", VAL16.name,
         "--model", str(tiny_model_dir), "--out", str(tmp_path / "m"), "--method", "temperature",
         "--bootstrap", "20"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["version"] == load_model_card(tmp_path / "m").version
    assert set(report) >= {"before", "after_in_sample", "after_cross_validated", "threshold"}
    assert load_model_card(tmp_path / "m").raw["site_calibration"]["b"] == 0.0  # temperature: no offset
