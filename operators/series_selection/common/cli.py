"""What every command's ``main`` shares: its command line, its logging, and user errors turned
into exit codes."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence
from typing import Any

from series_selection.common.errors import (
    InputError,
    OperatorError,
    OutputError,
    PipelineError,
    RulesError,
    SelectionError,
)
from series_selection.common.logs import setup_logging
from series_selection.common.settings import Option, resolve

log = logging.getLogger(__name__)

EXIT_CODES: dict[type[PipelineError], int] = {
    InputError: 2,
    RulesError: 2,
    SelectionError: 4,
    OutputError: 5,
}
"""The process exit code of each kind of user error; 0 is success, 130 an interruption."""
INTERRUPTED = 130


DISTRIBUTION = "dicom-series-selection"


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: the command's name and the installed distribution's version."""
    parser.add_argument("--version", action=_Version, help="show the version and exit")


class _Version(argparse.Action):
    """Looks the version up only when asked: importing ``importlib.metadata`` takes longer than
    a small selection."""

    def __init__(self, option_strings: Sequence[str], dest: str, help: str) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from importlib import metadata

        try:
            version = metadata.version(DISTRIBUTION)
        except metadata.PackageNotFoundError:  # run from a source tree that is not installed
            version = "unknown (not installed)"
        print(f"{parser.prog} {version}")
        parser.exit()


def exit_code(error: PipelineError) -> int:
    """The exit code a command ends with for ``error``: a failed operator's own status."""
    if isinstance(error, OperatorError):
        return error.status
    return next(code for kind, code in EXIT_CODES.items() if isinstance(error, kind))


def run_reporting_errors(job: Callable[[], int]) -> int:
    """Run ``job``; a ``PipelineError`` becomes one log line and its exit code, not a traceback."""
    try:
        return job()
    except PipelineError as error:
        log.error("%s", error.message)
        return exit_code(error)
    except KeyboardInterrupt:
        log.error("interrupted")
        return INTERRUPTED


Work = Callable[[argparse.Namespace, dict[str, Any]], int]
"""What a command does with its arguments and its settings (see ``resolve``); its exit code."""


def run_command(
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    options: Sequence[Option],
    work: Work,
) -> int:
    """Parse ``argv`` (a bad command line: argparse's message and exit code), log as the
    settings say (``log_level``, ``log_format``), then run ``work`` with user errors turned
    into one log line and their exit code (``run_reporting_errors``)."""
    try:
        arguments = parser.parse_args(argv)
    except SystemExit as exit_request:
        return int(exit_request.code or 0)
    setup_logging()

    def job() -> int:
        settings = resolve(arguments, options)
        setup_logging(settings["log_level"], settings["log_format"])
        return work(arguments, settings)

    return run_reporting_errors(job)
