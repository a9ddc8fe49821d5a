"""`--engine local`: a pool of processes on this machine, each holding one `InferenceEngine`.

Why processes and one onnxruntime thread each: decode and preprocessing are Python + OpenCV
+ PIL calls that hold the GIL for part of their time, and onnxruntime's own thread pool would
compete with the other processes for the same cores; one single-threaded process per core keeps
every core busy with no hand-offs (the same layout as the API's workers, benchmarks/README.md).

Workers read the files themselves: the parent sends chunks of paths (`batch_size` each), not
bytes, so the parent does nothing but write rows. Each chunk is scored by `score_batch` (one
onnxruntime call per chunk).

A worker that dies (a decoder crashing the process, the OOM killer) breaks the pool; the chunks
not yet written are then retried one file per task in a fresh pool, and a file that breaks the
pool on its own becomes an error row instead of ending the run.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from app.batch.scoring import Row, read_items, score_batch

log = logging.getLogger(__name__)

# One per worker process (set by _init_worker).
_ENGINE = None
_LIMITS: tuple[int, int] = (0, 0)


def _init_worker(model_dir: str, max_pixels: int, max_bytes: int) -> None:
    global _ENGINE, _LIMITS
    import cv2

    from app.model.engine import InferenceEngine

    cv2.setNumThreads(1)  # one core per process: OpenCV's own pool would oversubscribe
    _ENGINE = InferenceEngine(model_dir, threads=1)
    _LIMITS = (max_pixels, max_bytes)


def _score_paths(paths: list[str]) -> list[Row]:
    max_pixels, max_bytes = _LIMITS
    assert _ENGINE is not None, "the pool's initializer loads the engine"
    return score_batch(_ENGINE, read_items(paths, max_bytes), max_pixels)


def _dead_worker_row(path: str, version: str, threshold: float) -> Row:
    return Row(path, None, None, threshold, version,
               "WorkerCrashed: the worker process died while scoring this file")


def run_local(
    paths: list[str], sink: Callable[[list[Row]], None], *, model_dir: Path, workers: int, batch_size: int,
    max_pixels: int, max_bytes: int, model_version: str, threshold: float,
) -> None:
    """Score `paths` in `workers` processes; `sink` gets each chunk's rows as it completes (any order)."""
    chunks = [paths[i:i + batch_size] for i in range(0, len(paths), batch_size)]
    args = (sink, model_dir, max_pixels, max_bytes)
    while chunks:
        suspects, chunks = _run_pool(chunks, *args, workers=workers, in_flight_max=2 * workers)
        if not suspects:
            continue
        # A worker died. Any of the chunks in flight may hold the file that killed it: rerun their
        # files one at a time, alone in a pool, so that the culprit is known for certain.
        singles = [[path] for chunk in suspects for path in chunk]
        log.warning("a worker process died; retrying %d files one at a time", len(singles))
        while singles:
            culprit, singles = _run_pool(singles, *args, workers=1, in_flight_max=1)
            for (path,) in culprit:
                sink([_dead_worker_row(path, model_version, threshold)])


def _run_pool(
    chunks: list[list[str]], sink: Callable[[list[Row]], None], model_dir: Path, max_pixels: int, max_bytes: int,
    *, workers: int, in_flight_max: int,
) -> tuple[list[list[str]], list[list[str]]]:
    """Run the chunks until done or until the pool breaks (a worker died).

    Returns (the chunks in flight when it broke, the chunks not yet started); ([], []) when all
    went through. At most `in_flight_max` chunks are in flight, so a break leaves few suspects and
    memory stays flat whatever the archive's size.
    """
    context = multiprocessing.get_context("spawn")  # no fork of a parent that may hold threads
    pending = list(reversed(chunks))
    in_flight: dict[Future, list[str]] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_init_worker,
                             initargs=(str(model_dir), max_pixels, max_bytes)) as pool:
        try:
            while pending or in_flight:
                while pending and len(in_flight) < in_flight_max:
                    chunk = pending.pop()
                    in_flight[pool.submit(_score_paths, chunk)] = chunk
                finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                broken = False
                for future in finished:
                    try:
                        rows = future.result()
                    except BrokenProcessPool:
                        broken = True
                        continue
                    sink(rows)
                    del in_flight[future]
                if broken:
                    return list(in_flight.values()), list(reversed(pending))
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    return [], []
