"""Every error of the project, in two families.

**User errors** (``PipelineError``) are what a user can cause or fix: arguments, input folders,
rules, outputs that cannot be written. A command turns each into one log line and its exit code
(``common.cli``), never a traceback.

**Domain errors** subclass the builtin that fits (``ValueError``), as nibabel's ``AffineError``
does: a file, value or series that cannot be used. The operator that raises one catches it and
reports it as the reason (a file skipped, a volume refused); none carries an exit code.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Root of every error a user can cause or fix; never shown as a traceback."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InputError(PipelineError):
    """Unusable input folder, file or command-line arguments."""


class RulesError(PipelineError):
    """Selection rules that cannot be loaded or do not validate."""


class SelectionError(PipelineError):
    """A required selection matched no series."""


class OutputError(PipelineError):
    """Outputs that cannot be written or do not match their schema."""


class OperatorError(PipelineError):
    """An operator of a pipeline ended with a non-zero exit status."""

    def __init__(self, operator: str, status: int) -> None:
        super().__init__(f"operator {operator!r} failed with exit code {status}")
        self.operator = operator
        self.status = status


class ConversionError(ValueError):
    """A file or series that cannot become a geometrically correct volume, and why."""


class GeometryError(ConversionError):
    """Positions, orientations or spacings that define no regular grid in patient space."""


class DicomReadError(ValueError):
    """Bytes of a file that a decoding library refused: the file's fault, not a defect."""


class NestingError(ValueError):
    """A header nested more deeply than it may be encoded."""


class InstanceRefusedError(ValueError):
    """An instance the receiver does not keep; ``status`` is the C-STORE failure status that
    answers the sender."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
