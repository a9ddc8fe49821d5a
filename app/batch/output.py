"""Where a batch run's rows go: a CSV file or a parquet directory, written as the run goes, resumable.

Robust to being killed at any moment (SIGKILL, power loss), without a final rewrite:

- `FILE.csv` (UTF-8; a file name that is not UTF-8 keeps its raw bytes): rows are appended a chunk
  at a time (one `write`, flush, fsync). A kill can tear only the last line; the next run cuts the
  file back to its last complete line before appending.
- `FILE.parquet`: a DIRECTORY of part files (`part-000000.parquet`, ...), what pyarrow, pandas,
  Spark, DuckDB and Ray read as one table. Rows are buffered and a part is written every
  `flush_rows` rows or `flush_seconds` (and at the end) to a hidden temporary file, fsynced, then
  renamed into place: a part is there whole or not at all. A kill loses the unwritten buffer only,
  and the next run scores those files again. Hidden leftovers (`.part-*.tmp`) are removed.

Resume: the paths already in the output are skipped. Rows with an error are KEPT by default (a
corrupt file fails the same way every time, and a finished run is then a no-op); `retry_errors`
drops them first (each file rewritten atomically, so a kill during that step loses nothing) and
their files are scored again. A run refuses an output written by another model version or with
other columns (mixing them would make one table that no single model produced), and an output
another run is writing (an exclusive lock: `.FILE.csv.lock` beside the CSV, `_lock` in the parquet
directory; both names are ignored by parquet readers).
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import io
import os
import time
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

from app.batch.scoring import COLUMNS, Row


class OutputError(RuntimeError):
    """The output cannot be resumed or written (other model, other columns, in use, bad name)."""


class Output(Protocol):
    done: dict[str, bool]  # path -> scored without error, for every row already in the output

    def write(self, rows: Iterable[Row]) -> None: ...

    def close(self) -> None: ...


def output_format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise OutputError(f"the output must end in .csv or .parquet, not {path.name!r}")
    return suffix[1:]


def open_output(path: Path | str, model_version: str, retry_errors: bool = False, flush_rows: int = 1000,
                flush_seconds: float = 60.0) -> Output:
    """The writer for `path` (.csv or .parquet), with what it already holds in `.done`.

    `flush_rows`, `flush_seconds`: when a parquet part is written (a CSV is appended chunk by chunk).
    """
    path = Path(path)
    if output_format(path) == "csv":
        return CsvOutput(path, model_version, retry_errors)
    return ParquetOutput(path, model_version, retry_errors, flush_rows, flush_seconds)


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Lock:
    """An exclusive, non-blocking flock on `path` for the life of the run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle = open(path, "a")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise OutputError(f"another batch run is writing this output (lock {path})") from None

    def release(self, remove: bool) -> None:
        if self.handle.closed:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        self.handle.close()


def _check_version(versions: Iterable[str], model_version: str, path: Path) -> None:
    others = set(versions) - {model_version}
    if others:
        raise OutputError(f"{path} holds rows of model {', '.join(sorted(others))}; this run uses {model_version}: "
                          "write to another output")


def _check_columns(columns: list[str], path: Path) -> None:
    if tuple(columns) != COLUMNS:
        raise OutputError(f"{path} has the columns {columns}, this version writes {list(COLUMNS)}: "
                          "write to another output")


# ---------------------------------------------------------------------------------------------- CSV


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)  # shortest text that reads back to the same float
    return str(value)


class CsvOutput:
    def __init__(self, path: Path, model_version: str, retry_errors: bool) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(path.with_name(f".{path.name}.lock"))
        try:
            self.done = self._resume(model_version, retry_errors)
            fresh = not path.exists() or path.stat().st_size == 0
            self._handle = open(path, "a", encoding="utf-8", errors="surrogateescape", newline="")  # noqa: SIM115 (closed by close())
            if fresh:
                self._append([list(COLUMNS)])
        except BaseException:
            self._lock.release(remove=True)
            raise

    def _resume(self, model_version: str, retry_errors: bool) -> dict[str, bool]:
        if not self.path.exists():
            return {}
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a kill tore the last line: drop it
            data = data[: data.rfind(b"\n") + 1]
            with open(self.path, "r+b") as handle:
                handle.truncate(len(data))
                os.fsync(handle.fileno())
        if not data:
            return {}
        records = list(csv.reader(io.StringIO(data.decode("utf-8", "surrogateescape"), newline="")))
        _check_columns(records[0], self.path)
        rows = records[1:]
        bad = [i for i, r in enumerate(rows) if len(r) != len(COLUMNS)]
        if bad:
            raise OutputError(f"{self.path}: row {bad[0] + 2} has {len(rows[bad[0]])} fields, not {len(COLUMNS)}")
        at = {name: i for i, name in enumerate(COLUMNS)}
        _check_version((r[at["model_version"]] for r in rows), model_version, self.path)
        done = {r[at["path"]]: not r[at["error"]] for r in rows}
        if retry_errors and not all(done.values()):
            keep = [records[0]] + [r for r in rows if not r[at["error"]]]
            text = io.StringIO(newline="")
            csv.writer(text, lineterminator="\n").writerows(keep)
            temporary = self.path.with_name(f".{self.path.name}.tmp")
            _fsync_write(temporary, text.getvalue().encode("utf-8", "surrogateescape"))
            os.replace(temporary, self.path)
            _fsync_dir(self.path.parent)
            done = {path: True for path, ok in done.items() if ok}
        return done

    def _append(self, records: list[list[str]]) -> None:
        text = io.StringIO(newline="")
        csv.writer(text, lineterminator="\n").writerows(records)
        self._handle.write(text.getvalue())
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def write(self, rows: Iterable[Row]) -> None:
        records = [[_csv_value(getattr(row, name)) for name in COLUMNS] for row in rows]
        if records:
            self._append(records)

    def close(self) -> None:
        if not self._handle.closed:
            self._handle.close()
        self._lock.release(remove=True)


