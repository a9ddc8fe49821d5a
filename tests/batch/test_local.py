"""`--engine local` end to end: the same probabilities as `python -m training evaluate`, error rows,
both output formats, glob input, a worker killed mid-run, and the package's import boundary."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.batch.cli import NoFilesError, run_batch
from app.batch.files import find_files
from app.model.card import load_model_card
from tests.batch.conftest import check_rows, read_rows
from tests.conftest import REPO


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_local_engine_matches_predict_files(tmp_path, archive, reference, shipped_model_dir, suffix) -> None:
    output = tmp_path / f"scores{suffix}"
    summary = run_batch(archive.root, output, model_dir=shipped_model_dir, workers=2, batch_size=16)
    assert (summary.found, summary.skipped, summary.scored) == (len(archive.all_paths), 0, len(archive.all_paths))
    assert summary.errors == len(archive.bad)
    check_rows(read_rows(output), archive, reference, load_model_card(shipped_model_dir))


def test_the_cli_writes_a_csv_and_a_second_run_scores_nothing(tmp_path, small_archive, shipped_model_dir) -> None:
    output = tmp_path / "out.csv"
    command = [sys.executable, "-m", "app.batch", "--input", str(small_archive.root), "--output", str(output),
               "--model-dir", str(shipped_model_dir), "--workers", "1", "--no-progress"]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert f"{len(small_archive.all_paths)} films scored ({len(small_archive.bad)} with an error)" in first.stderr
    before = output.read_bytes()
    assert before.startswith(b"path,label,probability,threshold,model_version,error,in_distribution,ood_score\n")
    second = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr
    assert "0 films scored (0 with an error) in" in second.stderr
    assert f"{len(small_archive.all_paths)} of {len(small_archive.all_paths)} already there" in second.stderr
    assert output.read_bytes() == before


def test_glob_input(tmp_path, small_archive, shipped_model_dir) -> None:
    root = small_archive.root
    output = tmp_path / "pneumonia.csv"
    run_batch(f"{root}/**/PNEUMONIA/*.jpeg", output, model_dir=shipped_model_dir, workers=1)
    paths = {row["path"] for row in read_rows(output)}
    assert paths == {str(p) for p in small_archive.good if p.parent.name == "PNEUMONIA"} and len(paths) == 12
    # A glob matching a folder walks it; the folder's non-image files are skipped, bad images kept.
    assert set(find_files(f"{root}/ex*")) == {str(root / "extra" / n) for n in
                                             ("broken.jpeg", "empty.png", "notimage.jpg", "IM000001")}
    with pytest.raises(NoFilesError):
        run_batch(f"{root}/*.nothing", tmp_path / "none.csv", model_dir=shipped_model_dir)
    assert not (tmp_path / "none.csv").exists()


def _pool_workers() -> list[int]:
    """This process's multiprocessing children (spawned pool workers), from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and b"spawn_main" in command:
            pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, archive, reference, shipped_model_dir) -> None:
    """SIGKILL one pool worker (what the OOM killer does): its chunks are rescored, the run completes."""
    output = tmp_path / "out.csv"
    killed: list[int] = []

    def kill_one_worker() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            lines = output.read_bytes().count(b"\n") if output.exists() else 0
            workers = _pool_workers()
            if lines > 40 and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.append(lines)
            time.sleep(0.01)

    killer = threading.Thread(target=kill_one_worker)
    killer.start()
    summary = run_batch(archive.root, output, model_dir=shipped_model_dir, workers=2, batch_size=8)
    killer.join()
    assert killed and killed[0] < len(archive.all_paths), "the worker was not killed mid-run"
    assert summary.scored == len(archive.all_paths)
    check_rows(read_rows(output), archive, reference, load_model_card(shipped_model_dir))


def test_the_package_imports_neither_the_api_nor_tensorflow() -> None:
    code = ("import sys, app.batch.cli, app.batch.local, app.batch.ray_engine, app.batch.output, app.batch.scoring, "
            "app.batch.files\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'fastapi', 'ray') "
            "or m.startswith('app.api')]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)
    help_text = subprocess.run([sys.executable, "-m", "app.batch", "--help"], cwd=REPO, check=True, timeout=120,
                               capture_output=True, text=True).stdout
    assert "--engine {local,ray}" in help_text and "--retry-errors" in help_text
