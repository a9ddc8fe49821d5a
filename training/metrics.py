"""Classification metrics in plain NumPy: threshold metrics, ROC/PR, ECE, bootstrap.

Label 1 = PNEUMONIA (the positive class); `probs` are P(pneumonia).
"""

from __future__ import annotations

import numpy as np


def confusion(labels: np.ndarray, probs: np.ndarray, threshold: float) -> tuple[int, int, int, int]:
    """(tn, fp, fn, tp) with `prediction = probs >= threshold`."""
    pred = probs >= threshold
    labels = labels.astype(bool)
    return (
        int(np.sum(~pred & ~labels)),
        int(np.sum(pred & ~labels)),
        int(np.sum(~pred & labels)),
        int(np.sum(pred & labels)),
    )


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def roc_curve(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False-positive rate, true-positive rate and the thresholds, high to low."""
    order = np.argsort(-probs, kind="mergesort")
    scores, y = probs[order], labels[order].astype(float)
    distinct = np.r_[np.where(np.diff(scores))[0], y.size - 1]
    tps, fps = np.cumsum(y)[distinct], np.cumsum(1 - y)[distinct]
    tpr = np.r_[0.0, tps / max(tps[-1], 1)]
    fpr = np.r_[0.0, fps / max(fps[-1], 1)]
    return fpr, tpr, np.r_[np.inf, scores[distinct]]


def roc_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    if labels.min() == labels.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(labels, probs)
    return float(np.trapezoid(tpr, fpr))


def misordered_pairs(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """For each film, the films of the other class it is ranked wrongly against (ties count half, as in ROC
    AUC): a normal film counts the pneumonia films scored below it, a pneumonia film the normal films scored
    above it. Either class's sum is (1 - ROC AUC) x normals x pneumonias, so this says which films the AUC is
    lost on."""
    labels, scores = np.asarray(labels).astype(int), np.asarray(scores, dtype=np.float64)
    positives, negatives = np.sort(scores[labels == 1]), np.sort(scores[labels == 0])

    def below_and_tied(sorted_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        below = np.searchsorted(sorted_scores, scores, side="left")
        return below, np.searchsorted(sorted_scores, scores, side="right") - below

    positives_below, positives_tied = below_and_tied(positives)
    negatives_below, negatives_tied = below_and_tied(negatives)
    negatives_above = negatives.size - negatives_below - negatives_tied
    return np.where(labels == 1, negatives_above + 0.5 * negatives_tied, positives_below + 0.5 * positives_tied)


def pr_curve(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct threshold, high to low."""
    order = np.argsort(-probs, kind="mergesort")
    scores, y = probs[order], labels[order].astype(float)
    distinct = np.r_[np.where(np.diff(scores))[0], y.size - 1]
    tps, fps = np.cumsum(y)[distinct], np.cumsum(1 - y)[distinct]
    precision = tps / np.maximum(tps + fps, 1)
    recall = tps / max(tps[-1], 1)
    return np.r_[1.0, precision], np.r_[0.0, recall]


def average_precision(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the PR curve as the step-wise sum (scikit-learn's definition)."""
    if labels.max() == 0:
        return float("nan")
    precision, recall = pr_curve(labels, probs)
    return float(np.sum(np.diff(recall) * precision[1:]))


def _ece_of_label_sets(labels: np.ndarray, probs: np.ndarray, n_bins: int) -> np.ndarray:
    """ECE of each label set along `labels`' last axis (the films), binned once for all of them. A bin's
    weight n_b / N times |mean label - mean probability| is |sum of (label - probability)| / N."""
    probs = np.asarray(probs, dtype=np.float64)
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    in_bin = bins[:, None] == np.arange(n_bins)  # films x bins
    return np.abs((np.asarray(labels, dtype=np.float64) - probs) @ in_bin).sum(axis=-1) / probs.size


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """Weighted mean |accuracy - confidence| of P(pneumonia) over equal-width bins."""
    return float(_ece_of_label_sets(labels, probs, n_bins))


def ece_if_calibrated(probs: np.ndarray, n_sim: int = 1000, n_bins: int = 15, seed: int = 0) -> dict:
    """The ECE a perfectly calibrated model with these probabilities would still show on this many films:
    labels drawn as Bernoulli(probability), `n_sim` times. With the shipped model's probabilities on the
    299 `test_dev` films it is 0.033 (README): a measured ECE says miscalibration only well above it."""
    probs = np.asarray(probs, dtype=np.float64)
    labels = np.random.default_rng(seed).random((n_sim, probs.size)) < probs  # one calibrated label set a row
    draws = _ece_of_label_sets(labels, probs, n_bins)
    return {"mean": float(draws.mean()), "p95": float(np.quantile(draws, 0.95)), "n_sim": n_sim}


def reliability_bins(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> list[dict]:
    bins = np.minimum((probs * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            rows.append({
                "bin": [b / n_bins, (b + 1) / n_bins],
                "n": int(mask.sum()),
                "mean_probability": float(probs[mask].mean()),
                "fraction_positive": float(labels[mask].mean()),
            })
    return rows


def threshold_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    tn, fp, fn, tp = confusion(labels, probs, threshold)
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    return {
        "n": int(labels.size),
        "accuracy": _ratio(tp + tn, labels.size),
        "precision": precision,
        "recall": recall,
        "sensitivity": recall,
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * precision * recall, precision + recall),
        "confusion_matrix": [[tn, fp], [fn, tp]],
    }


def bootstrap_interval(
    labels: np.ndarray, probs: np.ndarray, metric, n_boot: int = 1000, seed: int = 0
) -> list[float]:
    """95% percentile bootstrap interval of `metric(labels, probs)`."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = rng.integers(0, labels.size, labels.size)
        value = metric(labels[idx], probs[idx])
        if np.isfinite(value):
            values.append(value)
    if not values:
        return [float("nan"), float("nan")]
    low, high = np.percentile(values, [2.5, 97.5])
    return [float(low), float(high)]


def paired_bootstrap_difference(
    labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray, groups: np.ndarray, metric,
    n_boot: int = 1000, seed: int = 0,
) -> dict:
    """`metric(a) - metric(b)` on the same films, with a 95% interval from resampling whole `groups`
    (patients) with replacement: both models see the same resample, so what they share cancels."""
    labels, groups = np.asarray(labels), np.asarray(groups)
    unique, inverse = np.unique(groups, return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(len(unique))]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        idx = np.concatenate([members[g] for g in rng.integers(0, len(unique), len(unique))])
        value = metric(labels[idx], scores_a[idx]) - metric(labels[idx], scores_b[idx])
        if np.isfinite(value):
            values.append(value)
    low, high = np.percentile(values, [2.5, 97.5]) if values else (float("nan"), float("nan"))
    return {"difference": float(metric(labels, scores_a) - metric(labels, scores_b)),
            "ci95": [float(low), float(high)], "n_boot": n_boot}


def full_report(labels: np.ndarray, probs: np.ndarray, threshold: float, n_boot: int = 1000) -> dict:
    """Everything `python -m training evaluate` prints, intervals included."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    report = threshold_metrics(labels, probs, threshold)
    report.update({
        "roc_auc": roc_auc(labels, probs),
        "pr_auc": average_precision(labels, probs),
        "ece": expected_calibration_error(labels, probs),
        "threshold": float(threshold),
        "prevalence": float(labels.mean()) if labels.size else float("nan"),
    })
    accuracy = lambda y, p: float(np.mean((p >= threshold) == y))  # noqa: E731
    report["accuracy_ci95"] = bootstrap_interval(labels, probs, accuracy, n_boot)
    report["roc_auc_ci95"] = bootstrap_interval(labels, probs, roc_auc, n_boot)
    report["ece_if_calibrated"] = ece_if_calibrated(probs, n_sim=n_boot)
    return report
