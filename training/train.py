"""A training run: split, fit (resumable), calibrate, choose the threshold, save the run folder.

Run folder (`TrainConfig.out`):
  splits/{train,val}.txt   the films of each split (reproducibility)
  history.csv, tensorboard/ logs
  checkpoint.keras          best epoch by validation AUC
  last.keras                the last epoch, with the optimizer state (resume from here)
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
from training.data import (
    SUBTYPE_NAMES,
    Sample,
    class_counts,
    keep_class_totals,
    list_samples,
    split_by_patient,
    write_split_lists,
)
from training.dataset import (
    AugmentedBatches,
    PairedValidation,
    enhance_all,
    load_resized,
    model_targets,
    validation_films,
)
from training.losses import new_loss
from training.model import (
    LOGIT_LAYER,
    PROBABILITY_OUTPUT,
    SUBTYPE_OUTPUT,
    build_model,
    gradcam_layer_for,
    without_auxiliary_head,
)
from training.weights.framing import framing_balanced_weights
from training.weights.patient import effective_films, patient_factors
from training.weights.series import in_normal2_series, normal2_factors


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


def film_weights(
    config: TrainConfig, samples: list[Sample], images: np.ndarray, class_weight: dict[int, float], summary: dict,
) -> np.ndarray | None:
    """Each training film's loss weight, or None where Keras' `class_weight` weighs the classes alone.

    Framing-balanced weights replace the class weights (they balance the classes too); mixup, the
    subtype head, `normal2_weight` and `patient_weight_power` need the class weights as per-film
    weights. What a weighting did to the films goes into `summary` (the run's record).
    """
    labels = np.array([s.label for s in samples])
    if config.framing_balance:
        weights = framing_balanced_weights(images, labels)
        summary["framing_balance"] = {
            "effective_films": round(effective_films(weights), 1),
            "max_weight": round(float(weights.max()), 2),
            "normal_weight_share": round(float(weights[labels == 0].sum() / weights.sum()), 3),
        }
        return weights
    reweighted = config.normal2_weight != 1.0 or config.patient_weight_power > 0
    if not (config.mixup_alpha or config.subtype_weight > 0 or reweighted):
        return None
    within_class = np.ones(len(samples), np.float32)
    if config.normal2_weight != 1.0:
        factors = normal2_factors(samples, config.normal2_weight)
        within_class *= factors
        series = in_normal2_series(samples)
        summary["normal2_weight"] = {
            "normal2_films": int(series.sum()),
            "normal2_share_of_normal_weight": round(float(factors[series].sum() / factors[labels == 0].sum()), 3),
        }
    if config.patient_weight_power > 0:
        factors = patient_factors(samples, config.patient_weight_power)
        within_class *= factors
        summary["patient_weight_power"] = {
            "power": config.patient_weight_power,
            "effective_films": {name: round(effective_films(factors[labels == label]), 1)
                                for label, name in ((0, "normal"), (1, "pneumonia"))},
        }
    # the weightings only move weight within a class: each class keeps its films' worth (and the class balance)
    class_weights = np.array([class_weight[int(y)] for y in labels], np.float32)
    return class_weights * keep_class_totals(within_class, labels)


def logits_of(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    logit_model = keras.Model(model.inputs, model.get_layer(LOGIT_LAYER).output)
    return logit_model.predict(images, batch_size=batch_size, verbose=0).reshape(-1)


def fold_platt_into_logit(model: keras.Model, a: float, b: float) -> None:
    """sigmoid(a * (w.h + c) + b) == sigmoid((a w).h + (a c + b)): calibrate in the weights."""
    layer = model.get_layer(LOGIT_LAYER)
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel * a, bias * a + b])


class RunRecorder(keras.callbacks.Callback):
    """Keeps run.json current after every epoch, so a stopped run can resume or be finalized.

    `fit_seconds` adds up the fitting time of every session of a resumed run.
    """

    def __init__(self, path: Path, summary: dict) -> None:
        super().__init__()
        self.path, self.summary = path, summary
        self.started = time.time()
        self.earlier_seconds = float(summary.get("fit_seconds", 0.0))
        summary.setdefault("history", {})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        history = self.summary["history"]
        for key, value in (logs or {}).items():
            history.setdefault(key, []).append(float(value))
        self.summary["epochs_run"] = epoch + 1
        self.summary["best_epoch"] = int(np.argmax(history["val_auc"])) + 1 if "val_auc" in history else None
        self.summary["fit_seconds"] = round(self.earlier_seconds + time.time() - self.started, 1)
        self.path.write_text(json.dumps(self.summary, indent=2))


BEST_CHECKPOINT, LAST_CHECKPOINT = "checkpoint.keras", "last.keras"
# The same checkpoints as bare weights (no optimizer state): what a run on another machine sends back.
WEIGHTS_ONLY = {BEST_CHECKPOINT: "best.weights.h5", LAST_CHECKPOINT: "last.weights.h5"}


def load_checkpoint(path: Path, ema: bool) -> keras.Model:
    """A full Keras checkpoint; with EMA, holding its moving-average weights (what validation saw)."""
    model = keras.models.load_model(path)
    if ema:
        model.optimizer.finalize_variable_values(model.trainable_variables)
    return model


def load_validated_weights(model: keras.Model, checkpoint: Path, ema: bool) -> None:
    """Put a checkpoint's weights into `model` (the same architecture): with EMA, the moving average
    that validation scored and chose; else the weights themselves."""
    if ema:
        model.set_weights(load_checkpoint(checkpoint, ema=True).get_weights())
    else:
        model.load_weights(checkpoint)


def load_best(run_dir: Path, ema: bool) -> keras.Model:
    """The best checkpoint by validation AUC, as `load_checkpoint`."""
    return load_checkpoint(Path(run_dir) / BEST_CHECKPOINT, ema)


def checkpoint_path(run_dir: Path, name: str) -> Path | None:
    """A run's checkpoint `name` as a full Keras file, else as bare weights, else None."""
    for candidate in (name, WEIGHTS_ONLY[name]):
        if (Path(run_dir) / candidate).is_file():
            return Path(run_dir) / candidate
    return None


def callbacks_for(config: TrainConfig, best_val_auc: float | None = None) -> list[keras.callbacks.Callback]:
    """Logs and checkpoints; `best_val_auc` is the best of the epochs before a resume."""
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.CSVLogger(str(config.out / "history.csv"), append=True),
        keras.callbacks.ModelCheckpoint(
            str(config.out / BEST_CHECKPOINT), monitor="val_auc", mode="max", save_best_only=True,
            initial_value_threshold=best_val_auc,
        ),
        # Every epoch, with the optimizer's state: what `train` resumes from.
        keras.callbacks.ModelCheckpoint(str(config.out / LAST_CHECKPOINT), save_best_only=False),
        keras.callbacks.LearningRateScheduler(lr_schedule(config)),
    ]
    if config.subtype_weight > 0:
        callbacks.insert(0, ClassifierLogNames())
    if config.ema_momentum > 0:
        # Validation (hence the best checkpoint's choice) sees the moving average; the checkpoints
        # keep the raw weights with the average in the optimizer state, so a resume continues both.
        callbacks.insert(0, keras.callbacks.SwapEMAWeights())
    try:
        import tensorboard  # noqa: F401  (the callback needs it and TensorFlow's summary writer)
        import tensorflow.summary  # noqa: F401

        callbacks.append(keras.callbacks.TensorBoard(str(config.out / "tensorboard"), write_graph=False))
    except ImportError:
        pass
    return callbacks


