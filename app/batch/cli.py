"""`python -m app.batch`: the command line, and `run_batch`, the same run as a function.

A run: check the model (card, ONNX hash) once here, so a bad `--model-dir` fails before any
worker starts; list the films; open the output and skip what it already holds; score the rest
with the chosen engine, writing rows as they come; print a summary. Exit status 0 when the run
went through (error rows included: they are results), 2 for a usage problem (no films, an output
of another model, an output in use).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from app.batch.files import IMAGE_EXTENSIONS, find_files
from app.batch.output import OutputError, open_output, output_format
from app.batch.scoring import Row
from app.imaging.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

ENGINES = ("local", "ray")


class NoFilesError(ValueError):
    """The input names no film."""


@dataclass(frozen=True)
class Summary:
    found: int  # films under the input
    skipped: int  # already in the output
    scored: int  # rows written by this run
    errors: int  # of which with an error
    seconds: float
    output: Path
    model_version: str


def default_model_dir() -> Path:
    return Path(os.environ.get("CXR_MODEL_DIR") or "models")


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def run_batch(
    input: str | Path, output: str | Path, *, engine: str = "local", model_dir: str | Path | None = None,
    batch_size: int = 32, workers: int | None = None, actors: int | None = None, address: str | None = None,
    retry_errors: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, max_bytes: int = DEFAULT_MAX_BYTES,
    progress: bool | None = False, part_rows: int = 1000,
) -> Summary:
    """Score every film under `input` into `output` (.csv or .parquet); resumes a partial output.

    `progress`: True draws a bar, None draws one only on a terminal, False none. `part_rows`: rows per
    parquet part file (also written every 60 s).
    """
    from app.model.engine import InferenceEngine

    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    model_dir = Path(model_dir) if model_dir else default_model_dir()
    check = InferenceEngine(model_dir, threads=1)  # fails fast: missing card, wrong ONNX hash
    version, threshold = check.card.version, check.card.threshold
    del check

    paths = find_files(input)
    if not paths:
        raise NoFilesError(f"no films ({', '.join(sorted(IMAGE_EXTENSIONS))}, or DICOM without an extension) "
                           f"under {input}")
    if output_format(Path(output)) == "parquet":
        unnamed = next((p for p in paths if not _is_utf8(p)), None)
        if unnamed is not None:
            raise OutputError(f"a file name is not UTF-8, which parquet cannot store: {unnamed!r}; write a .csv")
    started = time.perf_counter()
    out = open_output(output, version, retry_errors, flush_rows=part_rows)
    todo = [p for p in paths if p not in out.done]
    counts = {"rows": 0, "errors": 0}
    bar = _progress_bar(len(todo), engine, progress)

    def sink(rows: list[Row]) -> None:
        out.write(rows)
        counts["rows"] += len(rows)
        counts["errors"] += sum(not row.ok for row in rows)
        bar.update(len(rows))

    try:
        if engine == "local":
            from app.batch.local import run_local

            run_local(todo, sink, model_dir=model_dir, workers=workers or usable_cores(), batch_size=batch_size,
                      max_pixels=max_pixels, max_bytes=max_bytes, model_version=version, threshold=threshold)
        else:
            from app.batch.ray_engine import run_ray

            run_ray(todo, sink, model_dir=model_dir, actors=actors, batch_size=batch_size, max_pixels=max_pixels,
                    max_bytes=max_bytes, address=address)
    finally:
        bar.close()
        out.close()
    return Summary(len(paths), len(paths) - len(todo), counts["rows"], counts["errors"],
                   time.perf_counter() - started, Path(output), version)


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:  # a name os.fsdecode kept as surrogates
        return False
    return True


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, engine: str, progress: bool | None):
    """tqdm's bar when wanted and installed (the `batch` extra); the local engine runs without it."""
    if progress is False:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ModuleNotFoundError:
        return _NoBar()
    return tqdm(total=total, unit="film", disable=None if progress is None else not progress,
                desc=f"scoring ({engine})", file=sys.stderr, smoothing=0.05)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.batch",
        description="Score every chest X-ray under a folder or glob with the served model (the same decode, "
                    "preprocessing, ONNX model and threshold as /predict); one row per file.",
        epilog="Output columns: path (absolute), label, probability, threshold, model_version, error (empty when "
               "fine; a bad file is a row with an error and no probability). FILE.csv is appended as the run goes; "
               "FILE.parquet is a directory of part files, each written atomically. Rerunning with the same output "
               "skips the files already in it (error rows included, unless --retry-errors); an output written by "
               "another model version is refused.",
    )
    parser.add_argument("--input", required=True,
                        help="a folder (walked recursively), a glob (quote it; ** recurses) or one file. Kept: "
                             ".jpg .jpeg .png .dcm .dicom, and files without an extension that are JPEG, PNG or DICOM")
    parser.add_argument("--output", required=True, type=Path, help="FILE.csv or FILE.parquet (a directory)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local: a process pool on this machine (default); ray: Ray Data (pip install '.[batch]')")
    parser.add_argument("--address", help="ray: an existing cluster (auto, or ray://HOST:PORT); default: start a "
                                          "local Ray for this run")
    parser.add_argument("--batch-size", type=int, default=32, help="films per onnxruntime call (default 32)")
    parser.add_argument("--workers", type=int, help="local: processes (default: one per usable core)")
    parser.add_argument("--actors", type=int, help="ray: scoring actors, one ONNX session each (default: one per "
                                                   "CPU of the cluster)")
    parser.add_argument("--model-dir", type=Path, help="the model (default: $CXR_MODEL_DIR or models/)")
    parser.add_argument("--retry-errors", action="store_true",
                        help="score again the files whose rows in the output have an error (their rows are replaced)")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images declaring more pixels (the API's default: {DEFAULT_MAX_PIXELS})")
    parser.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES,
                        help=f"refuse larger files (the API's default upload limit: {DEFAULT_MAX_BYTES})")
    parser.add_argument("--part-rows", type=int, default=1000,
                        help="parquet: rows per part file, also written every 60 s; a kill loses at most the rows "
                             "not yet written, which the next run scores again (default 1000)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (there is none off a terminal)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.address and args.engine != "ray":
        parser.error("--address needs --engine ray")
    for name in ("batch_size", "workers", "actors", "max_pixels", "max_bytes", "part_rows"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from app.model.engine import ModelIntegrityError

    try:
        summary = run_batch(
            args.input, args.output, engine=args.engine, model_dir=args.model_dir, batch_size=args.batch_size,
            workers=args.workers, actors=args.actors, address=args.address, retry_errors=args.retry_errors,
            max_pixels=args.max_pixels, max_bytes=args.max_bytes, progress=False if args.no_progress else None,
            part_rows=args.part_rows,
        )
    except (NoFilesError, OutputError, FileNotFoundError, ModelIntegrityError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as exc:  # ray or pyarrow without the extra
        print(f"error: {exc}; --engine ray and .parquet need the optional extra: pip install '.[batch]'",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the rows scored so far are in {args.output}; the same command continues the run",
              file=sys.stderr)
        return 130
    rate = summary.scored / summary.seconds if summary.seconds > 0 else 0.0
    print(f"{summary.output}: {summary.scored} films scored ({summary.errors} with an error) in "
          f"{summary.seconds:.1f} s ({rate:.1f}/s), {summary.skipped} of {summary.found} already there; "
          f"model {summary.model_version}", file=sys.stderr)
    return 0
