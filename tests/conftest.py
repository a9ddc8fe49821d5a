"""Shared fixtures: data locations, a tiny model trained and exported for real, the shipped model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data"))
TRAIN_224 = SHARED_DATA / "chest_xray_224"
VAL16 = SHARED_DATA / "val16_fullres"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHIPPED_MODEL = REPO / "models"

os.environ.setdefault("KERAS_HOME", str(REPO / ".keras-home"))

needs_shared = pytest.mark.skipif(not TRAIN_224.is_dir(), reason="../shared/data is not beside the repo")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A real (tiny) training run and export: 64 films at 128 px, one epoch.

    Returns (run_dir, model_dir). Skipped without ../shared/data.
    """
    if not TRAIN_224.is_dir():
        pytest.skip("../shared/data is not beside the repo")
    from app.imaging.preprocess import PreprocessConfig
    from training.config import TrainConfig
    from training.export import export_run
    from training.train import train

    base = tmp_path_factory.mktemp("tiny")
    config = TrainConfig(
        data=TRAIN_224, out=base / "run", epochs=1, batch_size=16, limit=64, verbose=0,
        filters=(4, 4, 8, 8, 8, 16, 16), dense_units=8, val_fraction=0.3,
        preprocessing=PreprocessConfig(input_size=128),
    )
    train(config)
    export_run(config.out, base / "model")
    return config.out, base / "model"


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_run) -> Path:
    """Folder with model.onnx, model.keras and model_card.json of the tiny model."""
    return tiny_run[1]


@pytest.fixture(scope="session")
def shipped_model_dir() -> Path:
    if not (SHIPPED_MODEL / "model_card.json").is_file():
        pytest.skip("no shipped model in models/")
    return SHIPPED_MODEL
