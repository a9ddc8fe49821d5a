"""Wire format between the API and the Grad-CAM sidecar (numpy only, shared by both).

Request: `POST /gradcam`, body `application/octet-stream` = the enhanced uint8 model
input (S*S bytes, row-major). Headers give its shape and the model version:

    X-CXR-Input-Shape: S,S
    X-CXR-Model-Version: <card version>

When the model's ONNX graph gives the Grad-CAM layers' activations (card `output.gradcam`), the API
sends those instead, and the sidecar runs only the network after that layer
(`POST /gradcam/activations`, body = float32 C*H*W bytes, row-major, native byte order):

    X-CXR-Activations-Shape: C,H,W
    X-CXR-Model-Version: <card version>

The answer is the same either way. The sidecar decodes nothing and draws nothing: it answers JSON
with the heat maps only, `heatmaps` ({"PNEUMONIA": grid, "NORMAL": grid}: the evidence for each label, the layer's
grid, floats in [0, 1]), `empty_heatmaps` (per label), `layer`, `probability` (Keras),
`model_version`. The API draws the map of the label it returns. The API draws the overlay itself
(`app.imaging.overlay`) over the upload it already holds, so neither direction carries
an image larger than the model input.
"""

from __future__ import annotations

import numpy as np

CONTENT_TYPE = "application/octet-stream"
INPUT_SHAPE_HEADER = "X-CXR-Input-Shape"
ACTIVATIONS_SHAPE_HEADER = "X-CXR-Activations-Shape"
IMAGE_PATH, ACTIVATIONS_PATH = "/gradcam", "/gradcam/activations"
MODEL_VERSION_HEADER = "X-CXR-Model-Version"
HEATMAP_DECIMALS = 4  # ample: the overlay quantizes the map to 256 colours
LABELS = ("PNEUMONIA", "NORMAL")  # the keys of `heatmaps`


class ProtocolError(ValueError):
    """The request does not follow the wire format."""


def _shape_text(shape: tuple[int, ...]) -> str:
    return ",".join(str(int(n)) for n in shape)


def parse_shape(text: str | None, name: str, dims: str = "H,W") -> tuple[int, ...]:
    """'H,W' (or the `dims` given, e.g. 'C,H,W') -> positive integers."""
    n = len(dims.split(","))
    try:
        parts = tuple(int(p) for p in (text or "").split(","))
    except ValueError:
        raise ProtocolError(f"{name} must be '{dims}'") from None
    if len(parts) != n or min(parts) <= 0:
        raise ProtocolError(f"{name} must be {n} positive integers '{dims}'")
    return parts


def encode_request(model_input: np.ndarray, model_version: str) -> tuple[bytes, dict[str, str]]:
    """Enhanced uint8 S x S -> (body, headers)."""
    if model_input.dtype != np.uint8 or model_input.ndim != 2:
        raise ProtocolError("the model input must be a 2-D uint8 array")
    headers = {
        "Content-Type": CONTENT_TYPE,
        INPUT_SHAPE_HEADER: _shape_text(model_input.shape),
        MODEL_VERSION_HEADER: model_version,
    }
    return np.ascontiguousarray(model_input).tobytes(), headers


def decode_request(body: bytes, input_shape: tuple[int, int]) -> np.ndarray:
    """Inverse of `encode_request`; checks the body length against the shape."""
    expected = input_shape[0] * input_shape[1]
    if len(body) != expected:
        raise ProtocolError(f"body has {len(body)} bytes, the shape says {expected}")
    return np.frombuffer(body, dtype=np.uint8).reshape(input_shape)


def encode_activations_request(activations: np.ndarray, model_version: str) -> tuple[bytes, dict[str, str]]:
    """float32 (C, H, W) Grad-CAM layer activations -> (body, headers)."""
    if activations.ndim != 3:
        raise ProtocolError("the activations must be a 3-D (C, H, W) array")
    headers = {
        "Content-Type": CONTENT_TYPE,
        ACTIVATIONS_SHAPE_HEADER: _shape_text(activations.shape),
        MODEL_VERSION_HEADER: model_version,
    }
    return np.ascontiguousarray(activations, dtype=np.float32).tobytes(), headers


def decode_activations_request(body: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of `encode_activations_request`; checks the length against the shape and that every value is a
    finite number >= 0 (ReLU outputs)."""
    expected = 4 * int(np.prod(shape))
    if len(body) != expected:
        raise ProtocolError(f"body has {len(body)} bytes, the shape says {expected}")
    activations = np.frombuffer(body, dtype=np.float32).reshape(shape)
    if not np.isfinite(activations).all() or activations.min() < 0:
        raise ProtocolError("activations must be finite and >= 0")
    return activations


def decode_heatmap(values: object) -> np.ndarray:
    """The `heatmap` field -> float32 (h, w) in [0, 1]; ProtocolError if it is anything else."""
    try:
        grid = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError):
        raise ProtocolError("heatmap is not a grid of numbers") from None
    if grid.ndim != 2 or grid.size == 0 or not np.isfinite(grid).all() or grid.min() < 0 or grid.max() > 1:
        raise ProtocolError("heatmap must be a non-empty 2-D grid of numbers in [0, 1]")
    return grid
