"""The films every recipe gets wrong (`python -m training hard-films`): are the study's recipes failing on
different films, or on the same ones?

Each recipe folder is one of `python -m training study`'s (`<recipe>/seed*/logits_best.npz`); a recipe's
answer is its seeds' mean test logit, the study's ensemble. Each recipe gets its own threshold on the split
itself, the highest that keeps sensitivity >= `min_sensitivity` (the goal's 97%): the best operating point
any site calibration could reach on these films, so the errors left are the ranking's, not the threshold's.
Writes `hard_films.json` (per recipe: AUC, false positives, false negatives; per film: in how many recipes
it is an error) and `hard_films.png` (the films wrong in every recipe, as stored).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from training import metrics
from training.calibration import choose_threshold
from training.data import Sample, list_samples
from training.shift import load_films

LOGITS_FILE = "logits_best.npz"


def recipe_scores(recipe_dir: Path) -> np.ndarray:
    """The mean test logit of a recipe folder's seeds."""
    files = sorted(Path(recipe_dir).glob(f"seed*/{LOGITS_FILE}"))
    if not files:
        raise FileNotFoundError(f"{recipe_dir} has no seed*/{LOGITS_FILE}")
    return np.mean([np.load(f)["test"] for f in files], axis=0)


def errors_at_sensitivity(labels: np.ndarray, scores: np.ndarray, min_sensitivity: float) -> tuple[set, set]:
    """(false positive, false negative) film indices at the highest threshold keeping the sensitivity."""
    threshold = choose_threshold(labels, scores, min_sensitivity)
    called = scores >= threshold
    return set(np.flatnonzero(called & (labels == 0)).tolist()), set(np.flatnonzero(~called & (labels == 1)).tolist())


def consistent_errors(
    scores: dict[str, np.ndarray], labels: np.ndarray, names: list[str], min_sensitivity: float
) -> dict:
    """Per recipe its AUC and errors; per kind of error, the films wrong in every recipe and in how many
    recipes each film is wrong."""
    labels = np.asarray(labels)
    per_recipe: dict[str, dict] = {}
    errors: dict[str, dict[str, set]] = {"false_positives": {}, "false_negatives": {}}
    for recipe, recipe_logits in scores.items():
        if len(recipe_logits) != len(labels):
            raise ValueError(f"{recipe} scored {len(recipe_logits)} films, the split has {len(labels)}")
        fp, fn = errors_at_sensitivity(labels, recipe_logits, min_sensitivity)
        per_recipe[recipe] = {"auc": round(metrics.roc_auc(labels, recipe_logits), 4),
                              "false_positives": len(fp), "false_negatives": len(fn)}
        errors["false_positives"][recipe], errors["false_negatives"][recipe] = fp, fn
    report: dict = {"recipes": per_recipe, "min_sensitivity": min_sensitivity,
                    "threshold": "per recipe, on the split itself (in sample)"}
    for kind, by_recipe in errors.items():
        counts = Counter(i for films in by_recipe.values() for i in films)
        report[kind] = {
            "in_every_recipe": sorted(names[i] for i, n in counts.items() if n == len(scores)),
            "in_any_recipe": len(counts),
            "recipes_per_film": {names[i]: n for i, n in counts.most_common()},
        }
    return report


def _montage(samples: list[Sample], path: Path, tile: int = 180) -> None:
    """The films side by side, each under its file name (`shift.py`'s montage labels whole rows)."""
    tiles = []
    for sample, film in zip(samples, load_films(samples), strict=True):
        image = cv2.resize(film, (tile, tile), interpolation=cv2.INTER_AREA)
        banner = np.full((20, tile), 255, np.uint8)
        cv2.putText(banner, sample.path.stem[:24], (3, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, 0, 1, cv2.LINE_AA)
        tiles.append(np.vstack([banner, image]))
    cv2.imwrite(str(path), np.hstack(tiles))


def run(recipe_dirs: list[Path], data: Path, split: str, out: Path, min_sensitivity: float = 0.97) -> dict:
    samples = list_samples(Path(data) / split)
    labels, names = np.array([s.label for s in samples]), [s.path.name for s in samples]
    scores = {Path(d).resolve().name: recipe_scores(d) for d in recipe_dirs}
    if len(scores) != len(recipe_dirs):
        raise ValueError("two recipe folders have the same name: give each recipe once")
    report = {"split": split, "films": len(samples), **consistent_errors(scores, labels, names, min_sensitivity)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "hard_films.json").write_text(json.dumps(report, indent=2))
    every = set(report["false_positives"]["in_every_recipe"]) | set(report["false_negatives"]["in_every_recipe"])
    if every:
        _montage([s for s in samples if s.path.name in every], out / "hard_films.png")
    return report
