"""Wire format between the API and the Grad-CAM sidecar (numpy only, shared by both).

Request: `POST /gradcam`, body `application/octet-stream` = the enhanced uint8 model
input (S*S bytes, row-major) immediately followed by the uint8 grayscale upload already
downsized to long side <= 512 (H*W bytes). Headers give the shapes and the model version:

    X-CXR-Input-Shape: S,S
    X-CXR-Image-Shape: H,W
    X-CXR-Model-Version: <card version>

The sidecar decodes nothing. It answers JSON (see `GradcamResponse` in the sidecar):
`overlay_png` (base64 PNG, H x W), `heatmap` (the layer's grid, floats in [0, 1]),
`layer`, `probability` (Keras), `explained_label`, `empty_heatmap`, `model_version`.
"""

from __future__ import annotations

import numpy as np

CONTENT_TYPE = "application/octet-stream"
INPUT_SHAPE_HEADER = "X-CXR-Input-Shape"
IMAGE_SHAPE_HEADER = "X-CXR-Image-Shape"
MODEL_VERSION_HEADER = "X-CXR-Model-Version"
MAX_OVERLAY_SIDE = 512


class ProtocolError(ValueError):
    """The request does not follow the wire format."""


def _shape_text(shape: tuple[int, ...]) -> str:
    return ",".join(str(int(n)) for n in shape)


def parse_shape(text: str | None, name: str) -> tuple[int, int]:
    try:
        parts = tuple(int(p) for p in (text or "").split(","))
    except ValueError:
        raise ProtocolError(f"{name} must be 'H,W'") from None
    if len(parts) != 2 or min(parts) <= 0:
        raise ProtocolError(f"{name} must be two positive integers 'H,W'")
    return parts  # type: ignore[return-value]


def encode_request(model_input: np.ndarray, image: np.ndarray, model_version: str) -> tuple[bytes, dict[str, str]]:
    """(enhanced uint8 S x S, uint8 gray H x W) -> (body, headers)."""
    if model_input.dtype != np.uint8 or image.dtype != np.uint8 or model_input.ndim != 2 or image.ndim != 2:
        raise ProtocolError("both arrays must be 2-D uint8")
    body = np.ascontiguousarray(model_input).tobytes() + np.ascontiguousarray(image).tobytes()
    headers = {
        "Content-Type": CONTENT_TYPE,
        INPUT_SHAPE_HEADER: _shape_text(model_input.shape),
        IMAGE_SHAPE_HEADER: _shape_text(image.shape),
        MODEL_VERSION_HEADER: model_version,
    }
    return body, headers


def decode_request(
    body: bytes, input_shape: tuple[int, int], image_shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of `encode_request`; checks the body length against the shapes."""
    n_input = input_shape[0] * input_shape[1]
    n_image = image_shape[0] * image_shape[1]
    if len(body) != n_input + n_image:
        raise ProtocolError(f"body has {len(body)} bytes, the shapes say {n_input + n_image}")
    buffer = np.frombuffer(body, dtype=np.uint8)
    return buffer[:n_input].reshape(input_shape), buffer[n_input:].reshape(image_shape)
