"""Hostile rules and doctored parser outputs: the selector refuses them in one log line with
exit code 2, never hangs, never prints a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reliability_support import parser_environment
from selector_support import SeriesFixture, rules_json, write_parser_output
from series_selection.common.errors import RulesError
from series_selection.selector.cli import main
from series_selection.selector.rules import MAX_RULES_BYTES, parse_rules

SERIES = SeriesFixture(
    series={"Modality": "CT", "SeriesNumber": 2, "SliceThickness": "2.5"},
    instances=[{"InstanceNumber": n} for n in range(1, 3)],
)


def run_selector(
    input_dir: Path, output_dir: Path, rules: Path | str
) -> subprocess.CompletedProcess[str]:
    """The real ``series-selector`` in a child process (a blocking read would hang this one)."""
    command = [sys.executable, "-m", "series_selection.selector", "--input", str(input_dir)]
    command += ["--output", str(output_dir), "--rules", str(rules)]
    return subprocess.run(
        command, env=parser_environment(), capture_output=True, text=True, timeout=60, check=False
    )


def assert_refused(result: subprocess.CompletedProcess[str], complaint: str) -> None:
    """Exit code 2, and one error line saying ``complaint``."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 2, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert complaint in line


@pytest.fixture
def parsed(tmp_path: Path) -> Path:
    folder = tmp_path / "parsed"
    write_parser_output(folder, [SERIES])
    return folder


def fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def folder(path: Path) -> Path:
    path.mkdir()
    return path


def oversized(path: Path) -> Path:
    padding = "#" + "x" * 99 + "\n"
    path.write_text(padding * (MAX_RULES_BYTES // len(padding) + 1) + "selections: []\n")
    return path


@pytest.mark.parametrize(
    ("make", "complaint"),
    [
        (fifo, "is not a regular file"),
        (lambda path: Path("/dev/zero"), "is not a regular file"),
        (folder, "is not a regular file"),
        (oversized, "is larger than 1 MiB"),
    ],
)
def test_a_rules_path_that_is_no_small_regular_file_is_refused(
    parsed: Path, tmp_path: Path, make: Any, complaint: str
) -> None:
    rules = make(tmp_path / "rules.yaml")
    assert_refused(run_selector(parsed, tmp_path / "out", rules), complaint)


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 10)}]")
    return "\n".join(lines) + f"\nselections: [{{conditions: {{}}, name: *a{levels}}}]\n"


HOSTILE_RULES = {
    "alias bomb": (billion_laughs(), "more than 100000 values"),
    "alias inside itself": ("selections: &s [*s]\n", "nested deeper than 64 levels"),
    "YAML nested 100,000 deep": ("selections: " + "[" * 100_000, "nested deeper than 64 levels"),
    "JSON nested 100,000 deep": ('{"selections": ' + "[" * 100_000, "nested deeper than 64 levels"),
    "YAML nested 500 deep": (
        "selections: [{conditions: " + "{not: " * 500 + "{}" + "}" * 501 + "]",
        "nested deeper than 64 levels",
    ),
    "YAML decimal of 5,000 digits": (
        "selections: [{conditions: {SeriesNumber: " + "9" * 5000 + "}}]",
        "is not valid YAML",
    ),
    "JSON decimal of 5,000 digits": (
        rules_json({"conditions": {"SeriesNumber": "@"}}).replace('"@"', "9" * 5000),
        "is not valid JSON",
    ),
    "YAML hexadecimal of 5,000 digits": (
        "selections: [{conditions: {SeriesNumber: 0x" + "f" * 5000 + "}}]",
        "a number is out of range",
    ),
    "JSON decimal of 400 digits": (
        rules_json({"conditions": {"SliceThickness": ["@", 3]}}).replace('"@"', "1" * 400),
        "a number is out of range",
    ),
    "YAML infinity": ("selections: [{conditions: {SliceThickness: [0, .inf]}}]", "out of range"),
    "JSON NaN": (rules_json({"conditions": {"EchoTime": float("nan")}}), "out of range"),
}


@pytest.mark.parametrize("name", HOSTILE_RULES)
def test_hostile_rules_are_refused(parsed: Path, tmp_path: Path, name: str) -> None:
    text, complaint = HOSTILE_RULES[name]
    rules = tmp_path / "rules.yaml"
    rules.write_text(text)
    assert_refused(run_selector(parsed, tmp_path / "out", rules), complaint)


KEYS = st.sampled_from(["SeriesNumber", "SliceThickness", "Modality", "any", "all", "not", "x"])
VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=10**300, max_value=10**400).map(lambda n: n * (-1) ** n)
    | st.floats()
    | st.text(max_size=4)
    | st.sampled_from(["CT", "!CT", "(", ">=", "Axial"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(KEYS, VALUES, max_size=4), max_size=3), st.booleans())
def test_any_conditions_are_rules_or_a_rules_error(conditions: list[Any], as_json: bool) -> None:
    import yaml

    document = {"selections": [{"conditions": c, "order_by": ["SeriesNumber"]} for c in conditions]}
    text = json.dumps(document) if as_json else yaml.safe_dump(document)
    try:
        parse_rules(text, "rules")
    except RulesError as error:
        assert "\n" not in error.message


def doctor_metadata(parsed: Path, change: Any) -> None:
    """Rewrite the parser's ``dicom-metadata.json`` text with ``change``."""
    path = parsed / "dicom-metadata.json"
    path.write_text(change(path.read_text()))


NUMBER_RULES = rules_json(
    {"conditions": {"SeriesNumber": [1, ">="]}, "order_by": ["SeriesNumber", "SliceThickness"]},
    {"conditions": {"SeriesNumber": "2", "SliceThickness": [0, 3]}},
)


@pytest.mark.parametrize(
    ("text", "code"),
    [("9" * 400, 0), ("-" + "9" * 400, 0), ("9" * 5000, 2), ("1e400", 2), ("NaN", 2), ("123.5", 0)],
)
def test_any_number_in_the_parser_output_is_compared_or_refused(
    parsed: Path, tmp_path: Path, text: str, code: int
) -> None:
    doctor_metadata(parsed, lambda data: data.replace('"Value": [2]', f'"Value": [{text}]'))
    rules = tmp_path / "rules.json"
    rules.write_text(NUMBER_RULES)
    result = run_selector(parsed, tmp_path / "out", rules)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == code, result.stderr[-3000:]


@pytest.mark.parametrize("depth", [2_000, 100_000])
def test_deeply_nested_parser_output_is_refused(
    parsed: Path, tmp_path: Path, depth: int, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = '{"0040A730": {"vr": "SQ", "Value": [' * depth + "{}" + "]}}" * depth
    element = f'"attributes": {{"0040A730": {{"vr": "SQ", "Value": [{nested}]}},'
    doctor_metadata(parsed, lambda data: data.replace('"attributes": {', element, 1))
    code = main(["--input", str(parsed), "--output", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert code == 2
    assert "nested too deeply" in error
