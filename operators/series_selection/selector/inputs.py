"""The parser's output folder as candidates: each image series with its volumes and facts."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from series_selection.common.dictionary import tag_key
from series_selection.common.errors import InputError
from series_selection.common.jsonio import read_json
from series_selection.common.models import (
    METADATA_FILE,
    SERIES_IMAGES_FILE,
    DicomMetadata,
    Series,
    SeriesImages,
    Study,
    VolumeEntry,
    element_values,
    json_value,
    series_label,
    value_text,
)
from series_selection.selector.matching import Facts, Values, as_number


@dataclass(frozen=True)
class Candidate:
    """One series the rules may choose, with its study and volumes (none for non-image series)."""

    study: Study
    series: Series
    volumes: tuple[VolumeEntry, ...]
    facts: Facts

    @cached_property
    def number(self) -> int | float | str | None:
        """The SeriesNumber, ``None`` when absent (as text when it is no number)."""
        number = json_value(self.series.attributes, "SeriesNumber")
        if isinstance(number, int | float) and not isinstance(number, bool):
            return number
        return text_or_none(number)

    @cached_property
    def description(self) -> str | None:
        """The SeriesDescription, ``None`` when absent."""
        return text_or_none(json_value(self.series.attributes, "SeriesDescription"))

    @property
    def modality(self) -> str | None:
        """The Modality, ``None`` when absent."""
        return text_or_none(json_value(self.series.attributes, "Modality"))

    @cached_property
    def label(self) -> str:
        """The series as people name it: its number and description (``#2 'Abd 1.25mm'``)."""
        return series_label(self.number, self.description, self.series.uid)

    @property
    def study_order(self) -> tuple[str, str, str]:
        """Where the study comes among studies: by date, time, then UID."""
        study = self.study.attributes
        date, time = json_value(study, "StudyDate"), json_value(study, "StudyTime")
        return text_or_none(date) or "", text_or_none(time) or "", self.study.uid

    @property
    def series_order(self) -> tuple[bool, float, str]:
        """Where the series comes within its study: by SeriesNumber (none last), then UID."""
        number = as_number(self.number)
        return number is None, number or 0.0, self.series.uid


def text_or_none(value: Any) -> str | None:
    """A value that names a series in the outputs, which take text there: any other value (a
    number, or an object or array, which JSON allows) as its text."""
    return None if value is None else value_text(value)


def read_parser_output(folder: Path, keywords: Iterable[str]) -> tuple[Candidate, ...]:
    """Every series of ``folder``'s ``dicom-metadata.json``, with facts for ``keywords``.

    Volume paths are checked (``InputFolder.located``) when a volume is used, i.e. placed or
    referred to.
    """
    if not folder.is_dir():
        raise InputError(f"input folder {folder} does not exist or is not a folder")
    metadata = DicomMetadata.from_json(read_json(folder / METADATA_FILE, "dicom-metadata"))
    volumes = SeriesImages.from_json(
        read_json(folder / SERIES_IMAGES_FILE, "series-images")
    ).volumes
    wanted = tuple(sorted(set(keywords)))
    candidates = []
    for study in metadata.studies:
        for series in study.series:
            own = tuple(
                v for v in volumes.get(series.uid, ()) if v.study_instance_uid in ("", study.uid)
            )
            candidates.append(Candidate(study, series, own, facts_of(study, series, wanted, own)))
    return tuple(candidates)


def facts_of(
    study: Study, series: Series, keywords: Iterable[str], volumes: tuple[VolumeEntry, ...] = ()
) -> Facts:
    """The values of ``keywords`` for ``series``: series level, else study level, else instances.

    An object or array among the values (valid JSON, though no DICOM value but a sequence's)
    is taken as its text, so that facts can be told apart by hashing.
    """
    series_attributes, study_attributes = series.attributes, study.attributes
    values: dict[str, tuple[Values, ...]] = {}
    for keyword in keywords:
        tag = tag_key(keyword)
        element = series_attributes.get(tag)
        if element is None:
            element = study_attributes.get(tag)
        if element is None:
            values[keyword] = _per_instance(series, tag)
            continue
        found = element_values(element)
        try:
            hash(found)
        except TypeError:
            found = _as_text(found)
        values[keyword] = (found,)
    return Facts(values, frozenset([v.orientation for v in volumes]))


def _per_instance(series: Series, tag: str) -> tuple[Values, ...]:
    """The distinct values of an attribute over the instances (``((),)`` when none has it)."""
    distinct: dict[Values, None] = {}
    for instance in series.instances:
        element = instance.attributes.get(tag)
        distinct[() if element is None else _as_text(element_values(element))] = None
    return tuple(distinct) if distinct else ((),)


def _as_text(values: Values) -> Values:
    """``values`` with each object or array among them as its text."""
    return tuple([value_text(v) if isinstance(v, dict | list) else v for v in values])


class InputFolder:
    """The parser's output folder, whose ``series-images.json`` lists paths relative to it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._inside = os.path.realpath(folder).rstrip(os.sep) + os.sep
        self._resolved_folders: dict[str, str] = {}

    def located(self, relative: str) -> str:
        """Where the file ``relative`` is, a symbolic link followed, if that is inside the
        folder; else ``InputError``."""
        if (
            not relative
            or relative[0] == "/"
            or "\\" in relative
            or "\0" in relative  # no file name holds one
            or ".." in relative.split("/")
        ):
            raise InputError(
                f"{SERIES_IMAGES_FILE} lists {relative!r}, which is no relative path inside "
                "the input folder"
            )
        path = f"{self.folder}/{relative}"
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            mode = 0
        if stat.S_ISLNK(mode):
            located = os.path.realpath(path)
            is_file = Path(located).is_file()
        else:  # each folder is resolved once: the volumes share a few
            parent, name = os.path.split(path)
            folder = self._resolved_folders.get(parent)
            if folder is None:
                folder = self._resolved_folders[parent] = os.path.realpath(parent)
            located = f"{folder}/{name}"
            is_file = stat.S_ISREG(mode)
        if not located.startswith(self._inside):
            raise InputError(
                f"{SERIES_IMAGES_FILE} lists {relative!r}, which leads outside {self.folder}"
            )
        if not is_file:
            raise InputError(
                f"{SERIES_IMAGES_FILE} lists {relative!r}, which is not a file in {self.folder}"
            )
        return located


def series_identity(candidate: Candidate) -> dict[str, Any]:
    """What names a series in the outputs: its UIDs, number and description."""
    return {
        "StudyInstanceUID": candidate.study.uid,
        "SeriesInstanceUID": candidate.series.uid,
        "SeriesNumber": candidate.number,
        "SeriesDescription": candidate.description,
    }
