"""Fit the out-of-distribution checks of `app.model.ood` on real films (`python -m training ood`).

Statistics: Gaussians (mean + Ledoit-Wolf shrinkage covariance, numpy) of the log pooled CNN
features and of 16x16 thumbnails, over the TRAINING films of the card's patient split.

Thresholds, on real films only (the validation films and `test_dev`, never a negative): for
each check, on each of the two sets, the larger of the set's maximum and an exponential-tail
estimate of its 1 - TAIL_P quantile (the excesses over the 90th percentile are fitted by an
exponential, as in peaks-over-threshold with a zero shape); the threshold is the larger over
the two sets. With six checks at TAIL_P = 0.001 each, the expected share of unseen real films
flagged is at most about 0.6%, within the 1% budget; a patient-level two-fold estimate on
`test_dev` checks that (`cross_validated_false_alarms`). The colour threshold is never below
COLOUR_FLOOR: the films are stored grey, so their own tail says nothing about a slight tint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.model.ood import OOD_FILE, OodDetector, statistics, thumbnails
from training.ood.data import Scored

TAIL_P = 0.001
TAIL_Q = 0.90
LOG_OFFSET = 0.01
LAYOUT_GRID = 16
COLOUR_FLOOR = 0.05
CHECKS = ("features", "layout_correlation", "layout_distance", "orientation", "contrast", "colour")
THRESHOLD_SETS = ("validation", "test_dev")

STATISTICS = {
    "features": "Mahalanobis distance of log(features + {offset}) to the training films' Gaussian",
    "layout_correlation": "1 - Pearson correlation of the enhanced image's {grid}x{grid} thumbnail with the mean "
                          "training film's",
    "layout_distance": "Mahalanobis distance of the {grid}x{grid} thumbnail to the training films' Gaussian",
    "orientation": "layout distance of the thumbnail over the least layout distance of its 90, 180 and 270 degree "
                   "turns (above 1: a turned image looks more like an upright film)",
    "contrast": "standard deviation of the enhanced {size}x{size} image (grey levels); flags values below",
    "colour": "mean chroma (max - min channel) of the decoded colour image, share of full scale",
}
THRESHOLD_RULE = (
    "per check, on the validation films and on test_dev separately: the larger of the set's maximum and an "
    f"exponential-tail estimate of its {100 * (1 - TAIL_P):.1f}th percentile (excesses over the "
    f"{100 * TAIL_Q:.0f}th percentile fitted by an exponential); the threshold is the larger over the two sets "
    f"(contrast: the same on -log(1 + std), flagging below; colour: at least {COLOUR_FLOOR})"
)
SCORE_RULE = ("ood_score = max over checks of statistic / threshold (threshold / max(statistic, 1) for contrast); "
              "in distribution when ood_score <= 1.0")


# ---- Gaussian fits ------------------------------------------------------------------------------------

def ledoit_wolf(x: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf (2004) shrinkage covariance of the rows of `x` towards a scaled identity, and the shrinkage."""
    n, p = x.shape
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / n
    mu = float(np.trace(cov)) / p
    x2 = xc**2
    beta = (float((x2.T @ x2).sum()) / n - float((cov**2).sum())) / (p * n)
    delta = (float((cov**2).sum()) - 2 * mu * float(np.trace(cov)) + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta <= 0 else beta / delta
    return (1 - shrinkage) * cov + shrinkage * mu * np.eye(p), shrinkage


def fit_gaussian(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, whitening, shrinkage): |(v - mean) @ whitening| is the Mahalanobis distance of v."""
    x = np.asarray(x, np.float64)
    cov, shrinkage = ledoit_wolf(x)
    eigenvalues, vectors = np.linalg.eigh(cov)
    eigenvalues = np.maximum(eigenvalues, eigenvalues.max() * 1e-10)
    return x.mean(axis=0), vectors / np.sqrt(eigenvalues), shrinkage


# ---- thresholds ---------------------------------------------------------------------------------------

def tail_threshold(values: np.ndarray, p: float = TAIL_P, q: float = TAIL_Q) -> float:
    """max(values, exponential-tail estimate of the 1 - p quantile); larger values are the unusual ones."""
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no values to choose a threshold on")
    top = float(values.max())
    u = float(np.quantile(values, q))
    excess = values[values > u] - u
    if values.size < 20 or excess.size == 0:
        return top
    return max(top, u + float(excess.mean()) * float(np.log((1 - q) / p)))


def threshold_for(check: str, sets: Mapping[str, np.ndarray], p: float = TAIL_P) -> float:
    """A check's threshold from its statistic on each real-film set (see the module doc)."""
    if check == "contrast":  # flags small values: the same rule on -log(1 + std)
        return float(np.expm1(-max(tail_threshold(-np.log1p(v), p) for v in sets.values())))
    measured = [tail_threshold(v, p) for v in sets.values() if np.isfinite(v).any()]
    if check == "colour":  # grey uploads have no colour statistic at all
        return max([*measured, COLOUR_FLOOR])
    if not measured:
        raise ValueError(f"no real film has a {check} statistic")
    return max(measured)


def flagged(check_stats: Mapping[str, np.ndarray], thresholds: Mapping[str, float]) -> np.ndarray:
    """Per image: does any check flag it? (NaN statistics flag nothing)."""
    n = len(next(iter(check_stats.values())))
    out = np.zeros(n, bool)
    for check, values in check_stats.items():
        with np.errstate(invalid="ignore"):
            out |= (values < thresholds[check]) if check == "contrast" else (values > thresholds[check])
    return out


# ---- the fit ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeaturesInfo:
    output: str
    layers: tuple[str, ...]
    dim: int


def fit_statistics(train: Scored, log_offset: float = LOG_OFFSET, grid: int = LAYOUT_GRID) -> tuple[dict, dict]:
    """The Gaussians of the training films: (arrays for ood.npz, figures for the card)."""
    f_mean, f_white, f_shrink = fit_gaussian(np.log(np.maximum(train.features.astype(np.float64), 0) + log_offset))
    l_mean, l_white, l_shrink = fit_gaussian(thumbnails(train.enhanced, grid))
    arrays = {"features_mean": f_mean, "features_whitening": f_white,
              "layout_mean": l_mean, "layout_whitening": l_white}
    return arrays, {"features_shrinkage": f_shrink, "layout_shrinkage": l_shrink}


def new_section(features: FeaturesInfo, input_size: int, n_train: int, shrinkage: Mapping[str, float]) -> dict:
    """The card's `ood` section without thresholds and figures."""
    fmt = {"offset": LOG_OFFSET, "grid": LAYOUT_GRID, "size": input_size}
    return {
        "file": OOD_FILE,
        "sha256": None,
        "method": "One score from six checks on what a prediction already computes (one ONNX run): the CNN's "
                  "pooled block features, the enhanced model input and the decoded colour; Gaussians fitted on "
                  "the training films, thresholds chosen on real films only",
        "features": {"output": features.output, "layers": list(features.layers), "dim": features.dim,
                     "log_offset": LOG_OFFSET},
        "layout_grid": LAYOUT_GRID,
        "fitted_on": {"films": "training part of the card's patient split", "n": n_train, **shrinkage},
        "checks": {c: {"statistic": STATISTICS[c].format(**fmt), "threshold": None,
                       "flags": "below" if c == "contrast" else "above"} for c in CHECKS},
        "score_threshold": 1.0,
        "rule": SCORE_RULE,
        "threshold_rule": THRESHOLD_RULE,
        "tail_p_per_check": TAIL_P,
    }


def fit(train: Scored, calibration: Mapping[str, Scored], features: FeaturesInfo) -> tuple[dict, dict]:
    """(card section, arrays for ood.npz): Gaussians on `train`, thresholds on `calibration` (real films only)."""
    arrays, shrinkage = fit_statistics(train)
    section = new_section(features, int(train.enhanced.shape[1]), len(train), shrinkage)
    per_set = {name: statistics(section, arrays, s.features, s.enhanced, s.saturation)
               for name, s in calibration.items()}
    for check in CHECKS:
        section["checks"][check]["threshold"] = threshold_for(check, {n: st[check] for n, st in per_set.items()})
    return section, arrays


def pass_rates(detector: OodDetector, sets: Mapping[str, Scored]) -> dict[str, dict]:
    """Share of each real-film set that passes, with the films flagged and the largest score."""
    out = {}
    for name, s in sets.items():
        results = detector.check_batch(s.features, s.enhanced, s.saturation)
        scores = np.array([r.score for r in results])
        out[name] = {"n": len(s), "passed": int(sum(r.in_distribution for r in results)),
                     "pass_rate": float(np.mean([r.in_distribution for r in results])) if results else None,
                     "max_score": float(scores.max()) if len(scores) else None,
                     "flagged": [s.names[i] for i, r in enumerate(results) if not r.in_distribution]}
    return out


def cross_validated_false_alarms(
    section: Mapping, arrays: Mapping[str, np.ndarray], validation: Scored, test_dev: Scored, patients: list[str],
    repeats: int = 100, seed: int = 0,
) -> dict:
    """Thresholds from validation + half of test_dev's patients, share flagged on the other half (repeated)."""
    val_stats = statistics(section, arrays, validation.features, validation.enhanced, validation.saturation)
    dev_stats = statistics(section, arrays, test_dev.features, test_dev.enhanced, test_dev.saturation)
    patients_arr = np.asarray(patients)
    unique = np.unique(patients_arr)
    rng = np.random.default_rng(seed)
    rates: list[float] = []
    by_check: dict[str, list[float]] = {c: [] for c in CHECKS}
    for _ in range(repeats):
        half = np.isin(patients_arr, rng.permutation(unique)[: len(unique) // 2])
        thresholds = {c: threshold_for(c, {"validation": val_stats[c], "half": dev_stats[c][half]}) for c in CHECKS}
        rates.append(float(flagged({c: v[~half] for c, v in dev_stats.items()}, thresholds).mean()))
        for c in CHECKS:
            by_check[c].append(float(flagged({c: dev_stats[c][~half]}, thresholds).mean()))
    return {"repeats": repeats, "rule": "thresholds from the validation films and half of test_dev's patients, "
            "share of the other half flagged", "mean": float(np.mean(rates)), "max": float(np.max(rates)),
            "p95": float(np.quantile(rates, 0.95)),
            "mean_by_check": {c: float(np.mean(v)) for c, v in by_check.items()}}


@dataclass(frozen=True)
class FilmSets:
    """Real films: `train` fits the Gaussians, validation and test_dev set the thresholds, val16 is reported."""

    train: list[Path]
    validation: list[Path]
    test_dev: list[Path]
    val16: list[Path]
