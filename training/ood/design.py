"""The comparison behind the choice of feature layers for the OOD check (a table in training/OOD.md).

Which of the CNN's layers, as raw values or as log(x + offset), separates the DESIGN negatives
best when the feature check is used alone, with the same Gaussian fit and the same real-film
threshold rule as the shipped check. Held-out kinds are never scored here.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from app.model.ood import Gaussian
from app.model.session import open_session
from training.onnx_graph.features import FEATURES_OUTPUT, with_features_output, without_features_output
from training.ood import negatives
from training.ood.data import ChainRunner, Scored
from training.ood.fit import LOG_OFFSET, fit_gaussian, threshold_for

CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("gap",), ("dense",), ("gap", "dense"), ("block4",), ("block3", "block4", "block5"),
    ("block2", "block3", "block4", "block5", "block6"),
)


def _features(session, enhanced: np.ndarray, size: int = 64) -> np.ndarray:
    batch = (enhanced.astype(np.float32) * np.float32(1 / 255))[..., np.newaxis]
    return np.concatenate([session.run([FEATURES_OUTPUT], {"image": batch[i:i + size]})[0]
                           for i in range(0, len(batch), size)])


def compare_layers(
    runner: ChainRunner, scored: Mapping[str, Scored], films: list[bytes], per_kind: int, per_film_kind: int,
) -> list[dict]:
    """One row per (layers, transform): feature-check-alone detection rate per design kind."""
    import onnx

    model = without_features_output(onnx.load(str(runner.model_dir / runner.card.onnx_file)))
    layers = sorted({layer for c in CANDIDATES for layer in c})
    design = {}
    for kind in negatives.DESIGN_KINDS:
        made = negatives.generate_for_figure(kind, per_kind, per_film_kind, films)
        design[kind] = runner.score((x.name, x.data) for x in made).enhanced
    real = {k: scored[k].enhanced for k in ("train", "validation", "test_dev") if k in scored}
    with tempfile.TemporaryDirectory() as tmp:
        widths = {}
        for layer in layers:
            path = Path(tmp) / f"{layer}.onnx"
            onnx.save(with_features_output(model, [layer]), str(path))
            widths[layer] = _features(open_session(path), real["validation"][:1]).shape[1]
        path = Path(tmp) / "all.onnx"
        onnx.save(with_features_output(model, layers), str(path))
        session = open_session(path)
        feats = {k: _features(session, v) for k, v in {**real, **design}.items()}
    starts = dict(zip(layers, np.cumsum([0, *[widths[layer] for layer in layers]])[:-1], strict=True))
    rows = []
    for candidate in CANDIDATES:
        cols = np.concatenate([np.arange(starts[layer], starts[layer] + widths[layer]) for layer in candidate])
        for transform in ("raw", "log"):
            def tf(x: np.ndarray, cols: np.ndarray = cols, transform: str = transform) -> np.ndarray:
                x = np.maximum(x[:, cols].astype(np.float64), 0)
                return np.log(x + LOG_OFFSET) if transform == "log" else x

            mean, whitening, shrinkage = fit_gaussian(tf(feats["train"]))
            g = Gaussian(mean, whitening)
            threshold = threshold_for("features", {k: g.distance(tf(feats[k])) for k in ("validation", "test_dev")
                                                   if k in feats})
            rows.append({
                "layers": list(candidate), "transform": transform, "dim": int(len(cols)), "threshold": threshold,
                "detection": {kind: float(np.mean(g.distance(tf(feats[kind])) > threshold)) for kind in design},
            })
    return rows
