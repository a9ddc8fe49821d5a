"""The test-time augmentation screen: fixed re-framings and the AUC report over runs."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import TRAIN_224, needs_shared
from training.tta import SETS, TRANSFORMS, reframe


def bright_square(size: int = 64, half: int = 10) -> np.ndarray:
    image = np.zeros((size, size), np.uint8)
    image[size // 2 - half : size // 2 + half, size // 2 - half : size // 2 + half] = 255
    return image


def bright_extent(image: np.ndarray) -> tuple[int, int]:
    """(width, height) of the bright area."""
    rows, cols = np.nonzero(image > 127)
    return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)


def test_identity_returns_the_film_unchanged():
    film = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    assert np.array_equal(reframe(film, "identity"), film)


def test_each_transform_scales_or_moves_the_axis_it_names():
    square = bright_square()
    width, height = bright_extent(square)
    assert bright_extent(reframe(square, "scale_0.9"))[0] < width
    assert bright_extent(reframe(square, "scale_1.1"))[1] > height
    y_width, y_height = bright_extent(reframe(square, "y_0.9"))
    assert y_width == width and y_height < height
    x_width, x_height = bright_extent(reframe(square, "x_1.1"))
    assert x_width > width and x_height == height
    cols = np.nonzero(reframe(square, "shift_right") > 127)[1]
    assert cols.min() > np.nonzero(square > 127)[1].min()


@needs_shared
def test_the_report_scores_the_plain_film_like_the_run_itself(tiny_run, tmp_path):
    """The identity row is the run's own AUC on the split; each set is compared with it."""
    from training import metrics
    from training.config import TrainConfig
    from training.data import list_samples
    from training.dataset import enhance_all, load_resized
    from training.train import logits_of, new_model
    from training.tta import tta_report

    run_dir = tiny_run[0]
    report = tta_report([run_dir], TRAIN_224, "test_dev", n_boot=50)
    assert report["n"] == len(list_samples(TRAIN_224 / "test_dev"))
    assert set(report["transforms"]) == set(TRANSFORMS) and set(report["sets"]) == set(SETS)

    config = TrainConfig.from_dict(json.loads((run_dir / "run.json").read_text())["config"])
    model = new_model(config)
    model.load_weights(run_dir / "checkpoint.keras")
    samples = list_samples(TRAIN_224 / "test_dev")
    films = enhance_all(load_resized(samples, config.preprocessing), config.preprocessing)
    own = metrics.roc_auc(np.array([s.label for s in samples]), logits_of(model, films))
    assert abs(report["transforms"]["identity"]["auc"] - own) < 1e-6
    plain = report["transforms"]["identity"]["auc"]
    for entry in report["sets"].values():
        assert abs(entry["minus_plain"]["difference"] - (entry["auc"] - plain)) < 1e-9


@needs_shared
def test_runs_with_another_chain_are_refused(tiny_run, tmp_path):
    """Every run must see the films through the same chain, or their mean logit mixes two inputs."""
    import shutil

    import pytest

    from training.tta import tta_report

    other = tmp_path / "other"
    shutil.copytree(tiny_run[0], other)
    run = json.loads((other / "run.json").read_text())
    run["config"]["preprocessing"]["border_crop"] = 0.9
    (other / "run.json").write_text(json.dumps(run))
    with pytest.raises(ValueError, match="another preprocessing chain"):
        tta_report([tiny_run[0], other], TRAIN_224, "test_dev", n_boot=10)
