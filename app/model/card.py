"""The model card: the contract between a training run and the services.

Training writes `model_card.json` next to the exported model; the API and the
Grad-CAM sidecar read the preprocessing parameters, threshold, file names and hashes
from it, so what runs in production is what was trained and validated.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.imaging.preprocess import PreprocessConfig

CARD_FILE = "model_card.json"


@dataclass(frozen=True)
class ModelCard:
    version: str
    threshold: float
    preprocessing: PreprocessConfig
    onnx_file: str
    keras_file: str
    onnx_sha256: str
    gradcam_layer: str
    gradcam_layers: tuple[str, ...] = ()  # one per member of an ensemble; the sidecar averages their maps
    input_name: str = "image"
    output_name: str = "probability"
    # The graph's second output (pooled CNN features for the out-of-distribution check); None: older models.
    features_name: str | None = None
    # The graph's Grad-CAM layer activations, which the sidecar maps from; None: older models (the API then
    # sends the sidecar the model input and it runs the whole network).
    gradcam_name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        return cls(
            version=str(data["version"]),
            threshold=float(data["threshold"]),
            preprocessing=PreprocessConfig.from_dict(data["preprocessing"]),
            onnx_file=data["files"]["onnx"],
            keras_file=data["files"]["keras"],
            onnx_sha256=data["onnx_sha256"],
            gradcam_layer=data["gradcam_layer"],
            gradcam_layers=tuple(data.get("gradcam_layers") or [data["gradcam_layer"]]),
            input_name=data.get("input", {}).get("name", "image"),
            output_name=data.get("output", {}).get("name", "probability"),
            features_name=(data.get("output", {}).get("features") or {}).get("name"),
            gradcam_name=(data.get("output", {}).get("gradcam") or {}).get("name"),
            raw=data,
        )


def load_model_card(model_dir: Path | str) -> ModelCard:
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no model card at {path}")
    return ModelCard.from_dict(json.loads(path.read_text()))


def versioned(base_version: str, onnx_sha256: str) -> str:
    """The version of a model whose ONNX file has this hash: the base's release, "+", 12 hex digits."""
    return f"{base_version.split('+')[0]}+{onnx_sha256[:12]}"


def restamp(card: dict, onnx_path: Path | str) -> str:
    """After a card's ONNX file was rewritten in place: its new hash and version in `card`; returns the old
    version (the new one's parent)."""
    parent = card["version"]
    card["onnx_sha256"] = sha256_of(onnx_path)
    card["version"] = versioned(parent, card["onnx_sha256"])
    return parent


def sha256_of(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
