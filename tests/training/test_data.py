"""Patient ids and the patient-level split."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TRAIN_224, needs_shared
from training.data import Sample, list_samples, patient_id, split_by_patient


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1000_bacteria_2931.jpeg", "person1000"),
        ("person1000_virus_1681.jpeg", "person1000"),
        ("IM-0115-0001.jpeg", "im-0115"),
        ("NORMAL2-IM-1427-0001.jpeg", "normal2-im-1427"),
        ("unrelated.png", "unrelated"),
    ],
)
def test_patient_id_reads_the_file_name(name, patient):
    assert patient_id(name) == patient


def _synthetic(n_patients: int = 60) -> list[Sample]:
    samples = []
    for p in range(n_patients):
        label = int(p % 4 != 0)  # 25% normal patients
        for film in range(1 + p % 3):
            name = f"person{p}_bacteria_{film}.jpeg" if label else f"IM-{p:04d}-{film:04d}.jpeg"
            samples.append(Sample(Path(name), label))
    return samples


def test_split_keeps_every_patient_on_one_side():
    train, val = split_by_patient(_synthetic(), 0.2, seed=1)
    assert {s.patient for s in train}.isdisjoint({s.patient for s in val})
    assert len(train) + len(val) == len(_synthetic())


def test_split_is_stratified_and_seeded():
    samples = _synthetic(200)
    train, val = split_by_patient(samples, 0.2, seed=3)
    again, _ = split_by_patient(samples, 0.2, seed=3)
    other, _ = split_by_patient(samples, 0.2, seed=4)
    assert [s.path for s in train] == [s.path for s in again]
    assert [s.path for s in train] != [s.path for s in other]
    val_normal = sum(1 for s in val if s.label == 0) / len(val)
    all_normal = sum(1 for s in samples if s.label == 0) / len(samples)
    assert abs(val_normal - all_normal) < 0.06


def test_split_refuses_a_fraction_outside_zero_one():
    with pytest.raises(ValueError):
        split_by_patient(_synthetic(), 1.0, seed=0)


@needs_shared
def test_real_training_split_has_no_patient_leakage():
    samples = list_samples(TRAIN_224 / "train")
    assert len(samples) == 5216
    train, val = split_by_patient(samples, 0.15, seed=42)
    assert {s.patient for s in train}.isdisjoint({s.patient for s in val})
    assert 0.13 < len(val) / len(samples) < 0.17
    assert {s.label for s in val} == {0, 1}
