"""Logging set-up: human-readable text for terminals, one JSON object per line for containers."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

from series_selection.common.settings import Option

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_OPTIONS = (
    Option("--log-format", "LOG_FORMAT", "text", "log line format", choices=LOG_FORMATS),
    Option(
        "--log-level",
        "LOG_LEVEL",
        "INFO",
        "least severe level logged (any case)",
        choices=LOG_LEVELS,
        type=str.upper,
    ),
)
"""The logging options every command takes."""


CONTROL_ESCAPES = {
    code: chr(code).encode("unicode_escape").decode("ascii")
    for code in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)
}
"""C0 and C1 control characters, DEL and the Unicode line and paragraph separators, as Python
writes them escaped (``\\n``, ``\\x1b``, ``\\u2028``): raw, text from DICOM files or libraries
could start forged log lines or change the terminal's colours."""
JSON_ESCAPES = {code: f"\\u{code:04x}" for code in CONTROL_ESCAPES if code >= 0x7F}
"""Those that ``json.dumps`` leaves raw (it escapes C0 itself), as JSON escapes."""


class TextFormatter(logging.Formatter):
    """Format a record as a single line for people: control characters and line breaks, also
    those of a multi-line message or a traceback, are escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        return super().format(record).rstrip().translate(CONTROL_ESCAPES)


class JsonFormatter(logging.Formatter):
    """Format a record as a single JSON line, every control character escaped."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False).translate(JSON_ESCAPES)


def setup_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Send log records of our packages to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    if level.upper() != "DEBUG":
        handler.addFilter(_not_a_library_traceback)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' warnings become log records in the chosen format, never raw lines on stderr.
    logging.captureWarnings(True)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # it logs each warning it also raises


def _not_a_library_traceback(record: logging.LogRecord) -> bool:
    """Drop a library's record of an exception (pydicom logs a decoder's failure, traceback and
    all, before raising it): the error is raised too, and said where it is handled. Shown at
    the debug level."""
    return record.exc_info is None or record.name.split(".")[0] == PACKAGE


PACKAGE = __name__.split(".")[0]
