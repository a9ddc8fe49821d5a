"""`python -m training study`: every recipe and seed trained as its own run, then one table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO, TRAIN_224, needs_shared
from training.data import list_samples
from training.metrics import roc_auc

pytestmark = needs_shared


def _val_logits(model, run: Path) -> np.ndarray:
    """`model`'s logits on the run's validation films, through the run's own chain."""
    import keras

    from app.imaging.preprocess import PreprocessConfig
    from training.dataset import enhance_all, validation_films
    from training.model import LOGIT_LAYER

    pre = PreprocessConfig.from_dict(json.loads((run / "run.json").read_text())["config"]["preprocessing"])
    films, _ = validation_films(run, TRAIN_224, pre)
    logit = keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output)
    return logit.predict(enhance_all(films, pre), verbose=0).reshape(-1)


def test_tiny_study_trains_scores_and_reports(tmp_path):
    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "training", "study", "--data", str(TRAIN_224), "--out", str(out),
               "--recipes", "baseline,framing", "--seeds", "1,2", "--epochs", "1", "--input-size", "128",
               "--limit", "64", "--parallel", "2", "--threads", "1", "--control", "baseline"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    study = json.loads((out / "study.json").read_text())
    rows = {(r["recipe"], r["checkpoint"]): r for r in study["rows"]}
    assert set(rows) == {(r, c) for r in ("baseline", "framing") for c in ("best", "last")}
    for row in rows.values():
        assert row["seeds"] == 2 and len(row["test_auc"]["values"]) == 2
        assert 0.0 <= row["ensemble"]["test_auc"] <= 1.0
        site = row["ensemble"]["site_calibrated"]
        assert all(0.0 <= site[k] <= 1.0 for k in ("accuracy", "sensitivity", "specificity"))
    # Each candidate's ensemble is compared with the control's on the same test films.
    versus = rows[("framing", "best")]["ensemble"]["test_auc_minus_control"]
    labels = np.array([s.label for s in list_samples(TRAIN_224 / "test_dev")])

    def ensemble_auc(recipe: str) -> float:  # on the raw mean logit (calibration can flip a 1-epoch model)
        logits = [np.load(out / recipe / f"seed{s}" / "logits_best.npz")["test"] for s in (1, 2)]
        return roc_auc(labels, np.mean(logits, axis=0))

    expected = ensemble_auc("framing") - ensemble_auc("baseline")
    assert abs(versus["difference"] - expected) < 1e-9
    assert versus["ci95"][0] <= versus["ci95"][1]
    assert "test_auc_minus_control" not in rows[("baseline", "best")]["ensemble"]
    table = (out / "STUDY.md").read_text()
    assert "ens AUC - baseline (95% CI)" in table
    assert "| baseline | best |" in table and "| framing | last |" in table
    # Every run shares the patient-level validation split.
    splits = {(out / r / f"seed{s}" / "splits" / "val.txt").read_text() for r in ("baseline", "framing")
              for s in (1, 2)}
    assert len(splits) == 1
    # A rerun trains nothing: the finished runs are skipped.
    log = (out / "baseline" / "seed1" / "train.log").read_text()
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "already trained" in (out / "baseline" / "seed1" / "train.log").read_text()[len(log):]


def test_an_ema_run_is_scored_on_its_moving_average_and_a_batch_norm_run_on_its_own_architecture(tmp_path):
    """The study must score what validation chose and what would be shipped: the EMA weights; and a
    study mixing plain and batch-norm recipes scores each run with its own architecture."""
    import keras

    from training.train import load_checkpoint

    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "training", "study", "--data", str(TRAIN_224), "--out", str(out),
               "--recipes", "wide_ema,wide_batchnorm", "--seeds", "1", "--epochs", "2", "--input-size", "128",
               "--limit", "64", "--parallel", "2", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    run = out / "wide_ema" / "seed1"
    scored = np.load(run / "logits_best.npz")["val"]

    def val_logits(model: keras.Model, run: Path = run) -> np.ndarray:
        return _val_logits(model, run)

    np.testing.assert_allclose(scored, val_logits(load_checkpoint(run / "checkpoint.keras", ema=True)), atol=1e-4)
    raw = val_logits(keras.models.load_model(run / "checkpoint.keras"))
    assert np.abs(scored - raw).max() > 1e-3

    batch_norm = out / "wide_batchnorm" / "seed1"
    np.testing.assert_allclose(np.load(batch_norm / "logits_best.npz")["val"],
                               val_logits(keras.models.load_model(batch_norm / "checkpoint.keras"), batch_norm),
                               atol=1e-4)


def test_a_study_mixing_pool_paddings_scores_each_run_with_its_own(tmp_path):
    """The two paddings hold weights of the same shapes, so scoring a run with the other's architecture
    would load without complaint and answer differently (224 px: the pools of blocks 6 and 7 differ)."""
    import keras

    out = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "training", "study", "--data", str(TRAIN_224), "--out", str(out),
               "--recipes", "wide_long_less_dropout,wide_long_less_dropout_same_pool", "--seeds", "1",
               "--epochs", "1", "--limit", "64", "--parallel", "1", "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for recipe in ("wide_long_less_dropout", "wide_long_less_dropout_same_pool"):
        run = out / recipe / "seed1"
        np.testing.assert_allclose(np.load(run / "logits_best.npz")["val"],
                                   _val_logits(keras.models.load_model(run / "checkpoint.keras"), run), atol=1e-4)
