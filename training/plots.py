"""PNG plots of a run and of an evaluation (matplotlib, no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training import metrics  # noqa: E402


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def training_curves(history: dict, path: Path) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, key in zip(axes, ("loss", "auc", "accuracy"), strict=True):
        if key in history:
            ax.plot(range(1, len(history[key]) + 1), history[key], label="train (augmented)")
        if f"val_{key}" in history:
            ax.plot(range(1, len(history[f"val_{key}"]) + 1), history[f"val_{key}"], label="validation")
        ax.set_title(key)
        ax.set_xlabel("epoch")
        ax.legend()
    return _save(fig, path)


def evaluation_plots(labels: np.ndarray, probs: np.ndarray, threshold: float, out: Path, title: str) -> list[Path]:
    """ROC, PR, confusion matrix and reliability diagram."""
    paths = []
    fpr, tpr, _ = metrics.roc_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"AUC {metrics.roc_auc(labels, probs):.4f}")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC - {title}")
    ax.legend(loc="lower right")
    paths.append(_save(fig, out / "roc.png"))

    precision, recall = metrics.pr_curve(labels, probs)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.step(recall, precision, where="post", label=f"AP {metrics.average_precision(labels, probs):.4f}")
    ax.set(xlabel="recall", ylabel="precision", title=f"PR - {title}", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    paths.append(_save(fig, out / "pr.png"))

    tn, fp, fn, tp = metrics.confusion(labels, probs, threshold)
    matrix = np.array([[tn, fp], [fn, tp]])
    fig, ax = plt.subplots(figsize=(4.2, 4))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), v in np.ndenumerate(matrix):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > matrix.max() / 2 else "black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["NORMAL", "PNEUMONIA"], yticklabels=["NORMAL", "PNEUMONIA"],
           xlabel="predicted", ylabel="true", title=f"threshold {threshold:.3f}")
    paths.append(_save(fig, out / "confusion_matrix.png"))

    bins = metrics.reliability_bins(labels, probs)
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.plot([b["mean_probability"] for b in bins], [b["fraction_positive"] for b in bins], "o-")
    ax.set(xlabel="mean predicted P(pneumonia)", ylabel="fraction pneumonia",
           title=f"reliability - ECE {metrics.expected_calibration_error(labels, probs):.3f}")
    paths.append(_save(fig, out / "reliability.png"))
    return paths


def plot_run(run: dict, run_dir: Path, out: Path) -> list[Path]:
    """Training curves plus the validation plots of a run."""
    saved = np.load(run_dir / "val_predictions.npz")
    return [training_curves(run["history"], out / "training_curves.png"),
            *evaluation_plots(saved["labels"], saved["probs"], run["threshold"], out, "validation")]
