"""Training-time augmentation on uint8 grayscale films at model size.

Runs BEFORE the median filter and CLAHE (see `training.dataset`), so the model learns
from what the serving chain makes of a film taken with other exposure, contrast,
sharpness, framing or export path. The official test split's normal films differ from
train in exactly these properties, and validation drawn from train cannot show it.

Framing matters most (see `training/SHIFT.md`): every film of the data set was squashed
to a square, so a film's original aspect ratio survives as the apparent shape of the
chest, and a model can read the class from it. Independent x and y scales
(`aspect`) and wider zoom/shift take that cue away. `resample_p` and `jpeg_p` vary the
resampling path (another resize, another JPEG encoder), which the service meets when the
same film arrives as a full-size JPEG, a PNG, or a PNG already resized by the sender.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

_RESAMPLERS = (cv2.INTER_AREA, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_NEAREST)


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 10.0
    zoom: float = 0.15  # overall scale drawn from [1 - zoom, 1 + zoom]
    zoom_in: float = 0.0  # then magnified by a factor from [1, 1 + zoom_in]: a tighter crop
    zoom_in_normal: float = 0.0  # the same, for NORMAL films only (see below)
    zoom_out_pneumonia: float = 0.0  # PNEUMONIA films only: shrunk by a factor from [1/(1 + z), 1]
    aspect: float = 0.0  # x/y scale ratio drawn log-uniformly from [1/(1+a), 1+a]
    shift: float = 0.08  # fraction of the side
    hflip_p: float = 0.0
    gamma: float = 0.35  # gamma drawn log-uniformly from [1/(1+g), 1+g]
    contrast: float = 0.3  # multiplier drawn from [1 - c, 1 + c] around the mean
    brightness: float = 25.0  # offset in grey levels
    blur_sharpen_p: float = 0.3
    noise_sigma: float = 6.0
    noise_p: float = 0.3
    resample_p: float = 0.0  # down- then up-scale with random interpolations
    resample_min_scale: float = 0.4
    jpeg_p: float = 0.0  # re-encode as JPEG of random quality
    jpeg_quality: tuple[int, int] = (40, 95)
    erase_p: float = 0.0  # blank out one random rectangle (random erasing, Zhong et al. 2017)
    erase_area: tuple[float, float] = (0.02, 0.25)  # its share of the film

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> AugmentConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("jpeg_quality", "erase_area"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def _log_uniform(rng: np.random.Generator, spread: float) -> float:
    return float(np.exp(rng.uniform(-np.log1p(spread), np.log1p(spread))))


def random_geometry(
    image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, label: int | None = None
) -> np.ndarray:
    """Rotate, scale (x and y apart), shift and maybe mirror in one affine warp; borders repeat the edge.

    `zoom_in_normal` magnifies NORMAL films only: in train the normal films are framed
    wider (shoulders, arms, abdomen) than the pneumonia films, so framing predicts the
    label there and not on new films; tight crops of normal films break that link.
    `zoom_out_pneumonia` attacks the same link from the other class: wider views of pneumonia films.
    Each draws from `rng` only when it is set, so recipes without it keep their random stream.
    """
    h, w = image.shape
    angle = np.deg2rad(rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))
    scale = rng.uniform(1.0 - cfg.zoom, 1.0 + cfg.zoom) * rng.uniform(1.0, 1.0 + cfg.zoom_in)
    if label == 0 and cfg.zoom_in_normal > 0:
        scale *= rng.uniform(1.0, 1.0 + cfg.zoom_in_normal)
    if label == 1 and cfg.zoom_out_pneumonia > 0:
        scale /= rng.uniform(1.0, 1.0 + cfg.zoom_out_pneumonia)
    ratio = _log_uniform(rng, cfg.aspect) if cfg.aspect > 0 else 1.0
    sx, sy = scale * np.sqrt(ratio), scale / np.sqrt(ratio)
    if rng.random() < cfg.hflip_p:
        sx = -sx
    cos, sin = np.cos(angle), np.sin(angle)
    linear = np.array([[cos * sx, sin * sy], [-sin * sx, cos * sy]])
    return warp_about_centre(image, linear, rng.uniform(-cfg.shift, cfg.shift, 2))


def warp_about_centre(image: np.ndarray, linear: np.ndarray, shift: np.ndarray | tuple[float, float]) -> np.ndarray:
    """Apply the 2x2 `linear` map about the film's centre, then move it by `shift` (fractions of width and
    height); borders repeat the edge. The one warp of training augmentation and test-time augmentation."""
    h, w = image.shape
    centre = np.array([w / 2.0, h / 2.0])
    offset = centre - linear @ centre + np.asarray(shift, dtype=float) * np.array([w, h])
    matrix = np.hstack([linear, offset[:, None]])
    return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def random_photometry(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, contrast, brightness, blur/sharpen and noise, as another scanner might."""
    x = image.astype(np.float32) / 255.0
    x = np.power(x, _log_uniform(rng, cfg.gamma))
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


def random_resampling(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Another export path: a down-up resize with random interpolations, then maybe a JPEG round trip."""
    h, w = image.shape
    if rng.random() < cfg.resample_p:
        scale = rng.uniform(cfg.resample_min_scale, 1.0)
        small = (max(8, round(w * scale)), max(8, round(h * scale)))
        down = cv2.resize(image, small, interpolation=_RESAMPLERS[rng.integers(len(_RESAMPLERS))])
        image = cv2.resize(down, (w, h), interpolation=_RESAMPLERS[rng.integers(1, 3)])
    if rng.random() < cfg.jpeg_p:
        quality = int(rng.integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE) if ok else None
        if decoded is not None:
            image = decoded
    return image


def random_erasing(image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Fill one random rectangle with one random grey level, so that no single region (a shoulder, an
    arm, a film edge: where Grad-CAM looked on new normal films) can carry the answer alone.

    Draws nothing from `rng` when `erase_p` is 0, so recipes without erasing keep their random stream.
    """
    if cfg.erase_p <= 0 or rng.random() >= cfg.erase_p:
        return image
    h, w = image.shape
    area = rng.uniform(*cfg.erase_area) * h * w
    ratio = _log_uniform(rng, 2.0)  # height / width in [1/3, 3]
    eh, ew = min(h, max(1, round(np.sqrt(area * ratio)))), min(w, max(1, round(np.sqrt(area / ratio))))
    top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
    out = image.copy()
    out[top:top + eh, left:left + ew] = np.uint8(rng.integers(0, 256))
    return out


def augment(
    image: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator, label: int | None = None
) -> np.ndarray:
    """One random variant of a uint8 film; `label` (0 NORMAL, 1 PNEUMONIA) only for the class-conditional zooms."""
    varied = random_resampling(random_photometry(random_geometry(image, cfg, rng, label), cfg, rng), cfg, rng)
    return random_erasing(varied, cfg, rng)
