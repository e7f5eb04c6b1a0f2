"""Reading DICOM files: the one place that decides when a file without its preamble is still
read, how many bytes pixel data takes, which number a value holds, and which failures are the
file's fault rather than ours."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue

from series_selection.common.errors import DicomReadError

READING_LIBRARIES = ("pydicom", "nibabel", "pylibjpeg", "libjpeg", "openjpeg", "rle")
"""The packages that decode a file's bytes for us: what fails inside them, the file caused."""
PASSED_THROUGH = (DicomReadError, InvalidDicomError, OSError, EOFError, MemoryError, RecursionError)
LITTLE_ENDIAN_GROUPS = (b"\x02\x00", b"\x08\x00")
"""How a file without the 128-byte preamble starts: group 0002 or 0008, little endian."""


def read_header(handle: IO[bytes], defer_size: int | None = None) -> Dataset:
    """The header of an open file, up to its pixel data; ``handle`` is left at the pixel data.
    Values longer than ``defer_size`` bytes are read only when used."""
    return _read(handle, stop_before_pixels=True, defer_size=defer_size)


def read_dataset(path: Path) -> Dataset:
    """The whole file, pixel data included."""
    with path.open("rb") as handle:
        return _read(handle)


def _read(handle: IO[bytes], **options: Any) -> Dataset:
    """A file with its preamble, or without it when it starts with a little-endian header."""
    try:
        return dcmread(handle, **options)
    except InvalidDicomError:
        handle.seek(0)
        start = handle.read(2)
        handle.seek(0)
        if start not in LITTLE_ENDIAN_GROUPS:
            raise
        return dcmread(handle, force=True, **options)


def stored_pixel_bytes(rows: int, columns: int, samples: int, frames: int, bits: int) -> int:
    """Bytes of native pixel data: bit-packed (1-bit images), without the padding byte."""
    return (rows * columns * samples * frames * bits + 7) // 8


def decoded_pixel_bytes(rows: int, columns: int, samples: int, frames: int, bits: int) -> int:
    """Bytes the decoded pixels take in memory: whole bytes per sample (1-bit images unpack)."""
    return rows * columns * samples * frames * max(-(-bits // 8), 1)


def finite_number(value: Any, default: float) -> float:
    """The first number of a DICOM value (a number, a decimal string, or a list of them);
    ``default`` when there is none, when it is not a number, or when it is not finite."""
    if isinstance(value, list | tuple | MultiValue):
        value = next(iter(value), None)
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default


@contextmanager
def file_errors(source: str) -> Iterator[None]:
    """Turn an exception raised inside a decoding library into a ``DicomReadError`` naming
    ``source``: the bytes of the file caused it. Any other exception is a defect of ours and
    passes unchanged (it must fail a test, not become a verdict on the file), as do those that
    already say what happened: not DICOM, unreadable or truncated, out of memory, too deep."""
    try:
        yield
    except PASSED_THROUGH:
        raise
    except Exception as error:
        if not raised_in_library(error):
            raise
        reason = _short(error)
        raise DicomReadError(f"{source}: {reason}" if source else reason) from error


def raised_in_library(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback that is either ours or a decoding
    library's belongs to a library (frames of the standard library or numpy are neither: they
    act for whoever called them)."""
    ours = _package_folder("series_selection")
    libraries = [folder for name in READING_LIBRARIES if (folder := _package_folder(name))]
    frames = []
    trace = error.__traceback__
    while trace is not None:
        frames.append(trace.tb_frame.f_code.co_filename)
        trace = trace.tb_next
    for file_name in reversed(frames):
        if ours and file_name.startswith(ours):
            return False
        if any(file_name.startswith(folder) for folder in libraries):
            return True
    return False


def _package_folder(name: str) -> str | None:
    module = sys.modules.get(name)
    file_name = getattr(module, "__file__", None)
    return str(Path(file_name).parent) + "/" if file_name else None


def _short(error: BaseException) -> str:
    """The error's text on one line (a decoder's reasons may follow on further lines)."""
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (text or type(error).__name__)[:300]
