"""Export a run to a deployable model folder.

Writes into the destination:
  model.onnx       tf2onnx conversion (input `image` NHWC float32, outputs `probability`,
                   `features`, the pooled CNN features of the out-of-distribution check, and
                   `gradcam_activations`, what the Grad-CAM sidecar maps from)
  model.keras      the same weights, for the Grad-CAM sidecar
  model_card.json  the machine-readable card (the services read it)
  ood.npz          the out-of-distribution check's statistics (`training.ood.run`, card section `ood`)
  MODEL_CARD.md    the same card for people
  plots/           training curves, ROC, PR, confusion matrix, reliability diagram
The ONNX model is checked against Keras on real validation films before anything is
written; a mismatch over `PARITY_TOLERANCE` aborts the export. The card also gets the
validation metrics under simulated acquisition shifts (`training.robustness`).
"""

from __future__ import annotations

import json
import platform
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.imaging.preprocess import PreprocessConfig
from app.model.card import CARD_FILE, sha256_of, versioned
from training.config import HEAD_POOLINGS, TrainConfig
from training.dataset import enhance_all, validation_films
from training.onnx_graph.denormals import flush_file
from training.onnx_graph.features import add_features_output
from training.onnx_graph.gradcam import add_gradcam_output
from training.robustness import robustness_report

PARITY_TOLERANCE = 1e-4
PARITY_IMAGES = 64
ONNX_FILE, KERAS_FILE = "model.onnx", "model.keras"
# Negatives per kind scored for the card's OOD figures at export (`python -m training ood` does more).
EXPORT_OOD_NEGATIVES, EXPORT_OOD_FILM_NEGATIVES = 10, 20


def convert_to_onnx(model, input_size: int, path: Path, opset: int = 17) -> int:
    """tf2onnx conversion through a tf.function (the route that works with Keras 3); returns how many
    subnormal weights were set to zero (the card records it)."""
    import tensorflow as tf
    import tf2onnx

    if opset not in (17, 18):
        raise ValueError("opset must be 17 or 18 (tf2onnx supports <= 18)")
    spec = [tf.TensorSpec((None, input_size, input_size, 1), tf.float32, name="image")]

    @tf.function(input_signature=spec)
    def serve(image):
        return {"probability": model(image, training=False)}

    tf2onnx.convert.from_function(serve, input_signature=spec, opset=opset, output_path=str(path))
    add_features_output(path)
    return flush_file(path)  # subnormal weights: onnxruntime's slow path, and no effect on any output


def onnx_probabilities(path: Path, images: np.ndarray) -> np.ndarray:
    from app.model.session import open_session

    session = open_session(path)
    (output,) = session.run(["probability"], {"image": images.astype(np.float32)})
    return output.reshape(-1)


def versions() -> dict[str, str]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    return {
        "python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
        "tf2onnx": tf2onnx.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
        "numpy": np.__version__,
    }


