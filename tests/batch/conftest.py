"""Archives to score: test_dev plus files that must become error rows, and what `predict_files` says."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import TRAIN_224

TEST_DEV = TRAIN_224 / "test_dev"


def _bad_files(folder: Path, good_jpeg: Path) -> dict[str, str]:
    """Write the files that must be error rows; returns {absolute path: expected error type}."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "broken.jpeg").write_bytes(good_jpeg.read_bytes()[:1500])  # a JPEG cut short
    (folder / "empty.png").write_bytes(b"")
    (folder / "notimage.jpg").write_text("not an image, whatever the name says\n")
    (folder / "readme.txt").write_text("skipped: not an image extension\n")
    (folder / "notes").write_text("skipped: no extension and not an image\n")
    return {str(folder / "broken.jpeg"): "CorruptImageError", str(folder / "empty.png"): "FileError",
            str(folder / "notimage.jpg"): "UnsupportedFormatError"}


def _extensionless_dicom(folder: Path, film: Path) -> Path:
    """A DICOM named like an archive's (no extension) holding a test_dev film: found by sniffing."""
    from app.imaging.decode import decode_image
    from tests.dicom_files import dicom_from_gray

    path = folder / "IM000001"
    path.write_bytes(dicom_from_gray(decode_image(film.read_bytes())))
    return path


class Archive:
    def __init__(self, root: Path, good: list[Path], bad: dict[str, str]) -> None:
        self.root, self.good, self.bad = root, good, bad

    @property
    def all_paths(self) -> set[str]:
        return {str(p) for p in self.good} | set(self.bad)


def make_archive(root: Path, films: list[Path]) -> Archive:
    for film in films:
        target = root / film.parent.name / film.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(film, target)
    good = [root / f.parent.name / f.name for f in films]
    bad = _bad_files(root / "extra", films[0])
    good.append(_extensionless_dicom(root / "extra", films[1]))
    return Archive(root, good, bad)


def test_dev_films() -> list[Path]:
    if not TEST_DEV.is_dir():
        pytest.skip("../shared/data is not beside the repo")
    return sorted(TEST_DEV.glob("*/*.jpeg"))


@pytest.fixture(scope="session")
def archive(tmp_path_factory) -> Archive:
    """All 299 films of test_dev, an extension-less DICOM, and the bad files (read-only: do not change)."""
    return make_archive(tmp_path_factory.mktemp("archive"), test_dev_films())


@pytest.fixture
def small_archive(tmp_path) -> Archive:
    """12 films of each class plus the bad files, the test's own copy."""
    films = test_dev_films()
    normal = [f for f in films if f.parent.name == "NORMAL"][:12]
    pneumonia = [f for f in films if f.parent.name == "PNEUMONIA"][:12]
    return make_archive(tmp_path / "small", normal + pneumonia)


@pytest.fixture(scope="session")
def reference(archive, shipped_model_dir) -> dict[str, float]:
    """`python -m training evaluate`'s probabilities (training.evaluate.predict_files) for the good films."""
    from training.evaluate import predict_files

    probabilities = predict_files(shipped_model_dir, archive.good)
    return {str(p): float(v) for p, v in zip(archive.good, probabilities, strict=True)}


def read_rows(output: Path) -> list[dict]:
    """The rows of a CSV or parquet output, as dicts, None for empty values."""
    if output.suffix == ".csv":
        with open(output, newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        for row in rows:
            for key in ("label", "probability"):
                row[key] = row[key] or None
            row["probability"] = None if row["probability"] is None else float(row["probability"])
            row["threshold"] = float(row["threshold"])
        return rows
    import pyarrow.parquet as pq

    return pq.read_table(output).to_pylist()


def check_rows(rows: list[dict], archive: Archive, reference: dict[str, float], card) -> None:
    """One row per film, the probabilities of predict_files to 1e-5, the card's label rule, error rows."""
    paths = [row["path"] for row in rows]
    assert len(paths) == len(set(paths)), "a file has more than one row"
    assert set(paths) == archive.all_paths
    by_path = {row["path"]: row for row in rows}
    got = np.array([by_path[p]["probability"] for p in reference], dtype=np.float64)
    want = np.array(list(reference.values()), dtype=np.float64)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)
    for path in reference:
        row = by_path[path]
        assert row["error"] == ""
        assert row["label"] == ("PNEUMONIA" if row["probability"] >= card.threshold else "NORMAL")
        assert row["threshold"] == card.threshold and row["model_version"] == card.version
    for path, error_type in archive.bad.items():
        row = by_path[path]
        assert row["probability"] is None and row["label"] is None
        assert row["error"].startswith(error_type + ": "), row["error"]
        assert row["model_version"] == card.version
    labels = {row["label"] for row in rows if not row["error"]}
    assert labels == {"NORMAL", "PNEUMONIA"}
