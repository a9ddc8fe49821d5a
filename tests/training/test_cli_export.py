"""Training commands export into their own run folder unless told otherwise: only an explicit
`--export-to models` replaces the shipped model."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.cli import build_parser, export_destination


@pytest.mark.parametrize(
    ("argv", "run", "expected"),
    [
        (["train", "--out", "runs/x"], Path("runs/x"), Path("runs/x/export")),
        (["train", "--out", "runs/x", "--export-to", "none"], Path("runs/x"), None),
        (["train", "--out", "runs/x", "--export-to", "models"], Path("runs/x"), Path("models")),
        (["ensemble", "--runs", "a", "b", "--out", "runs/e"], Path("runs/e"), Path("runs/e/export")),
        (["finalize", "--run", "runs/f"], Path("runs/f"), Path("runs/f/export")),
        (["finalize", "--run", "runs/f", "--export-to", "NONE"], Path("runs/f"), None),
    ],
)
def test_export_goes_to_the_run_folder_unless_given(argv: list[str], run: Path, expected: Path | None) -> None:
    args = build_parser().parse_args(argv)
    assert export_destination(args.export_to, run) == expected


def test_export_refuses_none_instead_of_writing_a_folder_named_none(tmp_path: Path, monkeypatch) -> None:
    from training.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["export", "--run", str(tmp_path / "run"), "--out", "none"]) == 2
    assert not (tmp_path / "none").exists()