def export_run(run_dir: Path, out_dir: Path, opset: int = 17) -> dict:
    """Convert, check parity, write the card and plots; return the card."""
    import keras

    from training.ood.run import features_card_entry, features_dim, film_sets_from_run, fit_model_dir
    from training.plots import plot_run

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    run = json.loads((run_dir / "run.json").read_text())
    pre = PreprocessConfig.from_dict(run["config"]["preprocessing"])
    model = keras.models.load_model(run_dir / KERAS_FILE)

    with tempfile.TemporaryDirectory() as tmp:
        onnx_tmp = Path(tmp) / ONNX_FILE
        zeroed = convert_to_onnx(model, pre.input_size, onnx_tmp, opset)
        gradcam_output = add_gradcam_output(onnx_tmp, model, run.get("gradcam_layers", [run["gradcam_layer"]]))
        films, labels = validation_films(run_dir, Path(run["data"]["root"]), pre)
        images = enhance_all(films[:PARITY_IMAGES], pre)
        keras_probs = model.predict(images, batch_size=32, verbose=0).reshape(-1)
        onnx_probs = onnx_probabilities(onnx_tmp, images)
        max_diff = float(np.max(np.abs(keras_probs - onnx_probs)))
        if max_diff > PARITY_TOLERANCE:
            raise RuntimeError(f"ONNX/Keras parity failed: max |diff| {max_diff:.2e} > {PARITY_TOLERANCE}")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_tmp, out_dir / ONNX_FILE)
    shutil.copyfile(run_dir / KERAS_FILE, out_dir / KERAS_FILE)

    onnx_sha = sha256_of(out_dir / ONNX_FILE)
    keras_sha = sha256_of(out_dir / KERAS_FILE)
    card = build_card(run, pre, model, opset, onnx_sha, keras_sha,
                      {"n_images": int(images.shape[0]), "max_abs_diff": max_diff, "tolerance": PARITY_TOLERANCE,
                       "subnormal_weights_zeroed": zeroed})
    card["output"]["features"] = features_card_entry(features_dim(out_dir / ONNX_FILE, pre.input_size))
    card["output"]["gradcam"] = gradcam_output
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    card["robustness"] = robustness_report(out_dir, list(films), labels)
    plots = plot_run(run, run_dir, out_dir / "plots")
    card["plots"] = [p.relative_to(out_dir).as_posix() for p in plots]
    (out_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    card, _ = fit_model_dir(out_dir, film_sets_from_run(run_dir, Path(run["data"]["root"])),
                            EXPORT_OOD_NEGATIVES, EXPORT_OOD_FILM_NEGATIVES, cost=False)  # writes MODEL_CARD.md
    return card


def build_card(
    run: dict, pre: PreprocessConfig, model, opset: int, onnx_sha: str, keras_sha: str, parity: dict
) -> dict:
    trained = TrainConfig.from_dict(run["config"]).to_dict()  # a run recorded before an option: at its default
    pooling = f"MaxPool2D(2, {trained['pool_padding']} padding)"
    if trained["antialiased_pools"]:
        first = trained["antialias_from_block"]
        pooling = ("MaxPool2D(2, stride 1) -> fixed 3x3 blur at stride 2" if first == 1 else
                   f"{pooling} (from block {first} on: MaxPool2D(2, stride 1) -> fixed 3x3 blur at stride 2)")
    side = trained["block1_kernel"]
    conv = "Conv2D(3x3, ReLU)" if side == 3 else f"Conv2D({side}x{side} in block 1, 3x3 after; ReLU)"
    head = HEAD_POOLINGS[trained["head_pooling"]]
    architecture = [
        {"name": layer.name, "type": type(layer).__name__, "output_shape": list(layer.output.shape)[1:]}
        for layer in model.layers
    ]
    return {
        "name": "chest-xray-pneumonia-cnn",
        "version": versioned("1.0.0", onnx_sha),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {"onnx": ONNX_FILE, "keras": KERAS_FILE},
        "onnx_sha256": onnx_sha,
        "keras_sha256": keras_sha,
        "onnx_opset": opset,
        "input": {"name": "image", "shape": [None, pre.input_size, pre.input_size, 1], "dtype": "float32",
                  "range": [0.0, 1.0]},
        "output": {"name": "probability", "meaning": "calibrated P(pneumonia)", "shape": [None, 1]},
        "labels": {"0": "NORMAL", "1": "PNEUMONIA"},
        "preprocessing": {
            **pre.to_dict(),
            "chain": ["decode", "grayscale", "resize", "border_crop", "median_filter", "clahe", "scale_to_unit_float"],
        },
        "threshold": run["threshold"],
        "threshold_rule": run["threshold_rule"],
        "calibration": run["calibration"],
        "gradcam_layer": run["gradcam_layer"],
        # One conv layer per member; the sidecar averages their maps.
        "gradcam_layers": run.get("gradcam_layers", [run["gradcam_layer"]]),
        "parameters": run["parameters"],
        "members": run.get("members"),
        "architecture": {
            "summary": ((f"deep ensemble of {len(run['members'])} members, one graph: mean of the members' "
                         "logits -> Dense(1) calibrated logit -> sigmoid; each member: ") if run.get("members") else "")
                       + f"7 blocks of {conv} -> {pooling} -> Dropout, "
                       f"{head}, Dense(ReLU) -> Dropout -> Dense(1) logit",
            "filters": list(trained["filters"]), "dropout": list(trained["dropout"]),
            "dense_units": trained["dense_units"], "pool_padding": trained["pool_padding"],
            "antialiased_pools": trained["antialiased_pools"], "antialias_from_block": trained["antialias_from_block"],
            "block1_kernel": side, "head_pooling": trained["head_pooling"], "layers": architecture,
        },
        "hyperparameters": {k: trained[k] for k in (
            "epochs", "batch_size", "learning_rate", "min_learning_rate", "warmup_epochs", "optimizer",
            "weight_decay", "val_fraction", "seed", "split_seed", "recipe", "label_smoothing", "focal_gamma",
            "auc_margin_weight", "gce_q", "mixup_alpha", "ema_momentum", "subtype_weight", "consistency_weight",
            "balanced_sampling", "framing_balance", "normal2_weight", "patient_weight_power", "min_sensitivity",
            "augmentation")},
        "training": {k: run.get(k) for k in ("epochs_run", "best_epoch", "fit_seconds", "total_seconds", "cpu_count")},
        "data": run["data"],
        "validation_metrics": run["validation_metrics"],
        "parity": parity,
        "versions": versions(),
        "intended_use": (
            "Research and engineering demonstration of pneumonia-vs-normal triage on pediatric chest "
            "X-rays, with a Grad-CAM explanation. Decision support for qualified readers at most."
        ),
        "limitations": [
            "Not a medical device; not cleared for clinical use. Every output needs review by a qualified reader.",
            "Trained on pediatric (age 1-5) AP chest films from one centre (Guangzhou Women and Children's "
            "Medical Center); adult films, PA/lateral views, other scanners and other populations are out of "
            "distribution.",
            "Two classes only: it does not detect other findings, and bacterial vs viral is not distinguished.",
            "Validation is a patient-level split of the official training split; acquisition differences "
            "(contrast, exposure, sharpness, framing) between centres or periods can lower specificity, as "
            "seen on the official test split of this data set.",
            "Probabilities are calibrated on the validation split, whose pneumonia prevalence is about 74%; "
            "at another prevalence the probability shifts.",
        ],
    }
