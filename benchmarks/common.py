"""What every benchmark module shares: paths, the uploads, statistics, the environment."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SHARED_DATA", REPO.parent / "shared" / "data"))
VAL16 = SHARED_DATA / "val16_fullres"
DEFAULT_MODEL_DIR = REPO / "models"
RESULTS_MD = REPO / "benchmarks" / "RESULTS.md"
RESULTS_JSON = REPO / "benchmarks" / "results.json"


def bench_env(root: Path | None = None, **extra: str) -> dict[str, str]:
    """Environment for every process the suite starts: no telemetry, nothing written to $HOME.
    `root`: where the code comes from (default `app_root()`)."""
    root = (root or app_root()).resolve()
    env = dict(os.environ)
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env.setdefault("KERAS_HOME", str(REPO / ".keras-home"))
    roots = [str(root), str(REPO)] if root != REPO else [str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(roots + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.update(extra)
    return env


def write_or_print(result: object, path: Path | None) -> None:
    """A child benchmark's result as JSON: into `path` (how the suite reads it back), else on stdout."""
    text = json.dumps(result, indent=2)
    if path:
        path.write_text(text)
    else:
        print(text)


def app_root() -> Path:
    """Where the services' code comes from: this checkout, or another one (before/after comparisons)."""
    return Path(os.environ.get("CXR_BENCH_APP_ROOT") or REPO).resolve()


def setup_process_env() -> None:
    """The same defaults for the benchmark process itself (before TensorFlow/onnxruntime load)."""
    for key, value in bench_env().items():
        if key in ("ORT_DISABLE_TELEMETRY", "TF_CPP_MIN_LOG_LEVEL", "KERAS_HOME"):
            os.environ.setdefault(key, value)


def upload_files(folder: Path = VAL16) -> list[Path]:
    files = sorted(folder.glob("*/*.jpeg"))
    if not files:
        raise FileNotFoundError(f"no uploads in {folder} (expected */*.jpeg; set SHARED_DATA to the data folder)")
    return files


def load_uploads(folder: Path = VAL16) -> list[tuple[str, bytes]]:
    return [(path.name, path.read_bytes()) for path in upload_files(folder)]


def summarize_ms(seconds: list[float]) -> dict[str, float]:
    """Median / p95 / p99 / mean in milliseconds of a list of durations in seconds."""
    if not seconds:
        return {"n": 0, "median": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "n": int(ms.size),
        "median": float(np.median(ms)),
        "p95": float(np.percentile(ms, 95)),
        "p99": float(np.percentile(ms, 99)),
        "mean": float(statistics.fmean(ms)),
    }


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
