"""Test-time augmentation, screened: does averaging a model's logits over re-framed copies of each
film rank new films better than the film alone?

The model's answer follows apparent scale and framing (`training/SHIFT.md`), so the candidates are
the framing changes of training augmentation, at fixed sizes: isotropic scale, x or y scale alone,
and shifts, each warped at model size before the median filter and CLAHE as in training. Each
transform costs one more network run per film in the service, so it has to earn its place.

`python -m training tta --runs R1 R2 R3 --split test_dev` prints, for the runs' mean logit (and each
run alone), the ROC AUC per transform and per averaged set, and each set's AUC minus the plain
film's with a patient-level paired bootstrap interval.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from training import metrics
from training.augment import warp_about_centre

# name -> (x scale, y scale, x shift, y shift); shifts as fractions of the side
TRANSFORMS: dict[str, tuple[float, float, float, float]] = {
    "identity": (1.0, 1.0, 0.0, 0.0),
    "scale_0.9": (0.9, 0.9, 0.0, 0.0), "scale_1.1": (1.1, 1.1, 0.0, 0.0),
    "y_0.9": (1.0, 0.9, 0.0, 0.0), "y_1.1": (1.0, 1.1, 0.0, 0.0),
    "x_0.9": (0.9, 1.0, 0.0, 0.0), "x_1.1": (1.1, 1.0, 0.0, 0.0),
    "shift_right": (1.0, 1.0, 0.05, 0.0), "shift_left": (1.0, 1.0, -0.05, 0.0),
    "shift_down": (1.0, 1.0, 0.0, 0.05), "shift_up": (1.0, 1.0, 0.0, -0.05),
}
# averaged sets; each includes the plain film
SETS: dict[str, tuple[str, ...]] = {
    "scales": ("identity", "scale_0.9", "scale_1.1"),
    "aspect": ("identity", "y_0.9", "y_1.1", "x_0.9", "x_1.1"),
    "shifts": ("identity", "shift_right", "shift_left", "shift_down", "shift_up"),
    "all": tuple(TRANSFORMS),
}


def reframe(image: np.ndarray, name: str) -> np.ndarray:
    """One of `TRANSFORMS` applied to a uint8 film at model size."""
    sx, sy, dx, dy = TRANSFORMS[name]
    return warp_about_centre(image, np.diag([sx, sy]), (dx, dy))


def run_logits(run_dirs: list[Path], resized: np.ndarray, pre) -> dict[str, np.ndarray]:
    """{transform: (runs, films) logits} from each run's best checkpoint."""
    import keras

    from training.config import TrainConfig
    from training.dataset import enhance_all
    from training.model import LOGIT_LAYER
    from training.train import BEST_CHECKPOINT, checkpoint_path, load_validated_weights, new_model

    inputs = {name: enhance_all(np.stack([reframe(im, name) for im in resized]), pre) for name in TRANSFORMS}
    out: dict[str, list[np.ndarray]] = {name: [] for name in TRANSFORMS}
    for run_dir in run_dirs:
        config = TrainConfig.from_dict(json.loads((run_dir / "run.json").read_text())["config"])
        if config.preprocessing != pre:
            raise ValueError(f"{run_dir} uses another preprocessing chain than {run_dirs[0]}")
        model = new_model(config)
        checkpoint = checkpoint_path(run_dir, BEST_CHECKPOINT)
        if checkpoint is None:
            raise FileNotFoundError(f"{run_dir} has no best checkpoint")
        load_validated_weights(model, checkpoint, ema=config.ema_momentum > 0)
        logit_model = keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output)
        for name, x in inputs.items():
            out[name].append(logit_model.predict(x, batch_size=64, verbose=0).reshape(-1))
    return {name: np.stack(logits) for name, logits in out.items()}


def tta_report(run_dirs: list[Path], data_root: Path, split: str, n_boot: int = 1000) -> dict:
    """ROC AUC of the runs' mean logit (and of each run) per transform and per averaged set."""
    from training.config import TrainConfig
    from training.data import list_samples
    from training.dataset import load_resized

    run_dirs = [Path(d) for d in run_dirs]
    config = TrainConfig.from_dict(json.loads((run_dirs[0] / "run.json").read_text())["config"])
    samples = list_samples(Path(data_root) / split)
    labels = np.array([s.label for s in samples])
    patients = np.array([s.patient for s in samples])
    logits = run_logits(run_dirs, load_resized(samples, config.preprocessing), config.preprocessing)

    def auc(names: tuple[str, ...], run: int | None = None) -> float:
        chosen = [logits[n] if run is None else logits[n][run : run + 1] for n in names]
        return metrics.roc_auc(labels, np.mean(np.concatenate(chosen), axis=0))

    plain = logits["identity"].mean(axis=0)
    sets = {}
    for name, members in SETS.items():
        averaged = np.mean(np.concatenate([logits[n] for n in members]), axis=0)
        sets[name] = {
            "transforms": list(members), "auc": metrics.roc_auc(labels, averaged),
            "auc_per_run": [auc(members, r) for r in range(len(run_dirs))],
            "minus_plain": metrics.paired_bootstrap_difference(labels, averaged, plain, patients, metrics.roc_auc,
                                                               n_boot=n_boot),
        }
    return {
        "runs": [str(d) for d in run_dirs], "split": split, "n": int(labels.size),
        "transforms": {name: {"auc": auc((name,)), "auc_per_run": [auc((name,), r) for r in range(len(run_dirs))]}
                       for name in TRANSFORMS},
        "sets": sets,
    }
