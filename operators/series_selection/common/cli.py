"""What every operator's ``main`` shares: running with user errors turned into exit codes."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from importlib import metadata

from series_selection.common.errors import (
    InputError,
    OperatorError,
    OutputError,
    PipelineError,
    RulesError,
    SelectionError,
)

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
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        version = "unknown (not installed)"
    parser.add_argument("--version", action="version", version=f"%(prog)s {version}")


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
