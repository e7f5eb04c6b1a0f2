"""Small input files people hand to a command (rules, a pipeline definition, a configuration),
read so that a hostile one cannot block the command or fill its memory."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class RefusedFileError(ValueError):
    """A file refused before its text is read: not a regular file, or too large."""


def read_small_text(path: Path, limit: int) -> str:
    """The UTF-8 text of the regular file ``path`` of at most ``limit`` bytes.

    It is opened without blocking, so a FIFO or a device is refused rather than waited on or
    read without end. Raises ``RefusedFileError`` (saying "is not a regular file" or "is larger
    than ..."), ``OSError`` or ``UnicodeDecodeError``."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a folder cannot even be wrapped
        os.close(descriptor)
        raise RefusedFileError("is not a regular file")
    with os.fdopen(descriptor, "rb") as file:
        data = file.read(limit + 1)
    if len(data) > limit:
        raise RefusedFileError(f"is larger than {limit >> 20} MiB")
    return data.decode("utf-8")
