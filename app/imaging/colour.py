"""How colourful an upload is: X-ray films are grey, photographs and screenshots usually are not."""

from __future__ import annotations

import numpy as np

MAX_SAMPLES = 16_384  # pixels looked at, on a regular sub-grid: a 12 Mpx photo costs ~0.1 ms


def colour_saturation(image: np.ndarray, max_samples: int = MAX_SAMPLES) -> float:
    """Mean chroma (max channel - min channel) over the pixels, as a share of full scale: 0.0 for grey.

    `image`: (H, W, 3) or (H, W, 4) in any channel order (RGB, BGR, with alpha: the alpha is
    ignored), uint8, uint16 (scaled by the smallest power-of-two range holding its maximum, as
    the decoder does) or float in [0, 1]. A 2-D or single-channel image is grey: 0.0.
    """
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return 0.0
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected (H, W, 3|4), got shape {image.shape}")
    h, w = image.shape[:2]
    step = max(1, int(np.ceil(np.sqrt(h * w / max_samples))))
    sample = image[::step, ::step, :3]
    if sample.dtype == np.uint8:
        full = 255.0
    elif sample.dtype == np.uint16:
        full = float((1 << max(int(sample.max()).bit_length(), 8)) - 1)
    elif np.issubdtype(sample.dtype, np.floating):
        full = 1.0
    else:
        raise ValueError(f"unsupported pixel type {sample.dtype}")
    if sample.size == 0:
        return 0.0
    a, b, c = sample[:, :, 0], sample[:, :, 1], sample[:, :, 2]  # numpy's max over a size-3 axis is slow
    chroma = np.maximum(np.maximum(a, b), c) - np.minimum(np.minimum(a, b), c)  # >= 0: no wrap-around
    return float(chroma.mean(dtype=np.float64)) / full
