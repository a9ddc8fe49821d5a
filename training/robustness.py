"""Validation under simulated acquisition shifts.

The official test split differs from train in exposure, contrast, sharpness and
framing, and a validation split carved from train cannot show what that costs. This
re-runs the validation films through the serving chain after one deterministic
perturbation at a time, applied to the decoded film BEFORE the chain (as another
scanner or another export would), and reports AUC, sensitivity and specificity at
the shipped threshold, plus the mean shift of the normal films' probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from app.imaging.preprocess import Preprocessor, to_batch
from app.model.card import load_model_card
from app.model.session import open_session
from training import metrics

Perturbation = Callable[[np.ndarray], np.ndarray]


def _lut(fn: Callable[[np.ndarray], np.ndarray]) -> Perturbation:
    table = np.clip(fn(np.arange(256, dtype=np.float32)), 0, 255).astype(np.uint8)
    return lambda img: cv2.LUT(img, table)


def _zoom(scale: float) -> Perturbation:
    def apply(img: np.ndarray) -> np.ndarray:
        h, w = img.shape
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 0, scale)
        return cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)

    return apply


def _noise(sigma: float) -> Perturbation:
    def apply(img: np.ndarray) -> np.ndarray:
        rng = np.random.default_rng(0)
        return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).astype(np.uint8)

    return apply


PERTURBATIONS: dict[str, Perturbation] = {
    "none": lambda img: img,
    "brighter (+30)": _lut(lambda x: x + 30),
    "darker (-30)": _lut(lambda x: x - 30),
    "low contrast (x0.7)": _lut(lambda x: (x - 128) * 0.7 + 128),
    "high contrast (x1.3)": _lut(lambda x: (x - 128) * 1.3 + 128),
    "gamma 0.7": _lut(lambda x: 255 * (x / 255) ** 0.7),
    "gamma 1.4": _lut(lambda x: 255 * (x / 255) ** 1.4),
    "blur (sigma 1.5)": lambda img: cv2.GaussianBlur(img, (0, 0), 1.5),
    "sharpen": lambda img: cv2.addWeighted(img, 1.8, cv2.GaussianBlur(img, (0, 0), 1.5), -0.8, 0),
    "noise (sigma 8)": _noise(8.0),
    "zoom in (crop 85%)": _zoom(1 / 0.85),
    "zoom out (x0.85)": _zoom(0.85),
}


def robustness_report(model_dir: Path, films: list[np.ndarray], labels: np.ndarray) -> list[dict]:
    """One row per perturbation; `films` are uint8 films already at model size and framing
    (resized and border-cropped, as `training.dataset.validation_films` gives them)."""
    card = load_model_card(model_dir)
    session = open_session(Path(model_dir) / card.onnx_file)
    pre = Preprocessor(card.preprocessing)
    rows = []
    base_normal = None
    for name, perturb in PERTURBATIONS.items():
        batch = to_batch([pre.from_framed(perturb(film)) for film in films])
        probs = np.concatenate([
            session.run([card.output_name], {card.input_name: batch[i : i + 64]})[0].reshape(-1)
            for i in range(0, len(batch), 64)
        ])
        normal_mean = float(probs[labels == 0].mean())
        base_normal = normal_mean if base_normal is None else base_normal
        m = metrics.threshold_metrics(labels, probs, card.threshold)
        rows.append({
            "perturbation": name,
            "roc_auc": metrics.roc_auc(labels, probs),
            "sensitivity": m["sensitivity"],
            "specificity": m["specificity"],
            "accuracy": m["accuracy"],
            "normal_mean_probability": normal_mean,
            "normal_shift": normal_mean - base_normal,
        })
    return rows


def format_table(rows: list[dict]) -> str:
    lines = ["| perturbation | ROC AUC | sensitivity | specificity | accuracy | mean P(normal films) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['perturbation']} | {r['roc_auc']:.4f} | {100 * r['sensitivity']:.1f}% | "
            f"{100 * r['specificity']:.1f}% | {100 * r['accuracy']:.1f}% | {r['normal_mean_probability']:.3f} |"
        )
    return "\n".join(lines)
