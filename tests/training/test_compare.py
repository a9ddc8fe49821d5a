"""`python -m training compare`: two models' predictions on the same films, paired by patient."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training.cli import main
from training.compare import compare_predictions


def _write(path: Path, names: list[str], labels: np.ndarray, probs: np.ndarray) -> Path:
    rows = "".join(f"{n},{y},{p:.6f}\n" for n, y, p in zip(names, labels, probs, strict=True))
    path.write_text("path,label,probability\n" + rows)
    return path


@pytest.fixture
def films() -> tuple[list[str], np.ndarray]:
    # 60 patients with two films each, the names the data set uses (the patient is in the name)
    names = [f"IM-{p:04d}-{k:04d}.jpeg" for p in range(60) for k in (1, 2)]
    labels = np.repeat(np.arange(60) % 2, 2)
    return names, labels


def test_a_better_ranking_wins_with_an_interval_above_zero(tmp_path: Path, films) -> None:
    names, labels = films
    rng = np.random.default_rng(0)
    good = np.clip(labels * 0.6 + rng.uniform(0, 0.4, labels.size), 0, 1)  # separates the classes
    noisy = rng.uniform(0, 1, labels.size)
    report = compare_predictions(_write(tmp_path / "a.csv", names, labels, good),
                                 _write(tmp_path / "b.csv", names, labels, noisy), n_boot=200)
    assert report["n"] == 120 and report["patients"] == 60
    assert report["a"]["roc_auc"] == 1.0
    diff = report["roc_auc_a_minus_b"]
    assert diff["difference"] == pytest.approx(1.0 - report["b"]["roc_auc"])
    assert 0 < diff["ci95"][0] <= diff["difference"] <= diff["ci95"][1]


def test_the_same_model_in_another_order_differs_by_nothing(tmp_path: Path, films) -> None:
    names, labels = films
    probs = np.random.default_rng(1).uniform(0, 1, labels.size)
    a = _write(tmp_path / "a.csv", names, labels, probs)
    b = _write(tmp_path / "b.csv", names[::-1], labels[::-1], probs[::-1])
    assert compare_predictions(a, b, n_boot=50)["roc_auc_a_minus_b"]["ci95"] == [0.0, 0.0]


def test_other_films_or_labels_are_refused(tmp_path: Path, films) -> None:
    names, labels = films
    probs = np.linspace(0, 1, labels.size)
    a = _write(tmp_path / "a.csv", names, labels, probs)
    with pytest.raises(ValueError, match="different films"):
        compare_predictions(a, _write(tmp_path / "b.csv", names[:-1], labels[:-1], probs[:-1]))
    with pytest.raises(ValueError, match="label"):
        compare_predictions(a, _write(tmp_path / "c.csv", names, 1 - labels, probs))


def test_the_command_prints_the_report(tmp_path: Path, films, capsys) -> None:
    names, labels = films
    probs = np.random.default_rng(2).uniform(0, 1, labels.size)
    a, b = _write(tmp_path / "a.csv", names, labels, probs), _write(tmp_path / "b.csv", names, labels, probs[::-1])
    assert main(["compare", str(a), str(b), "--bootstrap", "20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["roc_auc_a_minus_b"]["n_boot"] == 20
    assert printed == json.loads(json.dumps(compare_predictions(a, b, n_boot=20)))
