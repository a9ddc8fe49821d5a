"""`--engine ray`: Ray Data, on a local Ray started on demand or on an existing cluster (`--address`).

The pipeline: the paths still to score (`from_items`, one block per batch) -> `map_batches` on an
actor pool: each actor holds ONE `InferenceEngine` (one onnxruntime session with one thread,
built once), reads its batch's files and scores them with `score_batch` -> the rows stream back
to the driver, which writes them with `app.batch.output`, the writer of the local engine too.

Why the actor reads the files itself: a separate read stage (`ray.data.read_binary_files`, or
a task per batch) costs an object-store copy of every film and extra worker processes; on this
2-core machine (busy with other work at the time) 604 small films took 26-35 s with a read
stage of tasks and 11-14 s with the actors reading, 2 actors both times. Our
own read also makes a file that vanished, cannot be read, is empty or is over the size limit an
error row, where `read_binary_files` would fail the job.

Why not `Dataset.write_parquet`: the rows are tiny (100,000 films make about 10 MB), and one
writer on the driver gives both formats the same resume rules and the same atomic part files;
Ray's writers leave partial files behind when a job is killed.

On a cluster, every node must see the input files and `--model-dir` at the same paths (shared
storage), and have this package installed with the same dependencies.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.batch.scoring import COLUMNS, Row, read_items, score_batch


class Scorer:
    """The actor: one InferenceEngine (one onnxruntime session, one thread) for its whole life."""

    def __init__(self, model_dir: str, max_pixels: int, max_bytes: int) -> None:
        import cv2

        from app.batch.output import arrow_schema
        from app.model.engine import InferenceEngine

        cv2.setNumThreads(1)  # one core per actor
        self.engine = InferenceEngine(model_dir, threads=1)
        self.max_pixels, self.max_bytes = max_pixels, max_bytes
        self.schema = arrow_schema()

    def __call__(self, batch):  # pyarrow.Table -> pyarrow.Table
        import pyarrow as pa

        paths = batch.column("path").to_pylist()
        rows = score_batch(self.engine, read_items(paths, self.max_bytes), self.max_pixels)
        return pa.Table.from_pydict({name: [getattr(r, name) for r in rows] for name in COLUMNS}, schema=self.schema)


def start_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Connect to `address` (auto, ray://HOST:PORT) or start a local Ray; True when this call started it.

    An already initialised Ray (a test fixture, a notebook) is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    runtime_env = {"env_vars": {"ORT_DISABLE_TELEMETRY": "1"}}
    if address:
        ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, logging_level=logging.WARNING)
        return True
    ray.init(num_cpus=num_cpus or len(os.sched_getaffinity(0)), include_dashboard=False, log_to_driver=False,
             runtime_env=runtime_env, logging_level=logging.WARNING)
    return True


def run_ray(
    paths: list[str], sink: Callable[[list[Row]], None], *, model_dir: Path, actors: int | None, batch_size: int,
    max_pixels: int, max_bytes: int, address: str | None = None,
) -> None:
    """Score `paths` with Ray Data; `sink` gets the rows as batches come back (any order).

    `actors`: None = one per CPU of the cluster (each actor asks for one CPU).
    """
    if not paths:
        return
    import ray
    import ray.data

    started = start_ray(address)
    try:
        actors = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the CLI draws its own
        context.print_on_execution_start = False
        context.enable_auto_log_stats = False
        logging.getLogger("ray.data").setLevel(logging.WARNING)  # no INFO lines per execution on the CLI's stderr
        logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)  # "progress bars disabled"
        blocks = max(1, math.ceil(len(paths) / batch_size))
        dataset = (
            ray.data.from_items([{"path": p} for p in paths], override_num_blocks=blocks)
            .map_batches(Scorer, batch_size=batch_size, batch_format="pyarrow",
                         compute=ray.data.ActorPoolStrategy(size=actors), num_cpus=1,
                         fn_constructor_kwargs={"model_dir": str(Path(model_dir).resolve()),
                                                "max_pixels": max_pixels, "max_bytes": max_bytes})
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            table: Any = batch  # a pyarrow.Table (batch_format above); Ray types it as any batch format
            sink([Row(**record) for record in table.to_pylist()])
    finally:
        if started:
            ray.shutdown()
