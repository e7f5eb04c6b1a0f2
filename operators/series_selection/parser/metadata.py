"""``dicom-metadata.json``: every header, kept on disk during the run, then written one series at
a time, so memory grows with the largest series, not with the number of files."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from series_selection.common.errors import OutputError
from series_selection.common.jsonio import LazyArray, check_output, write_formatted
from series_selection.common.models import DicomMetadata, Instance, JsonDataset, Series, Study
from series_selection.parser.hierarchy import (
    SeriesGroup,
    StudyGroup,
    series_attributes,
    study_attributes,
)

SCHEMA = "dicom-metadata"
STUDY_SCHEMA = "/properties/studies/items"
SERIES_SCHEMA = f"{STUDY_SCHEMA}/properties/series/items"
SERIES_ATTRIBUTES_SCHEMA = f"{SERIES_SCHEMA}/properties/attributes"
INSTANCE_SCHEMA = f"{SERIES_SCHEMA}/properties/instances/items"


class HeaderStore:
    """Full headers (compact DICOM JSON text) by file path, in an unnamed temporary file in
    ``folder``: it disappears when closed, or when the process dies."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        try:
            self._file = tempfile.TemporaryFile(dir=folder, buffering=0)  # noqa: SIM115 - closed on exit
        except OSError as error:
            raise self._error(error) from error
        self._places: dict[str, tuple[int, int]] = {}
        self._end = 0

    def __enter__(self) -> HeaderStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._file.close()

    def put(self, path: str, text: bytes) -> None:
        try:
            if self._file.write(text) != len(text):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as error:  # a full disk, say
            raise self._error(error) from error
        self._places[path] = (self._end, len(text))
        self._end += len(text)

    def _error(self, error: OSError) -> OutputError:
        reason = error.strerror or str(error)
        folder = self._folder
        return OutputError(f"cannot keep the headers in a temporary file in {folder}: {reason}")

    def get(self, path: str) -> dict[str, Any]:
        offset, length = self._places[path]
        attributes: dict[str, Any] = json.loads(os.pread(self._file.fileno(), length, offset))
        return attributes


def write_metadata(path: Path, studies: Sequence[StudyGroup], store: HeaderStore) -> None:
    """Write the hierarchy of ``studies`` (the ``DicomMetadata`` model's JSON), each part
    checked against its part of the schema, then formatted and written before the next is made.

    Each study's headers are read twice: once for its own attributes, then series by series.
    """
    document = DicomMetadata.json_entry(LazyArray(_studies(path, studies, store)))
    write_formatted(path, document)


def _studies(path: Path, studies: Sequence[StudyGroup], store: HeaderStore) -> Iterator[Any]:
    for study in studies:
        headers = (store.get(h.path) for series in study.series for h in series.headers)
        attributes = study_attributes(headers, study.uid)
        check_output(Study.json_entry(attributes, []), path, SCHEMA, STUDY_SCHEMA)
        series = (_series(path, series, attributes, store) for series in study.series)
        yield Study.json_entry(attributes, LazyArray(series))


def _series(
    path: Path, series: SeriesGroup, study_level: JsonDataset, store: HeaderStore
) -> dict[str, Any]:
    """One series' JSON, its instances made one at a time as they are written: the series'
    headers are read twice, never all held at once."""
    headers = (store.get(header.path) for header in series.headers)
    attributes, excluded = series_attributes(headers, study_level, series.uid)
    check_output(attributes, path, SCHEMA, SERIES_ATTRIBUTES_SCHEMA)
    return Series.json_entry(attributes, LazyArray(_instances(path, series, excluded, store)))


def _instances(
    path: Path, series: SeriesGroup, excluded: Collection[str], store: HeaderStore
) -> Iterator[dict[str, Any]]:
    for header in series.headers:
        own = {k: v for k, v in store.get(header.path).items() if k not in excluded}
        instance = Instance.json_entry(header.path, own)
        check_output(instance, path, SCHEMA, INSTANCE_SCHEMA)
        yield instance
