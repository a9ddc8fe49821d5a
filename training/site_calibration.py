"""Site calibration: adapt a shipped model's probability and threshold to a site's own
labelled films, without retraining (`python -m training calibrate`).

The model's probabilities on the site films (through the serving chain and ONNX) are
turned back into logits, a Platt or temperature fit maps them to calibrated
probabilities, and the threshold is chosen on them: the highest that keeps the site's
sensitivity at the floor, which maximises specificity under it. The fit is folded into
the Keras model's `logit` layer (as training does with its own calibration), the model
is converted to ONNX again, and both are written as a NEW model version, whose card
records the calibration set and the before/after figures. The API, the sidecar and the
web page serve it unchanged.

Figures on the calibration films themselves are in-sample. The card therefore also
reports a patient-level two-fold estimate: fit on half the patients, measure on the
other half, repeated.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.model.card import CARD_FILE, load_model_card, sha256_of, versioned
from training import calibration, metrics
from training.data import class_counts, list_samples

PARITY_TOLERANCE = 1e-4


def cross_validated(
    logits: np.ndarray, labels: np.ndarray, patients: list[str], method: str, min_sensitivity: float,
    repeats: int = 100, seed: int = 0,
) -> dict:
    """Mean out-of-sample figures of site calibration: fit on half the patients, score the other half."""
    patients_arr = np.asarray(patients)
    unique = np.unique(patients_arr)
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(repeats):
        fit_half = set(rng.permutation(unique)[: len(unique) // 2])
        mask = np.array([p in fit_half for p in patients_arr])
        a, b = calibration.fit(method, logits[mask], labels[mask])
        probs = calibration.sigmoid(a * logits + b)
        threshold = calibration.choose_threshold(labels[mask], probs[mask], min_sensitivity)
        held = metrics.threshold_metrics(labels[~mask], probs[~mask], threshold)
        held["ece"] = metrics.expected_calibration_error(labels[~mask], probs[~mask])
        rows.append(held)
    keys = ("accuracy", "sensitivity", "specificity", "ece")
    return {
        "repeats": repeats,
        "rule": "patient-level halves: calibration and threshold fitted on one, measured on the other",
        **{k: float(np.mean([r[k] for r in rows])) for k in keys},
        **{f"{k}_range": [float(np.min([r[k] for r in rows])), float(np.max([r[k] for r in rows]))] for k in keys},
    }


def calibrate_site(
    data: Path, split: str, model_dir: Path, out_dir: Path, min_sensitivity: float = 0.97,
    method: str = "platt", n_boot: int = 1000,
) -> dict:
    """Write a site-calibrated copy of the model in `model_dir` to `out_dir`; return its card."""
    import keras

    from training.card import render_markdown
    from training.evaluate import predict_files
    from training.export import KERAS_FILE, ONNX_FILE, convert_to_onnx, onnx_probabilities, versions
    from training.onnx_graph.gradcam import add_gradcam_output
    from training.train import fold_platt_into_logit

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if model_dir.resolve() == out_dir.resolve():
        raise ValueError("write the calibrated model to another folder: the original stays as it was")
    card = load_model_card(model_dir)
    samples = list_samples(Path(data) / split)
    labels = np.array([s.label for s in samples])
    if labels.min() == labels.max():
        raise ValueError("site calibration needs films of both classes")
    before_probs = predict_files(model_dir, [s.path for s in samples]).astype(np.float64)
    logits = calibration.logit(before_probs)
    a, b = calibration.fit(method, logits, labels)
    after_probs = calibration.sigmoid(a * logits + b)
    threshold = calibration.choose_threshold(labels, after_probs, min_sensitivity)

    model = keras.models.load_model(model_dir / card.keras_file)
    fold_platt_into_logit(model, a, b)
    pre = card.preprocessing
    with tempfile.TemporaryDirectory() as tmp:
        onnx_tmp = Path(tmp) / ONNX_FILE
        zeroed = convert_to_onnx(model, pre.input_size, onnx_tmp, int(card.raw.get("onnx_opset", 17)))
        gradcam_output = add_gradcam_output(onnx_tmp, model, card.gradcam_layers)
        # The refolded ONNX model must give what the fit predicts, film for film.
        from app.imaging.preprocess import Preprocessor, to_batch

        preprocessor = Preprocessor(pre)
        check = to_batch([preprocessor.from_bytes(s.path.read_bytes()) for s in samples[:64]])
        onnx_probs = onnx_probabilities(onnx_tmp, check)
        keras_probs = model.predict(check, batch_size=32, verbose=0).reshape(-1)
        max_diff = float(max(np.max(np.abs(onnx_probs - keras_probs)),
                             np.max(np.abs(onnx_probs - after_probs[: len(check)]))))
        if max_diff > PARITY_TOLERANCE:
            raise RuntimeError(f"calibrated model disagrees with the fit: max |diff| {max_diff:.2e}")
        out_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(onnx_tmp, out_dir / ONNX_FILE)
    model.save(out_dir / KERAS_FILE)
    if (model_dir / "plots").is_dir():
        shutil.copytree(model_dir / "plots", out_dir / "plots", dirs_exist_ok=True)
    if card.raw.get("ood"):  # the OOD statistics stay valid: calibration changes only the logit layer
        shutil.copyfile(model_dir / card.raw["ood"]["file"], out_dir / card.raw["ood"]["file"])

    rule = (f"the highest threshold at which sensitivity on the site's films `{split}` is still >= "
            f"{min_sensitivity:.3f} (maximises specificity under a sensitivity floor), placed halfway "
            "to the next lower score")
    onnx_sha = sha256_of(out_dir / ONNX_FILE)
    new = json.loads(json.dumps(card.raw))
    new.update({
        "version": versioned(card.version, onnx_sha),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": {"onnx": ONNX_FILE, "keras": KERAS_FILE},
        "onnx_sha256": onnx_sha,
        "keras_sha256": sha256_of(out_dir / KERAS_FILE),
        "threshold": threshold,
        "threshold_rule": rule,
        "parity": {"n_images": int(len(check)), "max_abs_diff": max_diff, "tolerance": PARITY_TOLERANCE,
                   "subnormal_weights_zeroed": zeroed},
        "versions": versions(),
        "site_calibration": {
            "parent_version": card.version,
            "calibration_set": {"name": split, "path": str(Path(data) / split), "n": int(labels.size),
                                **class_counts(samples)},
            "method": f"{method} scaling of the parent's logit, folded into the logit layer",
            "a": a, "b": b, "min_sensitivity": min_sensitivity, "threshold_rule": rule,
            "before": metrics.full_report(labels, before_probs, card.threshold, n_boot),
            "after_in_sample": metrics.full_report(labels, after_probs, threshold, n_boot),
            "after_cross_validated": cross_validated(
                logits, labels, [s.patient for s in samples], method, min_sensitivity),
        },
    })
    new["output"]["gradcam"] = gradcam_output
    for history in ("onnx_denormals_flushed", "gradcam_output_added"):  # the parent's file's, not this file's
        new.pop(history, None)
    (out_dir / CARD_FILE).write_text(json.dumps(new, indent=2) + "\n")
    (out_dir / "MODEL_CARD.md").write_text(render_markdown(new))
    return new