def split_samples(config: TrainConfig) -> tuple[list[Sample], list[Sample]]:
    """The run's train and validation films; the split depends on `split_seed` only."""
    samples = list_samples(config.data / config.split)
    if config.limit:
        rng = np.random.default_rng(config.split_seed)
        samples = [samples[i] for i in sorted(rng.choice(len(samples), config.limit, replace=False))]
    return split_by_patient(samples, config.val_fraction, config.split_seed)


def new_optimizer(config: TrainConfig) -> keras.optimizers.Optimizer:
    """The run's optimizer; AdamW applies `weight_decay` itself, the others get it as `config.l2_penalty`."""
    ema = {"use_ema": config.ema_momentum > 0, "ema_momentum": config.ema_momentum or 0.99}
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(config.learning_rate, weight_decay=config.weight_decay, **ema)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(config.learning_rate, momentum=0.9, nesterov=True, **ema)
    return keras.optimizers.Adam(config.learning_rate, **ema)


def architecture(config: TrainConfig) -> dict:
    """The `build_model` arguments a config names: two configs with equal ones build the same layers."""
    return {
        "input_size": config.preprocessing.input_size, "filters": config.filters, "dropout": config.dropout,
        "dense_units": config.dense_units, "dense_dropout": config.dense_dropout, "weight_decay": config.l2_penalty,
        "normalization": config.normalization, "subtypes": len(SUBTYPE_NAMES) if config.subtype_weight > 0 else 0,
        "pool_padding": config.pool_padding, "antialiased_pools": config.antialiased_pools,
        "antialias_from_block": config.antialias_from_block, "block1_kernel": config.block1_kernel,
        "head_pooling": config.head_pooling,
    }


