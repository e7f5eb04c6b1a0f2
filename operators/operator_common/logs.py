"""Logging set-up: human-readable text for terminals, one JSON object per line for containers."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Literal

from operator_common.settings import Option

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


class JsonFormatter(logging.Formatter):
    """Format a record as a single JSON line."""

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
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: str = "INFO", log_format: LogFormat = "text") -> None:
    """Send log records of our packages to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Libraries' warnings become log records in the chosen format, never raw lines on stderr.
    logging.captureWarnings(True)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # it logs each warning it also raises
