"""Training-time augmentation on uint8 grayscale films at model size.

Runs BEFORE the median filter and CLAHE (see `training.dataset`), so the model learns
from what the serving chain makes of a film taken with other exposure, contrast,
sharpness or framing. The official test split's normal films differ from train in
exactly these acquisition properties, and validation drawn from train cannot show it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    zoom: float = 0.15  # scale drawn from [1 - zoom, 1 + zoom]
    shift: float = 0.08  # fraction of the side
    gamma: float = 0.35  # gamma drawn log-uniformly from [1/(1+g), 1+g]
    contrast: float = 0.3  # multiplier drawn from [1 - c, 1 + c] around the mean
    brightness: float = 25.0  # offset in grey levels
    blur_sharpen_p: float = 0.3
    noise_sigma: float = 6.0
    noise_p: float = 0.3


def random_geometry(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Rotate, zoom and shift in one affine warp; borders repeat the edge."""
    h, w = image.shape
    angle = rng.uniform(-cfg.rotation_deg, cfg.rotation_deg)
    scale = rng.uniform(1.0 - cfg.zoom, 1.0 + cfg.zoom)
    matrix = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    matrix[0, 2] += rng.uniform(-cfg.shift, cfg.shift) * w
    matrix[1, 2] += rng.uniform(-cfg.shift, cfg.shift) * h
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def random_photometry(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, brightness, blur/sharpen and noise, as another scanner might."""
    x = image.astype(np.float32) / 255.0
    gamma = float(np.exp(rng.uniform(-np.log1p(cfg.gamma), np.log1p(cfg.gamma))))
    x = np.power(x, gamma)
    mean = float(x.mean())
    x = (x - mean) * rng.uniform(1.0 - cfg.contrast, 1.0 + cfg.contrast) + mean
    x = x * 255.0 + rng.uniform(-cfg.brightness, cfg.brightness)
    if rng.random() < cfg.blur_sharpen_p:
        blurred = cv2.GaussianBlur(x, (0, 0), sigmaX=rng.uniform(0.5, 1.5))
        amount = rng.uniform(-0.8, 1.0)  # < 0 blurs, > 0 sharpens (unsharp mask)
        x = x + amount * (x - blurred)
    if rng.random() < cfg.noise_p:
        x = x + rng.normal(0.0, rng.uniform(0.0, cfg.noise_sigma), size=x.shape).astype(np.float32)
    return np.clip(x, 0.0, 255.0).astype(np.uint8)


def augment(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    return random_photometry(random_geometry(image, cfg, rng), cfg, rng)
