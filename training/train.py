"""A training run: split, fit, calibrate, choose the threshold, save the run folder.

Run folder (`TrainConfig.out`):
  splits/{train,val}.txt   the films of each split (reproducibility)
  history.csv, tensorboard/ logs
  checkpoint.keras          best epoch by validation AUC
  model.keras               best epoch with calibration folded into the logit layer
  run.json                  config, data sizes, calibration, threshold, validation metrics
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np

from app.imaging.preprocess import PreprocessConfig
from training import calibration, metrics
from training.config import TrainConfig
from training.data import class_counts, list_samples, split_by_patient, write_split_lists
from training.dataset import AugmentedBatches, enhance_all, load_resized, validation_films
from training.model import LOGIT_LAYER, build_model, gradcam_layer_for


def lr_schedule(config: TrainConfig):
    """Linear warm-up, then cosine decay to `min_learning_rate` at the last epoch."""

    def schedule(epoch: int, _lr: float) -> float:
        if epoch < config.warmup_epochs:
            return config.learning_rate * (epoch + 1) / (config.warmup_epochs + 1)
        span = max(config.epochs - config.warmup_epochs - 1, 1)
        progress = min((epoch - config.warmup_epochs) / span, 1.0)
        cosine = 0.5 * (1 + math.cos(math.pi * progress))
        return config.min_learning_rate + (config.learning_rate - config.min_learning_rate) * cosine

    return schedule


def balanced_class_weight(labels: np.ndarray) -> dict[int, float]:
    counts = np.bincount(labels.astype(int), minlength=2)
    return {c: float(labels.size / (2 * counts[c])) for c in range(2)}


def logits_of(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    logit_model = keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output)
    return logit_model.predict(images, batch_size=batch_size, verbose=0).reshape(-1)


def fold_platt_into_logit(model: keras.Model, a: float, b: float) -> None:
    """sigmoid(a * (w.h + c) + b) == sigmoid((a w).h + (a c + b)): calibrate in the weights."""
    layer = model.get_layer(LOGIT_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * a, bias * a + b])


class RunRecorder(keras.callbacks.Callback):
    """Keeps run.json current after every epoch, so a stopped run can still be finalized."""

    def __init__(self, path: Path, summary: dict) -> None:
        super().__init__()
        self.path, self.summary = path, summary
        self.started = time.time()
        summary.setdefault("history", {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        history = self.summary["history"]
        for key, value in (logs or {}).items():
            history.setdefault(key, []).append(float(value))
        self.summary["epochs_run"] = epoch + 1
        self.summary["best_epoch"] = int(np.argmax(history["val_auc"])) + 1 if "val_auc" in history else None
        self.summary["fit_seconds"] = round(time.time() - self.started, 1)
        self.path.write_text(json.dumps(self.summary, indent=2))


def callbacks_for(config: TrainConfig) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(str(config.out / "history.csv")),
        keras.callbacks.ModelCheckpoint(
            str(config.out / "checkpoint.keras"), monitor="val_auc", mode="max", save_best_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=config.early_stopping_patience, restore_best_weights=True
        ),
        keras.callbacks.LearningRateScheduler(lr_schedule(config)),
    ]
    try:
        import tensorboard  # noqa: F401  (the callback needs it installed)

        callbacks.append(keras.callbacks.TensorBoard(str(config.out / "tensorboard"), write_graph=False))
    except ImportError:
        pass
    return callbacks


def train(config: TrainConfig) -> dict:
    """Run one training and return the run summary (also written to run.json)."""
    started = time.time()
    config.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    root = config.data
    samples = list_samples(root / config.split)
    if config.limit:
        rng = np.random.default_rng(config.seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), config.limit, replace=False))]
    train_samples, val_samples = split_by_patient(samples, config.val_fraction, config.seed)
    write_split_lists(config.out / "splits", {"train": train_samples, "val": val_samples}, root)
    print(f"train {class_counts(train_samples)}  val {class_counts(val_samples)}", flush=True)

    pre = config.preprocessing
    train_images = load_resized(train_samples, pre)
    train_labels = np.array([s.label for s in train_samples])
    val_inputs = enhance_all(load_resized(val_samples, pre), pre)
    val_labels = np.array([s.label for s in val_samples])
    print(f"loaded {len(train_images)} + {len(val_inputs)} films in {time.time() - started:.0f}s", flush=True)

    model = build_model(
        pre.input_size, config.filters, config.dropout, config.dense_units,
        config.dense_dropout, config.weight_decay,
    )
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    summary = {
        "config": config.to_dict(),
        "data": {
            "root": str(root), "split": config.split, "n_images": len(samples),
            "train": class_counts(train_samples), "validation": class_counts(val_samples),
            "train_patients": len({s.patient for s in train_samples}),
            "validation_patients": len({s.patient for s in val_samples}),
        },
        "parameters": int(model.count_params()),
        "gradcam_layer": gradcam_layer_for(model),
        "cpu_count": os.cpu_count(),
    }
    recorder = RunRecorder(config.out / "run.json", summary)
    batches = AugmentedBatches(
        train_images, train_labels, config.batch_size, pre, config.augmentation, config.seed
    )
    model.fit(
        batches,
        validation_data=(val_inputs, val_labels.astype(np.float32)),
        epochs=config.epochs,
        class_weight=balanced_class_weight(train_labels),
        callbacks=[*callbacks_for(config), recorder],
        verbose=config.verbose,
    )
    summary["total_seconds"] = round(time.time() - started, 1)
    return finalize(config.out, model, val_inputs, val_labels, summary)


def finalize(run_dir: Path, model: keras.Model, val_inputs: np.ndarray, val_labels: np.ndarray, summary: dict) -> dict:
    """Calibrate on validation, fold it into the weights, pick the threshold, save the run."""
    min_sensitivity = summary["config"]["min_sensitivity"]
    raw_logits = logits_of(model, val_inputs)
    raw_probs = 1 / (1 + np.exp(-raw_logits))
    a, b = calibration.fit_platt(raw_logits, val_labels)
    fold_platt_into_logit(model, a, b)
    val_probs = model.predict(val_inputs, batch_size=64, verbose=0).reshape(-1)
    threshold = calibration.choose_threshold(val_labels, val_probs, min_sensitivity)
    val_report = metrics.full_report(val_labels, val_probs, threshold)
    model.save(run_dir / "model.keras")
    np.savez_compressed(run_dir / "val_predictions.npz", labels=val_labels, probs=val_probs)
    summary = {
        **summary,
        "calibration": {
            "method": "platt scaling on the validation logits, folded into the logit layer",
            "a": a, "b": b,
            "ece_before": metrics.expected_calibration_error(val_labels, raw_probs),
            "ece_after": val_report["ece"],
        },
        "threshold": threshold,
        "threshold_rule": calibration.THRESHOLD_RULE.format(min_sensitivity=min_sensitivity),
        "validation_metrics": val_report,
    }
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: summary[k] for k in ("best_epoch", "fit_seconds", "threshold")}), flush=True)
    return summary


def refinalize(run_dir: Path) -> dict:
    """Calibrate, pick the threshold and save from the run's best checkpoint, without training.

    Finishes a run that was stopped before its last epoch (run.json is kept current
    after every epoch), or redoes the calibration of a finished one.
    """
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "run.json").read_text())
    pre = PreprocessConfig.from_dict(summary["config"]["preprocessing"])
    films, labels = validation_films(run_dir, Path(summary["data"]["root"]), pre)
    model = keras.models.load_model(run_dir / "checkpoint.keras")
    return finalize(run_dir, model, enhance_all(films, pre), labels, summary)
