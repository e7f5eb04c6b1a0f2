"""The console scripts: each command's ``main``, or one line naming the extra it is missing."""

from __future__ import annotations

import importlib
import sys

MISSING_DEPENDENCY = 3
"""The exit code of a command whose extra (its own libraries) is not installed."""


def _run(command: str, package: str, extra: str) -> int:
    try:
        cli = importlib.import_module(f"series_selection.{package}.cli")
    except ModuleNotFoundError as error:
        if error.name is None or error.name.partition(".")[0] == "series_selection":
            raise
        print(
            f"{command}: the Python package {error.name!r} is missing: "
            f"pip install 'dicom-series-selection[{extra}]'",
            file=sys.stderr,
        )
        return MISSING_DEPENDENCY
    exit_code: int = cli.main()
    return exit_code


def dicom_parser() -> int:
    return _run("dicom-parser", "parser", "parser")


def series_selector() -> int:
    return _run("series-selector", "selector", "selector")


def series_report() -> int:
    return _run("series-report", "report", "report")


def series_pipeline() -> int:
    return _run("series-pipeline", "pipeline", "pipeline")


def dicom_receiver() -> int:
    return _run("dicom-receiver", "receiver", "receiver")
