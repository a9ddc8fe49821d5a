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

from app.imaging.preprocess import PreprocessConfig
from training.config import TrainConfig
from training.dataset import enhance_all, validation_films
from training.ensemble import build_ensemble, member_layers
from training.model import without_auxiliary_head
from training.train import BEST_CHECKPOINT, checkpoint_path, finalize, new_model, train


def member_dir(out: Path, index: int) -> Path:
    return Path(out) / f"member{index}"


def train_ensemble(config: TrainConfig, n_members: int) -> dict:
    """Train (or resume) every member, then calibrate and threshold their mean logit."""
    if n_members == 1:
        return train(config)
    started = time.time()
    dirs = []
    for index in range(1, n_members + 1):
        member = dataclasses.replace(config, seed=config.seed + index - 1, out=member_dir(config.out, index))
        print(f"--- member {index}/{n_members} (seed {member.seed}) ---", flush=True)
        train(member)
        dirs.append(member.out)
    return join_members(config.out, dirs, config.data, time.time() - started)


def load_member(run_dir: Path) -> keras.Model:
    """A run's best checkpoint: the full Keras file, or bare weights from another machine."""
    path = checkpoint_path(run_dir, BEST_CHECKPOINT)
    if path is None:
        raise FileNotFoundError(f"{run_dir} has no best checkpoint")
    if path.name == BEST_CHECKPOINT:
        return without_auxiliary_head(keras.models.load_model(path))
    run = json.loads((run_dir / "run.json").read_text())
    model = new_model(TrainConfig.from_dict(run["config"]))
    model.load_weights(path)
    return without_auxiliary_head(model)


def member_record(run_dir: Path) -> dict:
    run = json.loads((run_dir / "run.json").read_text())
    val_auc = run.get("history", {}).get("val_auc", [])
    return {
        "run": str(run_dir), "recipe": run["config"].get("recipe"), "seed": run["config"]["seed"],
        "epochs_planned": run["config"]["epochs"], "epochs_run": run.get("epochs_run"),
        "best_epoch": run.get("best_epoch"), "fit_seconds": run.get("fit_seconds"),
        "best_validation_auc": max(val_auc) if val_auc else None,
        "keras_backend": run.get("keras_backend", "tensorflow"), "cpu_count": run.get("cpu_count"),
    }


def join_members(
    out: Path, dirs: list[Path], data_root: Path, seconds: float | None = None, border_crop: float | None = None,
) -> dict:
    """Build the ensemble from the members' best checkpoints and finalize it in `out`.

    `border_crop` replaces the members' own (their runs may predate it); calibration and
    threshold are then fitted on validation films through that chain.
    """
    out, dirs = Path(out), [Path(d) for d in dirs]
    if len(dirs) < 2:
        raise ValueError("an ensemble needs at least two member runs")
    splits = {(d / "splits" / "val.txt").read_text() for d in dirs}
    if len(splits) != 1:
        raise ValueError("members were validated on different splits; an ensemble needs one split_seed")
    ensemble = build_ensemble([load_member(d) for d in dirs])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copytree(dirs[0] / "splits", out / "splits", dirs_exist_ok=True)
    first = json.loads((dirs[0] / "run.json").read_text())
    config = TrainConfig.from_dict(first["config"])
    # Decode and resize as serving does today, whatever the members' runs recorded: training films
    # are already at model size, so these two options never acted in training.
    serving = PreprocessConfig()
    pre = dataclasses.replace(config.preprocessing, interpolation=serving.interpolation,
                              jpeg_reduced_decode=serving.jpeg_reduced_decode)
    if border_crop is not None:
        pre = dataclasses.replace(pre, border_crop=border_crop)
    films, labels = validation_films(out, Path(data_root), pre)
    members = [member_record(d) for d in dirs]
    summary = {
        "config": {**first["config"], "out": str(out), "members": len(dirs), "preprocessing": pre.to_dict()},
        "data": {**first["data"], "root": str(data_root)},
        "parameters": int(ensemble.count_params()),
        "gradcam_layer": first["gradcam_layer"],
        "gradcam_layers": member_layers(first["gradcam_layer"], len(dirs)),
        "members": members,
        "history": first["history"],
        "epochs_run": first.get("epochs_run"),
        "best_epoch": [m["best_epoch"] for m in members],
        "fit_seconds": round(sum(float(m["fit_seconds"] or 0.0) for m in members), 1),
        "total_seconds": round(seconds, 1) if seconds is not None else None,
        "cpu_count": first.get("cpu_count"),
    }
    return finalize(out, ensemble, enhance_all(films, pre), np.asarray(labels), summary)
