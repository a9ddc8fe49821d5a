"""The model in production: card + one onnxruntime session shared by all requests.

`InferenceSession.run` is thread-safe, so a single session serves every request from
the threadpool. The preprocessing `Preprocessor` holds an OpenCV CLAHE object that is
not, so each worker thread gets its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from app.imaging.decode import ImageFormat
from app.imaging.errors import UnsupportedFormatError
from app.imaging.overlay import preview_of
from app.imaging.preprocess import FULL_VIEW, Preprocessor, View
from app.model.card import ModelCard, load_model_card, sha256_of
from app.model.ood import OodDetector, OodResult, dicom_header_reasons
from app.model.session import open_session


class ModelIntegrityError(RuntimeError):
    """model.onnx is not the file the card describes."""


@dataclass(frozen=True)
class PreparedImage:
    """One upload after the shared chain.

    The overlay background (`preview`) is made on first use only: a `/predict` without
    Grad-CAM never needs it, and the resize cost ~15% of such a request's CPU.
    """

    format: ImageFormat
    width: int  # of the upload, as its header declares
    height: int
    enhanced: np.ndarray  # uint8 (S, S): the model input before scaling to [0, 1]
    decoded: np.ndarray  # uint8 gray as decoded (JPEGs may be at a reduced scale)
    dicom: dict[str, Any] | None = None  # for DICOM: the non-identifying tags, from the one parse
    colour_saturation: float | None = None  # from the decoder; None for grey sources and JPEGs
    view: View = FULL_VIEW  # the part of the upload the model input shows (the chain's crops)

    @cached_property
    def preview(self) -> np.ndarray:
        """uint8 gray, the upload's aspect, long side <= 512: the overlay's background."""
        return preview_of(self.decoded, self.width, self.height)

    @property
    def model_input(self) -> np.ndarray:
        """NHWC float32 batch of one, exactly as training and evaluation build it."""
        return Preprocessor.to_float(self.enhanced)[np.newaxis, :, :, np.newaxis]


OOD_WARNING = "this does not look like a frontal chest X-ray ({reasons}); no label is given"


@dataclass(frozen=True)
class Assessment:
    """One image's answer: P(pneumonia) and the input check (`app.model.ood`) from the same ONNX call."""

    probability: float
    in_distribution: bool
    ood_score: float | None  # None: the model has no input check (an older card)
    ood_reasons: tuple[str, ...] = ()
    # float32 (C, H, W): the Grad-CAM layers' activations, when asked for and the model has them
    gradcam_activations: np.ndarray | None = field(default=None, compare=False, repr=False)


