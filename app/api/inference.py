"""The model in production: card + one onnxruntime session shared by all requests.

`InferenceSession.run` is thread-safe, so a single session serves every request from
the threadpool. The preprocessing `Preprocessor` holds an OpenCV CLAHE object that is
not, so each worker thread gets its own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from app.imaging.decode import ImageFormat
from app.imaging.errors import UnsupportedFormatError
from app.imaging.overlay import DEFAULT_LONG_SIDE as MAX_OVERLAY_SIDE
from app.imaging.preprocess import Preprocessor
from app.model_card import ModelCard, load_model_card, sha256_of


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

    @cached_property
    def preview(self) -> np.ndarray:
        """uint8 gray, the upload's aspect, long side <= 512: the overlay's background."""
        return preview_of(self.decoded, self.width, self.height)

    @property
    def model_input(self) -> np.ndarray:
        """NHWC float32 batch of one, exactly as training and evaluation build it."""
        return Preprocessor.to_float(self.enhanced)[np.newaxis, :, :, np.newaxis]


def preview_of(gray: np.ndarray, width: int, height: int, long_side: int = MAX_OVERLAY_SIDE) -> np.ndarray:
    """The overlay background: the upload's aspect ratio, long side min(long_side, the upload's).

    Large JPEGs are decoded at a reduced scale sized for the model, which can leave fewer
    pixels than the overlay wants; those few are made up by a linear upscale.
    """
    scale = min(1.0, long_side / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if (gray.shape[1], gray.shape[0]) == size:
        return gray
    shrinking = size[0] < gray.shape[1]
    return cv2.resize(gray, size, interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


class InferenceEngine:
    def __init__(self, model_dir: Path | str, threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.card: ModelCard = load_model_card(self.model_dir)
        onnx_path = self.model_dir / self.card.onnx_file
        digest = sha256_of(onnx_path)
        if digest != self.card.onnx_sha256:
            raise ModelIntegrityError(f"{onnx_path} has sha256 {digest}, the card says {self.card.onnx_sha256}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # No spin-waiting: requests run preprocessing on the same cores from the threadpool (and the
        # sidecar's TensorFlow shares them too); spinning intra-op threads starve that work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
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
        enhanced = pre.enhance(pre.resize(gray))
        return PreparedImage(header.format, header.width, header.height, enhanced, gray)

    def predict(self, prepared: PreparedImage) -> float:
        (output,) = self.session.run([self.card.output_name], {self.card.input_name: prepared.model_input})
        return float(output.reshape(-1)[0])

    def label_for(self, probability: float) -> str:
        return "PNEUMONIA" if probability >= self.card.threshold else "NORMAL"

    def warm_up(self) -> None:
        size = self.input_size
        self.session.run([self.card.output_name], {self.card.input_name: np.zeros((1, size, size, 1), np.float32)})
