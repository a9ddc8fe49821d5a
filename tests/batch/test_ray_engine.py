"""`--engine ray` end to end on ONE local Ray for the module: the same probabilities as
`python -m training evaluate` and as the local engine, error rows, resuming a local engine's
output, and the CLI against an existing cluster (`--address auto`: the module's Ray)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.batch.cli import run_batch
from app.model.card import load_model_card
from tests.batch.conftest import check_rows, read_rows
from tests.conftest import REPO

ray = pytest.importorskip("ray", reason="the optional extra `batch` (pip install '.[batch]') is not installed")
pq = pytest.importorskip("pyarrow.parquet")
# Ray Data warns about its own deprecated settings when it copies its context into a job.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:ray.*")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    """One local Ray (2 CPUs) for every test here; run_batch uses it as it is and leaves it running."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"ORT_DISABLE_TELEMETRY": "1"}})
    yield
    ray.shutdown()


def test_ray_engine_matches_predict_files(tmp_path, archive, reference, shipped_model_dir) -> None:
    output = tmp_path / "scores.parquet"
    summary = run_batch(archive.root, output, engine="ray", model_dir=shipped_model_dir, actors=2, batch_size=16,
                        part_rows=100)
    assert (summary.scored, summary.errors) == (len(archive.all_paths), len(archive.bad))
    # A part is written once 100 rows are buffered, and also every 60 s (a slow machine gets more parts):
    # chunks of 16 make parts of at most 100 + 15 rows, so 303 rows take at least 3.
    part_sizes = [pq.read_metadata(part).num_rows for part in output.glob("part-*.parquet")]
    assert sum(part_sizes) == len(archive.all_paths) and len(part_sizes) >= 3
    assert max(part_sizes) <= 100 + 16 - 1, part_sizes
    check_rows(read_rows(output), archive, reference, load_model_card(shipped_model_dir))
    assert ray.is_initialized()  # a Ray it did not start is left running


def test_ray_resumes_a_local_csv(tmp_path, archive, reference, shipped_model_dir) -> None:
    output = tmp_path / "scores.csv"
    run_batch(archive.root, output, engine="local", model_dir=shipped_model_dir, workers=1)
    lines = output.read_bytes().splitlines(keepends=True)
    output.write_bytes(b"".join(lines[:120]))  # the header and 119 rows: a partial output
    summary = run_batch(archive.root, output, engine="ray", model_dir=shipped_model_dir, actors=1)
    assert (summary.skipped, summary.scored) == (119, len(archive.all_paths) - 119)
    check_rows(read_rows(output), archive, reference, load_model_card(shipped_model_dir))


def test_the_cli_on_an_existing_cluster(tmp_path, small_archive, shipped_model_dir) -> None:
    output = tmp_path / "out.parquet"
    command = [sys.executable, "-m", "app.batch", "--input", str(small_archive.root), "--output", str(output),
               "--engine", "ray", "--address", "auto", "--actors", "1", "--model-dir", str(shipped_model_dir),
               "--no-progress"]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = read_rows(output)
    assert {r["path"] for r in rows} == small_archive.all_paths
    assert sum(bool(r["error"]) for r in rows) == len(small_archive.bad)
