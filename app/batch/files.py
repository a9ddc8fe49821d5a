"""Which files a batch run scores: a directory walked recursively, a glob, or one file.

Files are chosen by extension (.jpg .jpeg .png .dcm .dicom, any case). Files WITHOUT an
extension are sniffed (their first 132 bytes) and kept when they start like a JPEG, PNG or
DICOM: DICOM archives often name their files `IM000001` or by SOP instance UID, with no
suffix. Files with any other extension (.txt, .csv, .json, ...) are not images and are skipped
without a row. A file with an image extension that is not an image (or is empty, truncated,
unreadable) is kept: it becomes an error row, which is what the archive's owner needs to see.

Paths are returned absolute (not resolved: a symlinked folder keeps the name it was given) and
sorted, so that a rerun from another working directory finds the same keys in the output.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from app.imaging.decode import sniff_format
from app.imaging.errors import UnsupportedFormatError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".dcm", ".dicom"})
_SNIFF_BYTES = 132  # a DICOM file's "DICM" magic sits at offset 128


def is_candidate(path: str) -> bool:
    """True for a file this run should score (by extension, or sniffed when it has none)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix:
        return suffix in IMAGE_EXTENSIONS
    try:
        with open(path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError:
        return False
    try:
        sniff_format(head)
    except UnsupportedFormatError:
        return False
    return True


def _walk(folder: str) -> Iterator[str]:
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in names:
            yield os.path.join(root, name)


def _expand(spec: str) -> Iterable[str]:
    """Candidate paths (unfiltered) for one input: a folder, a file, or a glob (`**` recurses)."""
    if os.path.isdir(spec):
        return _walk(spec)
    if os.path.isfile(spec):
        return [spec]
    found: list[str] = []
    for match in glob.glob(spec, recursive=True):
        found.extend(_walk(match) if os.path.isdir(match) else [match])
    return found


def find_files(spec: str | Path) -> list[str]:
    """Absolute paths of the films under `spec` (folder, file or glob), sorted, without duplicates.

    A folder matched by a glob is walked recursively too. An explicitly named file is kept
    whatever its extension (the user asked for it); files found by walking are filtered.
    """
    spec = os.path.expanduser(str(spec))
    explicit = os.path.isfile(spec)
    paths = {os.path.abspath(p) for p in _expand(spec) if os.path.isfile(p) and (explicit or is_candidate(p))}
    return sorted(paths)