def new_model(config: TrainConfig) -> keras.Model:
    arch = architecture(config)
    model = build_model(**arch)
    with_subtypes = arch["subtypes"] > 0
    loss = new_loss(config)
    metrics = [keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")]
    optimizer = new_optimizer(config)
    if with_subtypes:
        model.compile(
            optimizer=optimizer,
            loss={PROBABILITY_OUTPUT: loss, SUBTYPE_OUTPUT: keras.losses.SparseCategoricalCrossentropy()},
            loss_weights={PROBABILITY_OUTPUT: 1.0, SUBTYPE_OUTPUT: config.subtype_weight},
            metrics={PROBABILITY_OUTPUT: metrics},
        )
    else:
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics)
    return model


class ClassifierLogNames(keras.callbacks.Callback):
    """Renames the classifier output's metrics (`probability_auc` -> `auc`, `val_probability_auc` -> `val_auc`)
    in place, so the checkpoints, history and run.json read the same keys with or without the subtype head.
    The total `loss` keeps its name; the classifier's own stays `probability_loss`.

    It must come first among the callbacks: the later ones see the same logs dict.
    """

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is None:
            return
        for key in [k for k in logs if f"{PROBABILITY_OUTPUT}_" in k]:
            short = key.replace(f"{PROBABILITY_OUTPUT}_", "")
            if short not in logs:
                logs[short] = logs.pop(key)


def resumable_state(config: TrainConfig) -> tuple[dict, int] | None:
    """(summary, epochs done) of an earlier session of this same run, if it can be resumed."""
    run_json, last = config.out / "run.json", config.out / LAST_CHECKPOINT
    if not (run_json.is_file() and last.is_file()):
        return None
    summary = json.loads(run_json.read_text())

    def comparable(config_dict: dict) -> dict:
        return {k: v for k, v in json.loads(json.dumps(config_dict)).items() if k != "verbose"}

    # read back through TrainConfig: an option added after the run was started counts at its default
    recorded = TrainConfig.from_dict(summary.get("config", {})).to_dict()
    if comparable(recorded) != comparable(config.to_dict()):
        raise ValueError(f"{config.out} holds a run with another config: use another --out, or delete it")
    return summary, int(summary.get("epochs_run", 0))