# ------------------------------------------------------------------------------------------ parquet


def arrow_schema():  # -> pyarrow.Schema
    """The parquet schema, from `Row`'s type hints (a new field of Row is a new column here too)."""
    import pyarrow as pa

    types_ = {str: pa.string(), float: pa.float64(), int: pa.int64(), bool: pa.bool_()}
    fields = []
    hints = typing.get_type_hints(Row)
    for field in dataclasses.fields(Row):
        hint = hints[field.name]
        args = typing.get_args(hint)  # (X, NoneType) for `X | None`, () for a plain type
        base = next((a for a in args if a is not type(None)), hint)
        fields.append(pa.field(field.name, types_[base], nullable=type(None) in args))
    return pa.schema(fields)


class ParquetOutput:
    PART_PREFIX = "part-"

    def __init__(self, path: Path, model_version: str, retry_errors: bool, flush_rows: int = 1000,
                 flush_seconds: float = 60.0) -> None:
        import pyarrow.parquet as pq

        self._pq = pq
        self.path = path
        if path.exists() and not path.is_dir():
            raise OutputError(f"{path} is a file: parquet output is written as a directory of part files")
        path.mkdir(parents=True, exist_ok=True)
        self._lock = _Lock(path / "_lock")
        try:
            self.schema = arrow_schema()
            self.flush_rows, self.flush_seconds = flush_rows, flush_seconds
            self._buffer: list[Row] = []
            self._last_flush = time.monotonic()
            for leftover in path.glob(f".{self.PART_PREFIX}*.tmp"):
                leftover.unlink()
            self.done = self._resume(model_version, retry_errors)
        except BaseException:
            self._lock.release(remove=False)
            raise

    def _parts(self) -> list[Path]:
        return sorted(self.path.glob(f"{self.PART_PREFIX}*.parquet"))

    def _resume(self, model_version: str, retry_errors: bool) -> dict[str, bool]:
        done: dict[str, bool] = {}
        self._next = 0
        for part in self._parts():
            table = self._pq.read_table(part)
            _check_columns(table.column_names, part)
            _check_version(set(table.column("model_version").to_pylist()), model_version, part)
            paths, errors = table.column("path").to_pylist(), table.column("error").to_pylist()
            if retry_errors and any(errors):
                keep = table.filter([not e for e in errors])
                if keep.num_rows:
                    self._write_atomic(part, keep)
                else:
                    part.unlink()
                    _fsync_dir(self.path)
                done.update((p, True) for p, e in zip(paths, errors, strict=True) if not e)
            else:
                done.update((p, not e) for p, e in zip(paths, errors, strict=True))
            self._next = max(self._next, int(part.stem[len(self.PART_PREFIX):]) + 1)
        return done

    def _write_atomic(self, part: Path, table) -> None:
        temporary = self.path / f".{part.name}.tmp"
        self._pq.write_table(table, temporary)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, part)
        _fsync_dir(self.path)

    def _flush(self) -> None:
        import pyarrow as pa

        if self._buffer:
            columns = {name: [getattr(row, name) for row in self._buffer] for name in COLUMNS}
            table = pa.Table.from_pydict(columns, schema=self.schema)
            self._write_atomic(self.path / f"{self.PART_PREFIX}{self._next:06d}.parquet", table)
            self._next += 1
            self._buffer = []
        self._last_flush = time.monotonic()

    def write(self, rows: Iterable[Row]) -> None:
        self._buffer.extend(rows)
        if len(self._buffer) >= self.flush_rows or time.monotonic() - self._last_flush >= self.flush_seconds:
            self._flush()

    def close(self) -> None:
        if self._lock.handle.closed:
            return
        try:
            self._flush()
        finally:
            self._lock.release(remove=False)
