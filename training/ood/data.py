"""Uploads -> what the OOD checks see, through the serving chain (decode, preprocess, one ONNX run).

Used to fit the checks on real films and to score the negatives: every input is a file's
bytes, decoded by `app.imaging.decode` with the card's `Preprocessor`, exactly as /predict
does, colour saturation and DICOM tags included.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.imaging.errors import ImageError
from app.imaging.preprocess import Preprocessor
from app.model.card import ModelCard, load_model_card
from app.model.session import open_session


@dataclass
class Scored:
    """A set of uploads after the chain: one row per upload that decoded, and the rejected ones."""

    names: list[str] = field(default_factory=list)
    features: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    enhanced: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.uint8))
    probability: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    saturation: list[float | None] = field(default_factory=list)
    tags: list[dict | None] = field(default_factory=list)  # the decoder's DICOM tags (None for other formats)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (name, error) the decoder refused

    def __len__(self) -> int:
        return len(self.names)


class ChainRunner:
    """The card's chain and one onnxruntime session with the `features` output."""

    def __init__(self, model_dir: Path | str, features_name: str | None = "features") -> None:
        self.model_dir = Path(model_dir)
        self.card: ModelCard = load_model_card(self.model_dir)
        self.session = open_session(self.model_dir / self.card.onnx_file)
        self.features_name = features_name
        self.pre = Preprocessor(self.card.preprocessing)

    def run(self, enhanced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probability (N,), features (N, D)) for uint8 enhanced images, in one ONNX call
        (features (N, 0) when the runner has no features output)."""
        batch = Preprocessor.to_float(enhanced)[..., np.newaxis]
        if self.features_name is None:
            (prob,) = self.session.run([self.card.output_name], {self.card.input_name: batch})
            return prob.reshape(-1), np.zeros((len(batch), 0), np.float32)
        prob, feats = self.session.run([self.card.output_name, self.features_name], {self.card.input_name: batch})
        return prob.reshape(-1), feats

    def score(self, uploads: Iterable[tuple[str, bytes]], batch_size: int = 64) -> Scored:
        out = Scored()
        enhanced: list[np.ndarray] = []
        for name, data in uploads:
            try:
                header, gray = self.pre.decode_with_header(data)
            except ImageError as exc:
                out.rejected.append((name, f"{type(exc).__name__}: {exc}"))
                continue
            enhanced.append(self.pre.enhance(self.pre.resize(gray)))
            out.names.append(name)
            out.saturation.append(header.colour_saturation)
            out.tags.append(header.dicom)
        if not enhanced:
            return out
        out.enhanced = np.stack(enhanced)
        probs, feats = [], []
        for start in range(0, len(enhanced), batch_size):
            p, f = self.run(out.enhanced[start:start + batch_size])
            probs.append(p)
            feats.append(f)
        out.probability, out.features = np.concatenate(probs), np.concatenate(feats)
        return out

    def score_files(self, paths: Iterable[Path]) -> Scored:
        return self.score((p.name, p.read_bytes()) for p in paths)
