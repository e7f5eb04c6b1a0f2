"""Scan: find every file under the input folder and read its DICOM header, or say why not."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from series_selection.common.errors import DicomReadError, NestingError
from series_selection.common.models import JsonDataset, json_value
from series_selection.parser.bounds import default_max_series_bytes, inflated_size, size_text
from series_selection.parser.dicom_json import (
    BULK_DATA_THRESHOLD,
    TOO_DEEP,
    dataset_to_json,
    deferred_element,
)
from series_selection.parser.hierarchy import HeaderSummary
from series_selection.parser.reading import file_errors, read_header, stored_pixel_bytes

log = logging.getLogger(__name__)

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
REQUIRED_UIDS = ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
UNDEFINED = 0xFFFFFFFF
DIRECTORY_RECORD_SEQUENCE = 0x00041220
DICOMDIR = "DICOMDIR (media storage directory): not an image; the files it lists are scanned"


@dataclass(frozen=True)
class ScannedFile:
    """One input file: its header (summary and compact DICOM JSON text), or the reason it
    cannot be used."""

    path: str
    """POSIX path relative to the input folder."""
    summary: HeaderSummary | None = None
    header: bytes | None = None
    skip_reason: str | None = None


def list_files(root: Path) -> Iterator[tuple[str, str | None]]:
    """Every entry under ``root`` that is not a plain folder, sorted, as (relative path, problem).

    Symbolic links are never followed (a link may point outside the input or form a loop);
    they are listed with that as their problem, and so is a folder that cannot be read.
    """
    unreadable: list[OSError] = []
    for folder, dirs, files in os.walk(root, onerror=unreadable.append, followlinks=False):
        yield from _unreadable_folders(root, unreadable)
        dirs.sort()
        here = Path(folder)
        for name in sorted(files + [d for d in dirs if (here / d).is_symlink()]):
            full = here / name
            relative = full.relative_to(root).as_posix()
            if full.is_symlink():
                yield relative, "symbolic link: not followed"
            elif not full.is_dir() and not full.is_file():
                yield relative, "not a regular file"
            else:
                yield relative, None
    yield from _unreadable_folders(root, unreadable)


def _unreadable_folders(root: Path, errors: list[OSError]) -> Iterator[tuple[str, str]]:
    """The folders ``os.walk`` could not list, as (relative path, problem); empties ``errors``."""
    for error in errors:
        relative = Path(error.filename).relative_to(root).as_posix()
        yield relative, f"folder not readable ({error.strerror}): the files in it are not scanned"
    errors.clear()


def scan_file(root: Path, relative: str, max_bytes: int | None = None) -> ScannedFile:
    """Read the header of ``root/relative`` without its pixel data; a deflated file is read only
    when it inflates to at most ``max_bytes`` (by default ``default_max_series_bytes()``)."""
    path = root / relative
    if max_bytes is None:
        max_bytes = default_max_series_bytes()
    try:
        size = path.stat().st_size
        if size == 0:
            return ScannedFile(relative, skip_reason="empty file")
        with path.open("rb") as handle:
            inflated = inflated_size(handle, max_bytes)
            if inflated is not None and inflated > max_bytes:
                return ScannedFile(relative, skip_reason=_too_inflated(max_bytes))
            with file_errors(""):
                dataset = read_header(handle, BULK_DATA_THRESHOLD)
            pixel_data_offset = handle.tell()
        problem = _structure_problem(dataset, size if inflated is None else inflated)
        with file_errors(""):
            attributes = {} if problem else dataset_to_json(dataset, relative)
            problem = problem or _content_problem(dataset, attributes, size - pixel_data_offset)
        if problem:
            return ScannedFile(relative, skip_reason=problem)
        text = json.dumps(attributes, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        return ScannedFile(relative, HeaderSummary.of(relative, attributes), text.encode())
    except InvalidDicomError:
        return ScannedFile(relative, skip_reason="not DICOM")
    except PermissionError:
        return ScannedFile(relative, skip_reason="unreadable: permission denied")
    except (OSError, EOFError) as error:  # the reason, not the full path OSError names
        reason = getattr(error, "strerror", None) or _short(error)
        return ScannedFile(relative, skip_reason=f"unreadable or truncated header: {reason}")
    except (RecursionError, NestingError):  # pydicom reads nested sequences recursively
        return ScannedFile(relative, skip_reason=f"malformed DICOM header: {TOO_DEEP}")
    except DicomReadError as error:  # what pydicom refused; a defect of ours is not caught
        return ScannedFile(relative, skip_reason=f"malformed DICOM header: {error}")


def _too_inflated(limit: int) -> str:
    return (
        f"deflated data set inflates to more than {size_text(limit)}, the limit set by the "
        "memory available (--max-series-bytes): not read"
    )


def _structure_problem(dataset: Dataset, file_size: int) -> str | None:
    """Why the header cannot be used, from its structure alone (no value is decoded).
    ``file_size`` is that of the data the header was read from (inflated, if deflated)."""
    if DIRECTORY_RECORD_SEQUENCE in dataset:
        return DICOMDIR
    for tag in dataset.keys():  # noqa: SIM118 - iterating a Dataset yields elements
        raw = deferred_element(dataset, tag)
        if raw is not None and raw.length != UNDEFINED:
            overrun = raw.value_tell + raw.length - file_size
            if overrun > 0:
                element = f"({tag.group:04X},{tag.element:04X})"
                return f"truncated: {element} runs {overrun} bytes past the end of the file"
    return None


def _content_problem(
    dataset: Dataset, attributes: JsonDataset, bytes_after_header: int
) -> str | None:
    """Why the header cannot be used, from its values."""
    if json_value(attributes, "SOPClassUID") == MEDIA_STORAGE_DIRECTORY:
        return DICOMDIR
    for keyword in REQUIRED_UIDS:
        if not str(json_value(attributes, keyword) or "").strip():
            return f"no {keyword}: not a DICOM composite instance"
    missing = _missing_pixel_bytes(dataset, attributes, bytes_after_header)
    if missing:
        return f"truncated: pixel data is {missing} bytes short"
    return None


def _missing_pixel_bytes(dataset: Dataset, attributes: JsonDataset, bytes_after_header: int) -> int:
    """How many bytes of native (uncompressed) pixel data the file lacks; 0 when complete."""
    transfer_syntax = UID(getattr(dataset.file_meta, "TransferSyntaxUID", "1.2.840.10008.1.2"))
    if not transfer_syntax.is_transfer_syntax or transfer_syntax.is_encapsulated:
        return 0
    if transfer_syntax.is_deflated or json_value(attributes, "Rows") is None:
        return 0
    try:
        expected = stored_pixel_bytes(
            int(json_value(attributes, "Rows")),
            int(json_value(attributes, "Columns")),
            int(json_value(attributes, "SamplesPerPixel") or 1),
            int(json_value(attributes, "NumberOfFrames") or 1),
            int(json_value(attributes, "BitsAllocated")),
        )
    except (TypeError, ValueError, OverflowError):  # missing or not whole: nothing to check
        return 0
    element_header = (
        8  # tag + length; explicit VR OB/OW adds 4 more, so this errs towards "complete"
    )
    return max(0, expected + element_header - max(bytes_after_header, 0))


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:200]
