"""The prediction steps shared by /predict and /predict/batch: one DICOM parse, the overlay of the returned label."""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from app.api.service import prepare_upload, render_overlay
from app.gradcam.client import GradcamResult
from app.imaging.overlay import OverlayFormat, overlay_image
from app.model.engine import InferenceEngine
from tests.dicom_files import dicom_12bit_windowed, gray
from tests.serving import FIXTURE_JPEGS


@pytest.fixture(scope="module")
def engine(model_dir: Path) -> InferenceEngine:
    return InferenceEngine(model_dir, threads=1)


def test_dicom_upload_is_parsed_once(engine: InferenceEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    data = dicom_12bit_windowed(gray(FIXTURE_JPEGS[0]))
    calls = []
    parse = pydicom.dcmread
    monkeypatch.setattr(pydicom, "dcmread", lambda *args, **kwargs: calls.append(1) or parse(*args, **kwargs))
    upload = prepare_upload(engine, data, 10**8)
    assert len(calls) == 1
    assert upload.prepared.dicom is not None and upload.prepared.dicom["modality"] == "DX"
    assert upload.prepared.dicom["bits_stored"] == 12


def test_overlay_draws_the_map_of_the_label_it_is_given(engine: InferenceEngine) -> None:
    prepared = prepare_upload(engine, FIXTURE_JPEGS[0].read_bytes(), 10**8).prepared
    left, right = np.zeros((14, 14), np.float32), np.zeros((14, 14), np.float32)
    left[:, :7], right[:, 7:] = 1.0, 1.0
    result = GradcamResult({"PNEUMONIA": left, "NORMAL": right}, {"PNEUMONIA": False, "NORMAL": False}, "conv", 0.5)
    maps = {"PNEUMONIA": left, "NORMAL": right}
    for label, other in (("PNEUMONIA", "NORMAL"), ("NORMAL", "PNEUMONIA")):
        overlay = render_overlay(prepared, result, label, OverlayFormat.PNG)
        assert overlay.label == label
        drawn = base64.b64decode(overlay.base64)
        assert drawn == overlay_image(prepared.preview, maps[label], OverlayFormat.PNG, view=prepared.view)
        assert drawn != overlay_image(prepared.preview, maps[other], OverlayFormat.PNG, view=prepared.view)
        # The shipped card crops 2.5% of each side: the film's outer rows, which the model never saw, stay
        # untinted, and the map's cold half is untinted too, while its hot half is coloured.
        pixels = cv2.imdecode(np.frombuffer(drawn, np.uint8), cv2.IMREAD_COLOR).astype(int)
        film = cv2.cvtColor(prepared.preview, cv2.COLOR_GRAY2BGR).astype(int)
        edge = int(prepared.preview.shape[0] * prepared.view.top) - 1
        assert edge > 0 and np.array_equal(pixels[:edge], film[:edge])
        middle, width = prepared.preview.shape[0] // 2, prepared.preview.shape[1]
        left = slice(round(width * prepared.view.left) + 2, width // 4)
        right = slice(3 * width // 4, round(width * prepared.view.right) - 2)
        hot, cold = (left, right) if label == "PNEUMONIA" else (right, left)
        assert np.abs(pixels[middle, hot] - film[middle, hot]).max() > 20
        assert np.array_equal(pixels[middle, cold], film[middle, cold])
