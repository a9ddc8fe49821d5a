"""The per-file scoring of a batch run: ONE function, `score_batch`, that both engines call.

It makes for each file exactly what `/predict` computes: `engine.prepare` (the card's decode and
preprocessing, the pixel limit), one batched `engine.predict_batch` for the good files, the card's
threshold through `engine.label_for`. The service's per-file input checks live here too (empty
file, size limit; any check the service adds belongs in this function), so a local run and a
Ray run cannot differ: they only differ in who reads the bytes and who writes the rows.

A bad file never stops a run: it becomes a `Row` with `error` set and no probability. The
`error` text is `<ErrorType>: <message>`, the `error_type` and `error` of `/predict/batch`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Any

from app.imaging.decode import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from app.imaging.errors import ImageError
from app.model.engine import Assessment, InferenceEngine, PreparedImage

log = logging.getLogger(__name__)


class FileError(Exception):
    """A per-file failure outside the image chain: unreadable, empty, over the size limit."""


@dataclass(frozen=True)
class Row:
    """One output row. Field order is column order; a new field is a new column in both formats.

    `probability` and `label` are None (empty) exactly when `error` is not empty.
    """

    path: str
    label: str | None
    probability: float | None
    threshold: float
    model_version: str
    error: str  # "" when the file was scored
    in_distribution: bool | None = None  # the service's input check; None with an error
    ood_score: float | None = None  # above 1.0: not a chest X-ray (then `label` is empty); None without the check

    @property
    def ok(self) -> bool:
        return not self.error


COLUMNS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Row))


def read_file(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes | FileError:
    """The file's bytes, or why it cannot be scored (never raises for a bad file).

    The size is checked before reading, so a stray multi-gigabyte file costs nothing.
    """
    try:
        size = os.stat(path).st_size
        if size > max_bytes:
            return FileError(f"the file is {size} bytes, over the limit of {max_bytes}")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as exc:
        return FileError(f"cannot read the file: {exc.strerror or exc}")
    if len(data) > max_bytes:  # grew since the stat
        return FileError(f"the file is over the limit of {max_bytes} bytes")
    if not data:
        return FileError("the file is empty")
    return data


def read_items(paths: list[str], max_bytes: int = DEFAULT_MAX_BYTES) -> list[tuple[str, bytes | Exception]]:
    """(path, bytes or error) for each path: the input of `score_batch`."""
    return [(path, read_file(path, max_bytes)) for path in paths]


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def score_batch(
    engine: InferenceEngine, items: list[tuple[str, bytes | Exception]], max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[Row]:
    """One `Row` per item, in order: prepare each file, then ONE onnxruntime call for the good ones.

    An item is (path, the file's bytes) or (path, the exception that reading it raised).
    """
    card = engine.card
    errors: dict[int, str] = {}
    prepared: list[tuple[int, PreparedImage]] = []
    for index, (path, item) in enumerate(items):
        if isinstance(item, Exception):
            errors[index] = _describe(item)
            continue
        if not item:
            errors[index] = _describe(FileError("the file is empty"))
            continue
        try:
            prepared.append((index, engine.prepare(item, max_pixels)))
        except ImageError as exc:
            errors[index] = _describe(exc)
        except Exception as exc:  # a decoder bug on one file must not end a 100,000-file run
            log.warning("unexpected error preparing %s", path, exc_info=True)
            errors[index] = "unexpected " + _describe(exc)

    assessments: dict[int, Assessment] = {}
    for (index, _), assessment in zip(prepared, engine.assess([p for _, p in prepared]), strict=True):
        assessments[index] = assessment

    rows = []
    for index, (path, _) in enumerate(items):
        if index in errors:
            rows.append(Row(path, None, None, card.threshold, card.version, errors[index]))
        else:
            answer = assessments[index]
            label = engine.label_for(answer.probability) if answer.in_distribution else None
            rows.append(Row(path, label, answer.probability, card.threshold, card.version, "",
                            answer.in_distribution, answer.ood_score))
    return rows


def row_to_dict(row: Row) -> dict[str, Any]:
    return dataclasses.asdict(row)
