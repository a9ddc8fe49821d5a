"""Train K members of one recipe (seeds seed, seed+1, ...) and join them into one model.

Run folder: `member1/ ... memberK/` (each an ordinary, resumable run folder with the
same patient-level validation split, `split_seed`), and at the top the ensemble's own
run files (`model.keras`, `run.json`, `splits/`, `val_predictions.npz`), which
`training.export.export_run` exports like any run.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import keras
import numpy as np

from training.config import TrainConfig
from training.dataset import validation_films, enhance_all
from training.ensemble import build_ensemble, member_layers
from training.train import BEST_CHECKPOINT, finalize, train


def member_dir(out: Path, index: int) -> Path:
    return Path(out) / f"member{index}"


def train_ensemble(config: TrainConfig, n_members: int) -> dict:
    """Train (or resume) every member, then calibrate and threshold their mean logit."""
    if n_members == 1:
        return train(config)
    started = time.time()
    for index in range(1, n_members + 1):
        member = dataclasses.replace(config, seed=config.seed + index - 1, out=member_dir(config.out, index))
        print(f"--- member {index}/{n_members} (seed {member.seed}) ---", flush=True)
        train(member)
    return join_members(config.out, n_members, time.time() - started)


def join_members(out: Path, n_members: int, seconds: float | None = None) -> dict:
    """Build the ensemble from the members' best checkpoints and finalize it in `out`."""
    out = Path(out)
    dirs = [member_dir(out, k) for k in range(1, n_members + 1)]
    runs = [json.loads((d / "run.json").read_text()) for d in dirs]
    splits = {(d / "splits" / "val.txt").read_text() for d in dirs}
    if len(splits) != 1:
        raise ValueError("members were validated on different splits; an ensemble needs one split_seed")
    members = [keras.models.load_model(d / BEST_CHECKPOINT) for d in dirs]
    ensemble = build_ensemble(members)
    shutil.copytree(dirs[0] / "splits", out / "splits", dirs_exist_ok=True)
    first = runs[0]
    pre = TrainConfig.from_dict(first["config"]).preprocessing
    films, labels = validation_films(out, Path(first["data"]["root"]), pre)
    summary = {
        "config": {**first["config"], "out": str(out), "members": n_members},
        "data": first["data"],
        "parameters": int(ensemble.count_params()),
        "gradcam_layer": first["gradcam_layer"],
        "gradcam_layers": member_layers(first["gradcam_layer"], n_members),
        "members": [
            {"seed": r["config"]["seed"], "epochs_run": r.get("epochs_run"), "best_epoch": r.get("best_epoch"),
             "fit_seconds": r.get("fit_seconds"), "validation_roc_auc": r["validation_metrics"]["roc_auc"],
             "keras_backend": r.get("keras_backend", "tensorflow")}
            for r in runs
        ],
        "history": first["history"],
        "epochs_run": first.get("epochs_run"),
        "best_epoch": [r.get("best_epoch") for r in runs],
        "fit_seconds": round(sum(float(r.get("fit_seconds") or 0.0) for r in runs), 1),
        "total_seconds": round(seconds, 1) if seconds is not None else None,
        "cpu_count": first.get("cpu_count"),
    }
    return finalize(out, ensemble, enhance_all(films, pre), np.asarray(labels), summary)
