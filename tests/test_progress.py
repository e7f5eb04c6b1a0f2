"""Progress of long stages: lines while nothing finishes, a bar on a terminal, and a warning for
an input without DICOM."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from series_selection.common.progress import Progress
from series_selection.parser.cli import main as parse


def test_a_line_every_interval_also_while_nothing_finishes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with Progress("converting", 5, "series", seconds=0.05) as progress:
        time.sleep(0.3)
        progress.advance(3)
        time.sleep(0.15)
    lines = [r.getMessage() for r in caplog.records]
    assert sum(line.startswith("converting: 0 of 5 series (") for line in lines) >= 2
    assert any(line.startswith("converting: 3 of 5 series (") for line in lines)
    count = len(caplog.records)
    time.sleep(0.15)
    assert len(caplog.records) == count  # stopped with the stage


def test_a_bar_instead_of_lines(capsys: pytest.CaptureFixture[str]) -> None:
    with Progress("reading headers", 4, "files", bar=True, seconds=0.01) as progress:
        progress.advance(4)
    bar = capsys.readouterr().err
    assert "reading headers: 100%" in bar
    assert "4/4" in bar


def test_an_input_without_dicom_is_a_warning_naming_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    (source / "notes.txt").write_text("not DICOM")
    assert parse(["--input", str(source), "--output", str(tmp_path / "out")]) == 0
    (warning,) = [line for line in capsys.readouterr().err.splitlines() if " WARNING " in line]
    assert warning.endswith(f"no DICOM file found under {source.resolve()} (1 files)")