class InferenceEngine:
    """`threads`: onnxruntime's intra-op threads per call (0: one per core). `alone_threads`, when it is
    more than a nonzero `threads`, opens a second session of the same model for calls that say they run
    `alone` (nothing else computing in the process): under load one thread per call wastes nothing on
    hand-offs, but a lone request then leaves cores idle (ONNX batch 1 here: 8.2 ms on one thread, 5.6 ms
    on two)."""

    def __init__(self, model_dir: Path | str, threads: int = 0, alone_threads: int | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.card: ModelCard = load_model_card(self.model_dir)
        onnx_path = self.model_dir / self.card.onnx_file
        digest = sha256_of(onnx_path)
        if digest != self.card.onnx_sha256:
            raise ModelIntegrityError(f"{onnx_path} has sha256 {digest}, the card says {self.card.onnx_sha256}")
        self.session = open_session(onnx_path, threads)
        self.alone_session = (open_session(onnx_path, alone_threads)
                              if threads and alone_threads and alone_threads > threads else None)
        self.ood = OodDetector.from_dir(self.model_dir)
        self._outputs = [self.card.output_name]
        if self.ood is not None and self.card.features_name:
            self._outputs.append(self.card.features_name)
        self._local = threading.local()

    @property
    def input_size(self) -> int:
        return self.card.preprocessing.input_size

    def preprocessor(self) -> Preprocessor:
        """This thread's Preprocessor (CLAHE objects are not thread-safe)."""
        pre = getattr(self._local, "preprocessor", None)
        if pre is None:
            pre = self._local.preprocessor = Preprocessor(self.card.preprocessing)
        return pre

    def prepare(self, data: bytes, max_pixels: int) -> PreparedImage:
        """Bytes -> model input and overlay background; raises `ImageError` subclasses."""
        pre = self.preprocessor()
        try:
            header, gray = pre.decode_with_header(data, max_pixels)
        except ModuleNotFoundError:  # DICOM sniffed but its optional reader is not installed
            raise UnsupportedFormatError("DICOM uploads are not supported by this deployment") from None
        framed, view = pre.frame(gray)
        return PreparedImage(header.format, header.width, header.height, pre.enhance(framed), gray, header.dicom,
                             header.colour_saturation, view)

    def predict(self, prepared: PreparedImage) -> float:
        """P(pneumonia) of one image."""
        return float(self.predict_batch(prepared.model_input)[0])

    def predict_batch(self, batch: np.ndarray) -> np.ndarray:
        """P(pneumonia) for an NHWC float32 batch, in one onnxruntime call (the batch axis is dynamic)."""
        return self._run(batch)[0]

    def _run(self, batch: np.ndarray, gradcam: bool = False, alone: bool = False
             ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(probabilities, features or None, Grad-CAM activations or None) of one onnxruntime call."""
        names = [*self._outputs, self.card.gradcam_name] if gradcam and self.has_gradcam_output else self._outputs
        session = self.alone_session if alone and self.alone_session is not None else self.session
        outputs: dict[str | None, np.ndarray] = dict(
            zip(names, session.run(names, {self.card.input_name: batch}), strict=True))
        probabilities = np.asarray(outputs[self.card.output_name], dtype=np.float64).reshape(len(batch), -1)[:, 0]
        return probabilities, outputs.get(self.card.features_name), outputs.get(self.card.gradcam_name)

    @property
    def has_gradcam_output(self) -> bool:
        """The ONNX graph gives the Grad-CAM layers' activations (`assess(..., gradcam=True)`)."""
        return self.card.gradcam_name is not None

    def assess(self, prepared: list[PreparedImage], gradcam: bool = False, alone: bool = False) -> list[Assessment]:
        """P(pneumonia) and the input check of each image, in one onnxruntime call; with `gradcam`, also
        the Grad-CAM layers' activations where the model has them. `alone`: nothing else computes in this
        process now, so the call may use every core (`alone_threads`)."""
        if not prepared:
            return []
        batch = np.concatenate([p.model_input for p in prepared], axis=0)
        probabilities, features, activations = self._run(batch, gradcam, alone)
        checks: list[OodResult | None] = [None] * len(prepared)
        if self.ood is not None and features is not None:
            checks = list(self.ood.check_batch(features, np.stack([p.enhanced for p in prepared]),
                                               [p.colour_saturation for p in prepared]))
        answers = []
        for k, (image, probability, check) in enumerate(zip(prepared, probabilities, checks, strict=True)):
            header = dicom_header_reasons(image.dicom)  # e.g. a CT or MR slice, whatever its pixels look like
            reasons = tuple(check.reasons if check else ()) + tuple(header)
            answers.append(Assessment(float(probability), (check is None or check.in_distribution) and not header,
                                      check.score if check else None, reasons,
                                      activations[k] if activations is not None else None))
        return answers

    def label_for(self, probability: float) -> str:
        return "PNEUMONIA" if probability >= self.card.threshold else "NORMAL"

    def warm_up(self) -> None:
        """One call on each session, so that no request pays for onnxruntime's first run."""
        batch = np.zeros((1, self.input_size, self.input_size, 1), np.float32)
        for alone in (False, True) if self.alone_session is not None else (False,):
            self._run(batch, alone=alone)
