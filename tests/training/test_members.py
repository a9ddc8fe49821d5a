"""`python -m training train --members 2`: two seeds, one validation split, one exported ONNX graph."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from app.model.card import load_model_card
from tests.conftest import REPO, TRAIN_224, VAL16, needs_shared
from training.evaluate import predict_files

pytestmark = needs_shared


def test_members_train_join_and_export_as_one_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run, export = tmp_path / "run", tmp_path / "export"
    result = subprocess.run(
        [sys.executable, "-m", "training", "train", "--data", str(TRAIN_224), "--members", "2", "--epochs", "1",
         "--limit", "64", "--input-size", "128", "--val-fraction", "0.3", "--out", str(run),
         "--export-to", str(export), "--quiet"],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    members = [json.loads((run / f"member{k}" / "run.json").read_text()) for k in (1, 2)]
    assert [m["config"]["seed"] for m in members] == [42, 43]
    assert (run / "member1" / "splits" / "val.txt").read_text() == (run / "member2" / "splits" / "val.txt").read_text()
    card = load_model_card(export)
    assert card.gradcam_layers == (f"m1_{card.gradcam_layer}", f"m2_{card.gradcam_layer}")
    assert len(card.raw["members"]) == 2 and card.raw["parity"]["max_abs_diff"] <= 1e-4
    gradcam = card.raw["output"]["gradcam"]  # both members' maps reach the sidecar from one ONNX call
    assert card.gradcam_name == gradcam["name"] and gradcam["layers"] == list(card.gradcam_layers)
    assert len(gradcam["channels"]) == 2 and gradcam["channels"][0] == gradcam["channels"][1]
    assert card.preprocessing.border_crop == 0.95
    probs = predict_files(export, sorted(VAL16.glob("*/*.jpeg"))[:4])
    assert probs.shape == (4,) and np.all((probs >= 0) & (probs <= 1))
