"""Is this upload a chest film at all? An out-of-distribution (OOD) score, numpy only.

The score reuses what a prediction already computes: the CNN's pooled block features (the
ONNX graph's second output `features`, same run) and the enhanced model-size image; the
colour saturation comes from the decoder. Each check has a statistic and a threshold chosen
on real films only (`python -m training ood`, method and figures in training/OOD.md):

  features            Mahalanobis distance of log(features + offset) to a Gaussian fitted on the
                      training films (texture statistics of the CNN's blocks 3-5)
  layout_correlation  1 - correlation of a 16x16 thumbnail of the enhanced image with the mean
                      training film (rotated, inverted images)
  layout_distance     Mahalanobis distance of that thumbnail to the training films' (cropped,
                      tiled, shrunk images)
  orientation         that distance over the smallest distance of the thumbnail turned by 90, 180
                      or 270 degrees: above ~1, a turned image looks more like an upright film than
                      the upload does (films on their side or upside down)
  contrast            standard deviation of the enhanced image; flags values BELOW its threshold
  colour              mean chroma of the decoded colour image (films are grey)

`score` is the largest statistic/threshold ratio (threshold/max(statistic, 1) for contrast), so an
upload is in distribution when score <= 1.0. A DICOM header can say so by itself:
`dicom_header_reasons`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from app.model.card import CARD_FILE, sha256_of

OOD_FILE = "ood.npz"
SCORE_THRESHOLD = 1.0
# A check's threshold can sit exactly at a real film's statistic (the rule takes the real sets' maximum);
# one image alone and the same image in a batch differ by float rounding (~1e-15 relative here), which
# must not flip that film. Well below any real difference between films.
NUMERICAL_TOLERANCE = 1e-6
REASONS = {
    "features": "the image does not look like the chest films the model was trained on",
    "layout_correlation": "the image is not laid out like a frontal chest film (rotated, inverted or another subject)",
    "layout_distance": "the image is not framed like a chest film (cropped, tiled, shrunk or another subject)",
    "orientation": "the image looks turned: on its side or upside down",
    "contrast": "the image is nearly uniform",
    "colour": "the image is in colour; X-ray films are grey",
}
_BELOW = frozenset({"contrast"})  # checks that flag small values


class OodIntegrityError(RuntimeError):
    """ood.npz is missing or is not the file the card describes."""


@dataclass(frozen=True)
class OodResult:
    score: float  # max over checks of statistic/threshold; > 1.0: out of distribution
    in_distribution: bool
    reasons: list[str]
    checks: dict[str, float] = field(default_factory=dict)  # each check's ratio to its threshold


@dataclass(frozen=True)
class Gaussian:
    """Mahalanobis distance to a Gaussian: |(x - mean) @ whitening|, whitening = V diag(1/sqrt(eigenvalues))."""

    mean: np.ndarray
    whitening: np.ndarray

    def distance(self, x: np.ndarray) -> np.ndarray:
        z = (np.asarray(x, np.float64).reshape(len(x), -1) - self.mean) @ self.whitening
        return np.sqrt(np.einsum("ij,ij->i", z, z))


def thumbnails(enhanced: np.ndarray, grid: int) -> np.ndarray:
    """(N, S, S) or (S, S) uint8 -> (N, grid*grid) float64 area-averaged thumbnails in [0, 1]."""
    batch = enhanced[np.newaxis] if enhanced.ndim == 2 else enhanced
    small = [cv2.resize(img.astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA) for img in batch]
    return np.stack(small).reshape(len(batch), grid * grid).astype(np.float64) / 255.0


def correlation_distance(rows: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """1 - Pearson correlation of each row with `reference`: 0 same pattern, 2 its negative."""
    a = rows - rows.mean(axis=1, keepdims=True)
    b = reference - reference.mean()
    denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b)
    return 1.0 - (a @ b) / np.maximum(denominator, 1e-12)


def orientation_ratio(thumbs: np.ndarray, layout: Gaussian, grid: int) -> np.ndarray:
    """Distance of each thumbnail to the upright-film Gaussian over the least distance of its 90/180/270-degree turns.

    A likelihood-ratio test of "upright" against "turned": a film's own atypicality cancels out, so
    an upside-down film stands out although the mean film is nearly symmetric top to bottom.
    """
    squares = thumbs.reshape(len(thumbs), grid, grid)
    turned = [layout.distance(np.rot90(squares, k, axes=(1, 2)).reshape(len(thumbs), -1)) for k in (1, 2, 3)]
    return layout.distance(thumbs) / np.maximum(np.min(turned, axis=0), 1e-12)


def contrast(enhanced: np.ndarray) -> np.ndarray:
    """(N, S, S) or (S, S) uint8 -> (N,) standard deviation in grey levels."""
    batch = enhanced[np.newaxis] if enhanced.ndim == 2 else enhanced
    return np.array([cv2.meanStdDev(img)[1].item() for img in batch], np.float64)


def statistics(
    section: Mapping[str, Any], stats: Mapping[str, np.ndarray], features: np.ndarray, enhanced: np.ndarray,
    colour_saturation: Sequence[float | None] | None,
) -> dict[str, np.ndarray]:
    """Each check's raw statistic for a batch (NaN where not available, e.g. no colour image).

    Shared by serving and by the fit (training.ood.fit), so thresholds are chosen on exactly these numbers.
    """
    checks = section["checks"]
    n = len(enhanced)
    out: dict[str, np.ndarray] = {}
    if "features" in checks:
        offset = float(section["features"]["log_offset"])
        x = np.log(np.maximum(np.asarray(features, np.float64), 0.0) + offset)
        out["features"] = Gaussian(stats["features_mean"], stats["features_whitening"]).distance(x)
    if {"layout_correlation", "layout_distance", "orientation"} & set(checks):
        grid = int(section["layout_grid"])
        thumbs = thumbnails(enhanced, grid)
        layout = Gaussian(stats["layout_mean"], stats["layout_whitening"])
        if "layout_correlation" in checks:
            out["layout_correlation"] = correlation_distance(thumbs, stats["layout_mean"])
        if "layout_distance" in checks:
            out["layout_distance"] = layout.distance(thumbs)
        if "orientation" in checks:
            out["orientation"] = orientation_ratio(thumbs, layout, grid)
    if "contrast" in checks:
        out["contrast"] = contrast(enhanced)
    if "colour" in checks:
        sat = list(colour_saturation) if colour_saturation is not None else [None] * n
        out["colour"] = np.array([np.nan if s is None else float(s) for s in sat], np.float64)
    return out


class OodDetector:
    """The model's OOD checks: thresholds from the card's `ood` section, statistics from ood.npz."""

    def __init__(self, section: Mapping[str, Any], stats: Mapping[str, np.ndarray]) -> None:
        self.section = dict(section)
        self.stats = {k: np.asarray(v, np.float64) for k, v in stats.items()}
        self.thresholds: dict[str, float] = {name: float(c["threshold"]) for name, c in section["checks"].items()}
        self.features_name: str = section["features"]["output"]

    @classmethod
    def from_dir(cls, model_dir: Path | str) -> OodDetector | None:
        """The model's detector; None when its card has no `ood` section (older models)."""
        model_dir = Path(model_dir)
        card = json.loads((model_dir / CARD_FILE).read_text())
        section = card.get("ood")
        if not section:
            return None
        path = model_dir / section["file"]
        if not path.is_file():
            raise OodIntegrityError(f"the card's ood section needs {path}, which is missing")
        digest = sha256_of(path)
        if digest != section["sha256"]:
            raise OodIntegrityError(f"{path} has sha256 {digest}, the card says {section['sha256']}")
        with np.load(path, allow_pickle=False) as stats:
            return cls(section, {k: stats[k] for k in stats.files})

    def statistics(
        self, features: np.ndarray, enhanced: np.ndarray, colour_saturation: Sequence[float | None] | None = None
    ) -> dict[str, np.ndarray]:
        return statistics(self.section, self.stats, features, enhanced, colour_saturation)

    def ratios(self, statistics: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """statistic/threshold (threshold/max(statistic, 1) for contrast, which flags small values); NaN stays NaN."""
        out = {}
        for name, values in statistics.items():
            t = self.thresholds[name]
            out[name] = t / np.maximum(values, 1.0) if name in _BELOW else values / t
        return out

    def check_batch(
        self, features: np.ndarray, enhanced: np.ndarray, colour_saturation: Sequence[float | None] | None = None
    ) -> list[OodResult]:
        """One result per image. `features`: the ONNX `features` output (N, D); `enhanced`: uint8 (N, S, S)
        model-size images before scaling to [0, 1]; `colour_saturation`: per image, None for a grey upload."""
        if enhanced.ndim == 2:
            enhanced = enhanced[np.newaxis]
        features = np.asarray(features).reshape(len(features), -1)
        if len(features) != len(enhanced):
            raise ValueError(f"{len(features)} feature rows for {len(enhanced)} images")
        ratios = self.ratios(self.statistics(features, enhanced, colour_saturation))
        results = []
        for i in range(len(enhanced)):
            row = {name: float(r[i]) for name, r in ratios.items() if not np.isnan(r[i])}
            score = max(row.values(), default=0.0)
            limit = SCORE_THRESHOLD + NUMERICAL_TOLERANCE
            reasons = [REASONS[name] for name, r in row.items() if r > limit]
            results.append(OodResult(score, score <= limit, reasons, row))
        return results

    def check(self, features: np.ndarray, enhanced: np.ndarray, colour_saturation: float | None = None) -> OodResult:
        """One image: `features` (D,) or (1, D), `enhanced` uint8 (S, S)."""
        return self.check_batch(np.asarray(features).reshape(1, -1), enhanced, [colour_saturation])[0]


# ---- DICOM header -----------------------------------------------------------------------------------

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX", "DR", "RG"})
UNSPECIFIC_MODALITIES = frozenset({"", "OT"})  # says nothing: left to the image checks
_CHEST_WORDS = ("CHEST", "THORAX", "THORAC", "LUNG", "PULM", "THX", "TORAX", "TORACE", "THORAKS", "BRUST", "POITRINE")


def dicom_header_reasons(tags: Mapping[str, Any] | None) -> list[str]:
    """Why the header says this is not a chest radiograph (empty: it does not say so).

    `tags`: what `app.imaging.dicom.dicom_summary` returns (`modality`, `body_part_examined`, ...).
    An absent or unspecific (OT) modality and an absent body part are not reasons.
    """
    if not tags:
        return []
    reasons = []
    modality = str(tags.get("modality") or "").strip().upper()[:16]  # CS values are at most 16 characters
    if modality not in RADIOGRAPH_MODALITIES | UNSPECIFIC_MODALITIES:
        reasons.append(f"the DICOM modality is {modality}, not a radiograph (CR, DX)")
    body_part = str(tags.get("body_part_examined") or "").strip().upper()[:16]
    if body_part and not any(word in body_part for word in _CHEST_WORDS):
        reasons.append(f"the DICOM body part is {body_part}, not the chest")
    return reasons
