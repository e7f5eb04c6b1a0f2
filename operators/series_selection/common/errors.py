"""One error hierarchy: each error carries a message for the user and a process exit code."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error a user can cause or fix; never shown as a traceback."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(PipelineError):
    """Unusable input folder, file or command-line arguments."""

    exit_code = 2


class RulesError(PipelineError):
    """Selection rules that cannot be loaded or do not validate."""

    exit_code = 2


class ConversionError(PipelineError):
    """A series that cannot be turned into a geometrically correct volume."""

    exit_code = 3


class SelectionError(PipelineError):
    """A required selection matched no series."""

    exit_code = 4


class OutputError(PipelineError):
    """Outputs that cannot be written or do not match their schema."""

    exit_code = 5


class OperatorError(PipelineError):
    """An operator exited with a non-zero code; the pipeline exits with the same code."""

    def __init__(self, operator: str, exit_code: int) -> None:
        super().__init__(f"operator {operator!r} failed with exit code {exit_code}")
        self.exit_code = exit_code