def train(config: TrainConfig, session_epochs: int | None = None) -> dict:
    """Run one training (resuming an interrupted one in the same folder) and return its summary.

    `session_epochs` ends this session after that many epochs (a time slice on a shared
    machine); the run stays unfinalized, and the next call resumes it.
    """
    started = time.time()
    config.out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(config.seed)
    root = config.data
    train_samples, val_samples = split_samples(config)
    write_split_lists(config.out / "splits", {"train": train_samples, "val": val_samples}, root)
    print(f"train {class_counts(train_samples)}  val {class_counts(val_samples)}", flush=True)

    previous = resumable_state(config)
    if previous and previous[0].get("threshold") is not None and previous[1] >= config.epochs:
        print(f"{config.out}: already trained and finalized", flush=True)
        return previous[0]

    pre = config.preprocessing
    train_images = load_resized(train_samples, pre)
    train_labels = np.array([s.label for s in train_samples])
    val_inputs = enhance_all(load_resized(val_samples, pre), pre)
    val_labels = np.array([s.label for s in val_samples])
    subtypes = np.array([s.subtype for s in train_samples]) if config.subtype_weight > 0 else None
    val_subtypes = np.array([s.subtype for s in val_samples]) if config.subtype_weight > 0 else None
    print(f"loaded {len(train_images)} + {len(val_inputs)} films in {time.time() - started:.0f}s", flush=True)

    if previous:
        summary, initial_epoch = previous
        model = keras.models.load_model(config.out / LAST_CHECKPOINT)
        print(f"resuming {config.out} after epoch {initial_epoch}", flush=True)
    else:
        model, initial_epoch = new_model(config), 0
        summary = {
            "config": config.to_dict(),
            "data": {
                "root": str(root), "split": config.split, "n_images": len(train_samples) + len(val_samples),
                "train": class_counts(train_samples), "validation": class_counts(val_samples),
                "train_patients": len({s.patient for s in train_samples}),
                "validation_patients": len({s.patient for s in val_samples}),
            },
            "parameters": int(model.count_params()),
            "gradcam_layer": gradcam_layer_for(model),
            "cpu_count": os.cpu_count(),
            "keras_backend": keras.backend.backend(),
        }
    recorder = RunRecorder(config.out / "run.json", summary)
    # balanced sampling already shows the classes equally often: weighing them as well would count twice
    class_weight = {0: 1.0, 1: 1.0} if config.balanced_sampling else balanced_class_weight(train_labels)
    sample_weights = film_weights(config, train_samples, train_images, class_weight, summary)
    batches = AugmentedBatches(
        train_images, train_labels, config.batch_size, pre, config.augmentation, config.seed,
        sample_weights=sample_weights, mixup_alpha=config.mixup_alpha, subtypes=subtypes,
        balanced_sampling=config.balanced_sampling, paired=config.consistency_weight > 0,
    )
    batches.set_epoch(initial_epoch)
    val_targets = val_labels.astype(np.float32)
    validation: tuple | PairedValidation = (val_inputs, model_targets(val_targets, val_subtypes))
    if batches.paired:  # the loss pairs the halves of every batch, validation's too (never with subtypes)
        validation = PairedValidation(val_inputs, val_targets, batches.films_per_batch)
    stop = config.epochs if session_epochs is None else min(config.epochs, initial_epoch + session_epochs)
    if initial_epoch < stop:
        model.fit(
            batches,
            validation_data=validation,
            epochs=stop,
            initial_epoch=initial_epoch,
            class_weight=None if sample_weights is not None else class_weight,
            callbacks=[*callbacks_for(config, max(summary["history"].get("val_auc", []), default=None)), recorder],
            verbose=config.verbose,
        )
    if stop < config.epochs:
        print(f"{config.out}: stopped after epoch {stop} of {config.epochs}; run again to resume", flush=True)
        return summary
    summary["total_seconds"] = round(time.time() - started, 1)
    best = load_best(config.out, config.ema_momentum > 0)
    return finalize(config.out, best, val_inputs, val_labels, summary)


def finalize(run_dir: Path, model: keras.Model, val_inputs: np.ndarray, val_labels: np.ndarray, summary: dict) -> dict:
    """Calibrate on validation, fold it into the weights, pick the threshold, save the run."""
    model = without_auxiliary_head(model)
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
    model = load_best(run_dir, summary["config"].get("ema_momentum", 0.0) > 0)
    return finalize(run_dir, model, enhance_all(films, pre), labels, summary)
