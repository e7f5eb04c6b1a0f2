"""Logs a machine and a person can trust: every record is one line (text: starting with its
time stamp; JSON: one object), whatever control characters, line breaks or terminal escapes
DICOM text, a library's message or a traceback holds."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import traceback
import unicodedata
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reliability_support import parser_command, parser_environment, replace_value
from series_selection.common.logs import JsonFormatter, TextFormatter
from series_selection.parser.cli import main as parse
from series_selection_tools.samples.synthetic import ct_series, write_series

FORGED_ASCII = (
    "\n1999-01-01 00:00:00,000 ERROR   series_selection.parser.run: forged\r\x1b[31mred\x7f"
)
"""A line break, then what looks like a record, then a terminal colour."""
FORGED = f"{FORGED_ASCII}\u2028\u2029\x85"
"""And the Unicode line breaks, for text in a character set that holds them."""
RESCALE_SLOPE = (0x0028, 0x1053)
TIME_STAMP = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")
LINE_BREAKING = {"Cc", "Zl", "Zp"}
"""Unicode categories of control characters and line and paragraph separators."""


def raw_controls(text: str) -> list[str]:
    return [c for c in text if unicodedata.category(c) in LINE_BREAKING]


def escaped(text: str) -> str:
    """``text`` with each control character or separator as Python writes it escaped."""
    return "".join(
        c.encode("unicode_escape").decode() if unicodedata.category(c) in LINE_BREAKING else c
        for c in text
    )


def record(name: str, message: str, failure: bool) -> logging.LogRecord:
    """A record logging ``message`` (as an argument), with a traceback when ``failure``."""
    exc_info = None
    if failure:
        try:
            raise ValueError(message)
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord(name, logging.ERROR, __file__, 1, "%s", (message,), exc_info)


@given(name=st.text(), message=st.text(), failure=st.booleans())
def test_a_text_record_is_one_line_with_controls_escaped(
    name: str, message: str, failure: bool
) -> None:
    line = TextFormatter().format(record(name, message, failure))
    assert line.splitlines() == [line]
    assert raw_controls(line) == []
    assert TIME_STAMP.match(line)
    if failure:
        last = "".join(traceback.format_exception_only(ValueError(message))).rstrip()
        assert "Traceback" in line and line.endswith(escaped(last))
    else:
        assert line.endswith(escaped(f"{name}: {message}".rstrip()))


@given(name=st.text(), message=st.text(), failure=st.booleans())
def test_a_json_record_is_one_line_and_keeps_the_text(
    name: str, message: str, failure: bool
) -> None:
    line = JsonFormatter().format(record(name, message, failure))
    assert line.splitlines() == [line]
    assert raw_controls(line) == []
    entry = json.loads(line)
    assert (entry["logger"], entry["message"]) == (name, message)
    assert ("exception" in entry) == failure


@pytest.fixture(scope="module")
def hostile_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The parser's output for series whose descriptions, names, UID and rescale hold ``FORGED``:
    one converted, one refused (a RescaleSlope that is no number); pydicom warns on reading."""
    source = tmp_path_factory.mktemp("hostile") / "in"
    for number, slope in ((1, b"1 "), (2, f"1{FORGED_ASCII}".encode())):
        truth = write_series(source / str(number), ct_series(slices=2, series_number=number))
        for path in truth.files:
            dataset = pydicom.dcmread(path)
            dataset.SpecificCharacterSet = "ISO_IR 192"
            dataset.SeriesDescription = dataset.StudyDescription = f"CT{FORGED}"
            dataset.PatientName = f"Doe^Jane{FORGED}"
            dataset.SeriesInstanceUID = f"{truth.series_uid}{FORGED_ASCII}"
            dataset.save_as(path)
            path.write_bytes(replace_value(path.read_bytes(), RESCALE_SLOPE, slope))
    return source


def assert_every_line_a_record(stderr: str, log_format: str) -> None:
    """Each line of ``stderr`` is one whole record and no control character is left raw."""
    lines = stderr.split("\n")
    assert lines.pop() == ""
    assert raw_controls("".join(lines)) == []
    assert stderr.splitlines() == lines  # no other line boundary either
    for line in lines:
        if log_format == "json":
            assert {"time", "level", "logger", "message"} <= set(json.loads(line))
        else:
            assert TIME_STAMP.match(line) and not line.startswith("1999"), line


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_parser_and_selector_logs_cannot_be_forged(
    hostile_output: Path, tmp_path: Path, log_format: str
) -> None:
    parsed, selected = tmp_path / "parsed", tmp_path / "selected"
    parser = subprocess.run(
        [*parser_command(hostile_output, parsed), "--log-format", log_format, "--workers", "2"],
        env=parser_environment(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert_every_line_a_record(parser.stderr, log_format)
    assert "forged" in parser.stderr and "py.warnings" in parser.stderr
    assert "RescaleSlope 1" in parser.stderr
    selector = subprocess.run(
        [sys.executable, "-m", "series_selection.selector", "--input", str(parsed), "--output",
         str(selected), "--log-format", log_format],
        env=parser_environment(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert_every_line_a_record(selector.stderr, log_format)
    assert "forged" in selector.stderr


@pytest.mark.shared_data
def test_a_decoder_failure_is_one_line_and_a_traceback_only_at_debug(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = bytearray((shared_data / "dcm_qa_ts" / "In" / "7.dcm").read_bytes())  # JPEG-LS
    scan = data.find(b"\xff\xda")  # start of scan: what follows is entropy-coded
    data[scan + 14 : scan + 400] = bytes(range(256)) + bytes(range(130))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "broken.dcm").write_bytes(data)
    arguments = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert parse(arguments) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "not converted" in line]
    assert "broken.dcm: pixel data cannot be decoded: " in line
    assert "pylibjpeg: " in line  # the decoder's own reason, on the same line
    assert parse([*arguments, "--log-level", "DEBUG"]) == 0
    assert "Traceback" in capsys.readouterr().err
