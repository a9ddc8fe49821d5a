"""Resuming: a killed run continues where it stopped, error rows are kept or retried, and an output
of another model, other columns, or one in use is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.batch.cli import main, run_batch
from app.batch.output import OutputError, open_output
from app.model.card import load_model_card
from tests.batch.conftest import check_rows, read_rows
from tests.conftest import REPO


def _rows_written(output: Path) -> int:
    if output.suffix == ".csv":
        return max(0, output.read_bytes().count(b"\n") - 1) if output.exists() else 0
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(part).num_rows for part in output.glob("part-*.parquet")) if output.exists() else 0


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_run_killed_with_sigkill_continues(tmp_path, archive, reference, shipped_model_dir, suffix) -> None:
    output = tmp_path / f"out{suffix}"
    command = [sys.executable, "-m", "app.batch", "--input", str(archive.root), "--output", str(output),
               "--model-dir", str(shipped_model_dir), "--workers", "1", "--batch-size", "4", "--part-rows", "8",
               "--no-progress"]
    process = subprocess.Popen(command, cwd=REPO, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while _rows_written(output) < 40 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the CLI and its pool worker, mid-write or not
        process.wait()
    written = _rows_written(output)
    assert 40 <= written < len(archive.all_paths), "the run was not killed mid-way"

    summary = run_batch(archive.root, output, model_dir=shipped_model_dir, workers=2)
    assert summary.skipped >= 40 and summary.scored > 0
    assert summary.skipped + summary.scored == summary.found == len(archive.all_paths)
    check_rows(read_rows(output), archive, reference, load_model_card(shipped_model_dir))
    again = run_batch(archive.root, output, model_dir=shipped_model_dir, workers=1)
    assert (again.scored, again.skipped) == (0, len(archive.all_paths))


def test_a_torn_csv_line_is_cut_and_its_file_scored_again(tmp_path, small_archive, shipped_model_dir) -> None:
    output = tmp_path / "out.csv"
    run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1)
    complete = read_rows(output)
    lines = output.read_bytes().splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:-5]) + lines[-5][:30])  # 4 rows lost, the 5th torn mid-line
    summary = run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1)
    assert summary.scored == 5
    rows = read_rows(output)
    key = lambda row: row["path"]  # noqa: E731
    assert sorted(rows, key=key) == sorted(complete, key=key)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_error_rows_are_kept_unless_retried(tmp_path, small_archive, shipped_model_dir, suffix) -> None:
    output = tmp_path / f"out{suffix}"
    run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1, part_rows=7)
    broken = small_archive.root / "extra" / "broken.jpeg"
    broken.write_bytes(small_archive.good[0].read_bytes())  # the file is fixed

    kept = run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1)
    assert kept.scored == 0
    assert next(r for r in read_rows(output) if r["path"] == str(broken))["error"].startswith("CorruptImageError")

    retried = run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1, retry_errors=True)
    assert (retried.scored, retried.errors) == (len(small_archive.bad), len(small_archive.bad) - 1)
    rows = read_rows(output)
    assert len(rows) == len({r["path"] for r in rows}) == len(small_archive.all_paths)
    fixed = next(r for r in rows if r["path"] == str(broken))
    twin = next(r for r in rows if r["path"] == str(small_archive.good[0]))
    assert fixed["error"] == "" and fixed["probability"] == twin["probability"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_an_output_of_another_model_is_refused(tmp_path, small_archive, shipped_model_dir, suffix, capsys) -> None:
    output = tmp_path / f"out{suffix}"
    run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1)
    with pytest.raises(OutputError, match="holds rows of model"):
        open_output(output, "9.9.9+other")
    code = main(["--input", str(small_archive.root), "--output", str(output), "--model-dir", str(shipped_model_dir),
                 "--no-progress"])
    assert code == 0 and "0 films scored" in capsys.readouterr().err
    assert main(["--input", str(small_archive.root), "--output", str(tmp_path / "x.txt"),
                 "--model-dir", str(shipped_model_dir)]) == 2


def test_other_columns_and_a_second_writer_are_refused(tmp_path) -> None:
    output = tmp_path / "out.csv"
    output.write_text("path,label,probability\n/a.jpeg,NORMAL,0.1\n")
    with pytest.raises(OutputError, match="columns"):
        open_output(output, "1")
    parquet = tmp_path / "out.parquet"
    first = open_output(parquet, "1")
    try:
        with pytest.raises(OutputError, match="another batch run"):
            open_output(parquet, "1")
    finally:
        first.close()
    open_output(parquet, "1").close()  # free again


def test_a_file_name_that_is_not_utf8(tmp_path, small_archive, shipped_model_dir) -> None:
    """Kept as its raw bytes in the CSV (so a rerun finds it); refused up front for parquet."""
    film = small_archive.good[0].read_bytes()
    raw = os.fsencode(small_archive.root / "extra") + b"/caf\xe9.jpeg"  # latin-1, not UTF-8
    with open(raw, "wb") as handle:
        handle.write(film)
    output = tmp_path / "out.csv"
    run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1)
    assert raw + b"," in output.read_bytes()
    again = run_batch(small_archive.root, output, model_dir=shipped_model_dir, workers=1)
    assert again.scored == 0 and again.skipped == len(small_archive.all_paths) + 1
    with pytest.raises(OutputError, match="not UTF-8"):
        run_batch(small_archive.root, tmp_path / "out.parquet", model_dir=shipped_model_dir)
