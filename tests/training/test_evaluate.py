"""`training.evaluate`'s ranking breakdowns, on films whose names say their patient."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import roc_auc_by_patient_film_count

# two normals; patient 1 has two pneumonia films, patients 2 and 3 one each
NAMES = ["IM-0001-0001.jpeg", "NORMAL2-IM-0002-0001.jpeg", "person1_bacteria_1.jpeg", "person1_bacteria_2.jpeg",
         "person2_virus_3.jpeg", "person3_bacteria_4.jpeg"]
LABELS = np.array([0, 0, 1, 1, 1, 1])


def test_pneumonia_films_are_grouped_by_their_patients_film_count_against_every_normal():
    # normals at 0.3 and 0.6; patient 1's films rank above both, the one-film patients' straddle them
    probs = np.array([0.3, 0.6, 0.9, 0.8, 0.5, 0.2])
    report = roc_auc_by_patient_film_count(NAMES, LABELS, probs)
    assert report["several_films"] == {"pneumonia_films": 2, "roc_auc": pytest.approx(1.0)}
    # 0.5 beats one normal of two, 0.2 none: 1 of 4 pairs ordered
    assert report["one_film"] == {"pneumonia_films": 2, "roc_auc": pytest.approx(0.25)}


def test_a_group_without_pneumonia_films_has_no_auc():
    names, labels = NAMES[:2] + NAMES[4:], np.array([0, 0, 1, 1])  # only one-film patients
    report = roc_auc_by_patient_film_count(names, labels, np.array([0.1, 0.2, 0.7, 0.8]))
    assert report["several_films"] == {"pneumonia_films": 0, "roc_auc": None}
    assert report["one_film"]["roc_auc"] == pytest.approx(1.0)
