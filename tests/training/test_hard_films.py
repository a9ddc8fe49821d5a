"""`python -m training hard-films`: the films every study recipe gets wrong, each recipe at its own threshold."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.hard_films import consistent_errors, errors_at_sensitivity, recipe_scores, run

# 4 normal films (label 0), then 6 pneumonia films (label 1)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
NAMES = [f"IM-{i:04d}-0001.jpeg" for i in range(4)] + [f"person{i}_bacteria_{i}.jpeg" for i in range(6)]


def test_the_threshold_keeps_the_sensitivity_and_counts_the_normals_above_it():
    scores = np.array([0.1, 0.9, 0.2, 0.65, 0.3, 0.7, 0.8, 0.85, 0.95, 0.6])
    # sensitivity 5/6 is enough: the lowest pneumonia film (0.3) is let go, the threshold sits below 0.6
    fp, fn = errors_at_sensitivity(LABELS, scores, min_sensitivity=0.8)
    assert fp == {1, 3} and fn == {4}
    fp, fn = errors_at_sensitivity(LABELS, scores, min_sensitivity=1.0)  # every pneumonia film: 0.3 and up
    assert fp == {1, 3} and fn == set()


def test_films_wrong_in_every_recipe_are_told_apart_from_films_one_recipe_gets_wrong():
    a = np.array([0.1, 0.9, 0.2, 0.7, 0.3, 0.8, 0.8, 0.85, 0.95, 0.6])  # normals 1 and 3 score high
    b = np.array([0.1, 0.9, 0.2, 0.1, 0.3, 0.8, 0.8, 0.85, 0.95, 0.6])  # only normal 1
    report = consistent_errors({"a": a, "b": b}, LABELS, NAMES, min_sensitivity=0.8)
    assert report["recipes"]["a"]["false_positives"] == 2 and report["recipes"]["b"]["false_positives"] == 1
    assert report["false_positives"]["in_every_recipe"] == [NAMES[1]]
    assert report["false_positives"]["in_any_recipe"] == 2
    assert report["false_positives"]["recipes_per_film"] == {NAMES[1]: 2, NAMES[3]: 1}
    assert report["false_negatives"]["in_every_recipe"] == [NAMES[4]]


def test_a_recipe_scored_on_other_films_is_refused():
    with pytest.raises(ValueError, match="scored 3 films"):
        consistent_errors({"a": np.zeros(3)}, LABELS, NAMES, 0.97)


def _recipe(root: Path, name: str, seeds: list[np.ndarray]) -> Path:
    for i, logits in enumerate(seeds):
        (root / name / f"seed{i}").mkdir(parents=True)
        np.savez(root / name / f"seed{i}" / "logits_best.npz", val=np.zeros(2), test=logits)
    return root / name


def test_a_recipe_answers_with_its_seeds_mean_logit(tmp_path):
    recipe = _recipe(tmp_path, "r", [np.array([1.0, -2.0]), np.array([3.0, 0.0])])
    np.testing.assert_allclose(recipe_scores(recipe), [2.0, -1.0])
    with pytest.raises(FileNotFoundError):
        recipe_scores(tmp_path / "empty")


def test_the_report_and_the_montage_of_the_films_wrong_everywhere(tmp_path):
    split = tmp_path / "data" / "site"
    for name, label in zip(NAMES, LABELS, strict=True):
        folder = split / ("PNEUMONIA" if label else "NORMAL")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / name), np.full((40, 50), 128, np.uint8))
    logits = np.array([-3.0, 2.0, -2.0, 1.0, -1.0, 1.5, 1.5, 2.5, 3.0, 0.5])
    recipes = [_recipe(tmp_path / "runs", "a", [logits]), _recipe(tmp_path / "runs", "b", [logits - 0.1])]
    out = tmp_path / "out"
    report = run(recipes, tmp_path / "data", "site", out, min_sensitivity=0.8)
    assert report["films"] == 10
    assert json.loads((out / "hard_films.json").read_text()) == report
    wrong = report["false_positives"]["in_every_recipe"] + report["false_negatives"]["in_every_recipe"]
    assert len(wrong) == 3  # normals 1 and 3, pneumonia 4
    assert cv2.imread(str(out / "hard_films.png")).shape[1] == 3 * 180
    with pytest.raises(ValueError, match="same name"):
        run([recipes[0], recipes[0]], tmp_path / "data", "site", out)
