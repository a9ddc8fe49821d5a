"""Evaluate an exported model on any Kaggle-layout split, through the serving chain.

Uses exactly what the API uses: the card's preprocessing (from raw file bytes, so
full-resolution films take the same decode path) and the ONNX model in onnxruntime.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from app.imaging.preprocess import Preprocessor, to_batch
from app.model.card import load_model_card
from app.model.session import open_session
from training import metrics
from training.data import list_samples, patient_id
from training.plots import evaluation_plots


def predict_files(model_dir: Path, paths: list[Path], batch_size: int = 32) -> np.ndarray:
    """P(pneumonia) for each file, via the card's chain and onnxruntime."""
    card = load_model_card(model_dir)
    session = open_session(Path(model_dir) / card.onnx_file)
    preprocessor = Preprocessor(card.preprocessing)
    probs = []
    for start in range(0, len(paths), batch_size):
        batch = to_batch([preprocessor.from_bytes(p.read_bytes()) for p in paths[start : start + batch_size]])
        (out,) = session.run([card.output_name], {card.input_name: batch})
        probs.append(out.reshape(-1))
    return np.concatenate(probs) if probs else np.zeros(0, np.float32)


def ranking_errors(names: list[str], labels: np.ndarray, probs: np.ndarray, top: int = 10) -> dict:
    """Where the ROC AUC is lost: the misordered (normal, pneumonia) pairs, and the `top` films in the most of
    them. On `test_dev` a handful of films carry most of the loss (training/SHIFT.md section 5)."""
    pairs = metrics.misordered_pairs(labels, probs)
    order = [i for i in np.argsort(-pairs, kind="stable")[:top] if pairs[i] > 0]
    return {
        "misordered_pairs": float(pairs[labels == 0].sum()),
        "pairs": int((labels == 0).sum() * (labels == 1).sum()),
        "films": [{"path": names[i], "label": int(labels[i]), "probability": round(float(probs[i]), 6),
                   "misordered_pairs": float(pairs[i])} for i in order],
    }


def roc_auc_by_patient_film_count(names: list[str], labels: np.ndarray, probs: np.ndarray) -> dict:
    """ROC AUC of all normal films against the pneumonia films of patients with one film in the split, then
    against those of patients with several (by `training.data.patient_id`). On `test_dev` the one-film patients'
    films rank worse in every model (STUDY.md tables 22-28, "single / multi")."""
    labels, probs = np.asarray(labels).astype(int), np.asarray(probs)
    films_of = Counter(patient_id(name) for name, label in zip(names, labels, strict=True) if label == 1)
    several = np.array([films_of[patient_id(name)] > 1 for name in names])
    normal, pneumonia = labels == 0, labels == 1
    report = {}
    for key, group in (("one_film", pneumonia & ~several), ("several_films", pneumonia & several)):
        keep = normal | group
        report[key] = {"pneumonia_films": int(group.sum()),
                       "roc_auc": metrics.roc_auc(labels[keep], probs[keep]) if group.any() and normal.any() else None}
    return report


# Outside the model folder: a check of the shipped model must leave models/ as it was (runs/ is ignored by git).
EVALUATION_ROOT = Path("runs") / "evaluation"


def default_output(version: str, split: str) -> Path:
    """Where `evaluate` writes its plots, metrics.json and predictions.csv unless told otherwise."""
    return EVALUATION_ROOT / version / split


def evaluate(
    data: Path, split: str, model_dir: Path, out: Path | None = None,
    threshold: float | None = None, n_boot: int = 1000,
) -> dict:
    model_dir = Path(model_dir)
    card = load_model_card(model_dir)
    samples = list_samples(Path(data) / split)
    labels = np.array([s.label for s in samples])
    probs = predict_files(model_dir, [s.path for s in samples])
    threshold = card.threshold if threshold is None else threshold
    report = {
        "model_version": card.version,
        "data": str(Path(data) / split),
        **metrics.full_report(labels, probs, threshold, n_boot),
    }
    names = [s.path.name for s in samples]
    report["ranking_errors"] = ranking_errors(names, labels, probs)
    report["roc_auc_by_patient_film_count"] = roc_auc_by_patient_film_count(names, labels, probs)
    out = Path(out) if out else default_output(card.version, split)
    report["plots"] = [str(p) for p in evaluation_plots(labels, probs, threshold, out, split)]
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    with open(out / "predictions.csv", "w") as handle:
        handle.write("path,label,probability\n")
        for sample, prob in zip(samples, probs, strict=True):
            handle.write(f"{sample.path.name},{sample.label},{prob:.6f}\n")
    return report
