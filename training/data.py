"""Reading a Kaggle-layout folder and splitting it by patient.

Layout: <root>/<split>/{NORMAL,PNEUMONIA}/*.{jpeg,jpg,png}. Label 1 = PNEUMONIA.
The patient is in the file name (`personNNN_bacteria_MMM`, `IM-NNNN-NNNN`,
`NORMAL2-IM-NNNN-NNNN`); most patients have several films, so any validation split
must keep each patient on one side or it leaks.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
# The Kermany films also name the pneumonia's cause (`personNNN_bacteria_MMM`, `personNNN_virus_MMM`):
# the classes of the optional auxiliary head (`TrainConfig.subtype_weight`).
SUBTYPE_NAMES = ("normal", "bacterial", "viral")
IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^(NORMAL2-IM-\d+)-\d+", re.IGNORECASE),
    re.compile(r"^(IM-\d+)-\d+", re.IGNORECASE),
)


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int

    @property
    def patient(self) -> str:
        return patient_id(self.path.name)

    @property
    def subtype(self) -> int:
        """0 normal, 1 bacterial, 2 viral (an index into `SUBTYPE_NAMES`)."""
        return pneumonia_subtype(self.path.name, self.label)


def patient_id(file_name: str) -> str:
    """The patient a film belongs to; unknown names count as their own patient."""
    stem = Path(file_name).stem
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1).lower()
    return stem.lower()


def pneumonia_subtype(file_name: str, label: int) -> int:
    """The film's `SUBTYPE_NAMES` index, from its label and, for pneumonia, its name."""
    if label == 0:
        return 0
    stem = Path(file_name).stem.lower()
    for index, cause in ((1, "bacteria"), (2, "virus")):
        if f"_{cause}" in stem:
            return index
    raise ValueError(f"{file_name}: a pneumonia film's name must say bacteria or virus to train the subtype head")


def list_samples(split_dir: Path) -> list[Sample]:
    """All images of one split folder, sorted by path so runs are reproducible."""
    split_dir = Path(split_dir)
    samples: list[Sample] = []
    for label, name in enumerate(CLASS_NAMES):
        class_dir = split_dir / name
        if not class_dir.is_dir():
            raise FileNotFoundError(f"missing class folder {class_dir}")
        samples.extend(
            Sample(path, label)
            for path in sorted(class_dir.iterdir())
            if path.suffix.lower() in IMAGE_SUFFIXES
        )
    if not samples:
        raise FileNotFoundError(f"no images under {split_dir}")
    return samples


def split_by_patient(
    samples: list[Sample], val_fraction: float, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Stratified, seeded train/validation split in which no patient is on both sides.

    Patients are shuffled within each class and moved to validation until that class
    has `val_fraction` of its images there. A patient's class is the majority label of
    their films (in this data set a patient never has both).
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError("val_fraction must be in (0, 1)")
    by_patient: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_patient[sample.patient].append(sample)
    rng = np.random.default_rng(seed)
    val_patients: set[str] = set()
    for label in range(len(CLASS_NAMES)):
        patients = sorted(
            p for p, films in by_patient.items() if round(np.mean([s.label for s in films])) == label
        )
        target = val_fraction * sum(len(by_patient[p]) for p in patients)
        taken = 0
        for index in rng.permutation(len(patients)):
            if taken >= target:
                break
            val_patients.add(patients[index])
            taken += len(by_patient[patients[index]])
    train = [s for s in samples if s.patient not in val_patients]
    val = [s for s in samples if s.patient in val_patients]
    return train, val


def write_split_lists(out_dir: Path, splits: dict[str, list[Sample]], root: Path) -> None:
    """Write `<name>.txt` (one relative path and label a line) for each split."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, samples in splits.items():
        lines = [f"{s.path.relative_to(root).as_posix()}\t{CLASS_NAMES[s.label]}" for s in samples]
        (out_dir / f"{name}.txt").write_text("\n".join(lines) + "\n")


def read_split_list(path: Path, root: Path) -> list[Sample]:
    """Read back a list written by `write_split_lists`."""
    rows = [line.split("\t") for line in Path(path).read_text().splitlines() if line]
    return [Sample(Path(root) / rel, CLASS_NAMES.index(label)) for rel, label in rows]


def class_counts(samples: list[Sample]) -> dict[str, int]:
    counts = {name: 0 for name in CLASS_NAMES}
    for s in samples:
        counts[CLASS_NAMES[s.label]] += 1
    return counts


def keep_class_totals(factors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-film weight multipliers rescaled so that each class's multipliers sum to its film count: a
    reweighting within the classes that leaves the class balance (and the calibration's prior) as it was."""
    factors = np.asarray(factors, np.float32).copy()
    for label in np.unique(labels):
        in_class = labels == label
        factors[in_class] *= in_class.sum() / factors[in_class].sum()
    return factors


def summary(samples: list[Sample]) -> str:
    return json.dumps({"n": len(samples), **class_counts(samples)})
