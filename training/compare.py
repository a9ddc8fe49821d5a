"""Paired comparison of two models on the same films: `python -m training compare A.csv B.csv`.

A and B are the `predictions.csv` files that `python -m training evaluate` writes for each model on
one split. Both models are scored on every resample of the same patients, so the interval of the
difference is much narrower than the two models' own intervals would suggest (what the films share
cancels). This is how a candidate is weighed against the shipped model.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from training import metrics
from training.data import patient_id


def read_predictions(path: Path) -> dict[str, tuple[int, float]]:
    """{film name: (label, probability)} from an `evaluate` predictions.csv."""
    with open(path, newline="") as handle:
        return {row["path"]: (int(row["label"]), float(row["probability"])) for row in csv.DictReader(handle)}


def compare_predictions(a: Path, b: Path, n_boot: int = 1000) -> dict:
    """ROC AUC of A and of B on the same films, and A minus B with a patient-level paired bootstrap 95% interval."""
    pred_a, pred_b = read_predictions(a), read_predictions(b)
    if pred_a.keys() != pred_b.keys():
        only = sorted(pred_a.keys() ^ pred_b.keys())
        raise ValueError(f"{a} and {b} score different films ({len(only)} in one only, e.g. {only[0]})")
    names = sorted(pred_a)
    labels = np.array([pred_a[n][0] for n in names])
    if any(pred_b[n][0] != label for n, label in zip(names, labels, strict=True)):
        raise ValueError(f"{a} and {b} disagree on a film's label: not the same split")
    scores_a = np.array([pred_a[n][1] for n in names])
    scores_b = np.array([pred_b[n][1] for n in names])
    groups = np.array([patient_id(n) for n in names])
    return {
        "n": len(names), "patients": len(set(groups)),
        "a": {"predictions": str(a), "roc_auc": metrics.roc_auc(labels, scores_a)},
        "b": {"predictions": str(b), "roc_auc": metrics.roc_auc(labels, scores_b)},
        "roc_auc_a_minus_b": metrics.paired_bootstrap_difference(
            labels, scores_a, scores_b, groups, metrics.roc_auc, n_boot=n_boot
        ),
    }
