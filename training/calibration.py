"""Calibration and threshold choice, both fitted on the validation split only."""

from __future__ import annotations

import numpy as np


def fit_platt(logits: np.ndarray, labels: np.ndarray, l2: float = 1e-3, iters: int = 100) -> tuple[float, float]:
    """Fit P = sigmoid(a * logit + b) by damped Newton steps on the log-loss.

    The small L2 term keeps `a` finite when validation is perfectly separable; the
    step is halved until the loss goes down, so the fit cannot diverge.
    """
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def loss(a: float, b: float) -> float:
        z = a * x + b
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * (a - 1.0) ** 2)

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(iters):
        p = 0.5 * (1.0 + np.tanh(0.5 * (a * x + b)))  # overflow-free sigmoid
        w = p * (1 - p)
        grad = np.array([np.sum((p - y) * x) + l2 * (a - 1.0), np.sum(p - y)])
        hess = np.array([
            [np.sum(w * x * x) + l2, np.sum(w * x)],
            [np.sum(w * x), np.sum(w) + 1e-9],
        ])
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-6 and loss(a - scale * step[0], b - scale * step[1]) > current:
            scale *= 0.5
        a, b = a - scale * step[0], b - scale * step[1]
        previous, current = current, loss(a, b)
        if abs(previous - current) < 1e-10 * max(1.0, abs(current)):
            break
    return float(a), float(b)


THRESHOLD_RULE = (
    "the highest threshold at which sensitivity on the patient-level validation split "
    "is still >= {min_sensitivity:.3f} (maximises specificity under a sensitivity floor), placed halfway "
    "to the next lower validation score"
)


def choose_threshold(labels: np.ndarray, probs: np.ndarray, min_sensitivity: float) -> float:
    """Highest threshold keeping validation sensitivity >= `min_sensitivity`.

    It sits halfway between the lowest positive that must be called PNEUMONIA and the
    next lower score, so a 1e-7 difference between runtimes (Keras vs onnxruntime)
    cannot flip a validation film across it.
    """
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    positives = np.sort(probs[labels == 1])[::-1]
    if positives.size == 0:
        raise ValueError("validation has no positive cases")
    needed = int(np.ceil(min_sensitivity * positives.size))
    boundary = positives[needed - 1]
    below = probs[probs < boundary]
    return float((boundary + below.max()) / 2) if below.size else float(boundary)


def fit_temperature(logits: np.ndarray, labels: np.ndarray, iters: int = 100) -> float:
    """Fit P = sigmoid(a * logit) (a = 1 / temperature) by damped Newton steps on the log-loss."""
    x = np.asarray(logits, dtype=np.float64)
    y = np.asarray(labels, dtype=np.float64)

    def loss(a: float) -> float:
        return float(np.sum(np.logaddexp(0.0, a * x) - y * a * x))

    a, current = 1.0, loss(1.0)
    for _ in range(iters):
        p = 0.5 * (1.0 + np.tanh(0.5 * a * x))
        grad, hess = float(np.sum((p - y) * x)), float(np.sum(p * (1 - p) * x * x)) + 1e-9
        scale = 1.0
        while scale > 1e-6 and loss(a - scale * grad / hess) > current:
            scale *= 0.5
        a -= scale * grad / hess
        previous, current = current, loss(a)
        if abs(previous - current) < 1e-10 * max(1.0, abs(current)):
            break
    return float(a)


def fit(method: str, logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(a, b) of P = sigmoid(a * logit + b) by `platt` (a and b) or `temperature` (a, b = 0)."""
    if method == "platt":
        return fit_platt(logits, labels)
    if method == "temperature":
        return fit_temperature(logits, labels), 0.0
    raise ValueError(f"unknown calibration method {method!r}: platt or temperature")


def sigmoid(z: np.ndarray) -> np.ndarray:
    """Overflow-free logistic function."""
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, dtype=np.float64)))


def logit(probs: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    return np.log(p / (1 - p))
