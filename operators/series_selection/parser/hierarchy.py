"""Hierarchy: headers -> studies -> series -> instances, with each attribute at its level.

Pure functions. Grouping and ordering use a few values of each header (``HeaderSummary``), so
the full headers need not be held in memory together. An attribute goes as high as it can:
study level for patient and study attributes constant over the study, series level for any
other attribute constant over the series, instance level for the rest (and always
SOPInstanceUID).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from series_selection.common.dictionary import tag_key
from series_selection.common.models import JsonDataset, json_value
from series_selection.parser.reading import decoded_pixel_bytes, finite_number

STUDY_LEVEL_KEYWORDS = (
    # Patient module
    "PatientName", "PatientID", "IssuerOfPatientID", "TypeOfPatientID", "PatientBirthDate",
    "PatientBirthTime", "PatientSex", "OtherPatientIDsSequence", "OtherPatientNames",
    "EthnicGroup", "PatientComments", "PatientSpeciesDescription", "PatientBreedDescription",
    "ResponsiblePerson", "ResponsibleOrganization", "PatientIdentityRemoved",
    "DeidentificationMethod", "DeidentificationMethodCodeSequence", "QualityControlSubject",
    # General Study module
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "IssuerOfAccessionNumberSequence", "StudyDescription",
    "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy", "ProcedureCodeSequence",
    "ReasonForPerformedProcedureCodeSequence", "RequestingService",
    # Patient Study module
    "AdmittingDiagnosesDescription", "PatientAge", "PatientSize", "PatientWeight",
    "Occupation", "AdditionalPatientHistory", "PregnancyStatus", "SmokingStatus",
    "MedicalAlerts", "Allergies", "PatientState", "PatientSexNeutered",
)  # fmt: skip
STUDY_LEVEL_TAGS = frozenset(tag_key(k) for k in STUDY_LEVEL_KEYWORDS)
SOP_INSTANCE_UID = tag_key("SOPInstanceUID")
STUDY_INSTANCE_UID = tag_key("StudyInstanceUID")
SERIES_INSTANCE_UID = tag_key("SeriesInstanceUID")
ROWS = tag_key("Rows")


@dataclass(frozen=True, slots=True)
class HeaderSummary:
    """What grouping, ordering and planning need from one readable file's header."""

    path: str
    """POSIX path relative to the input folder."""
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    instance_number: float
    """``inf`` when absent or not a number."""
    study_date: str | None
    study_time: str | None
    series_number: int | None
    modality: str | None
    series_description: str | None
    has_image: bool
    """Whether the header has Rows (even with an unreadable value): the file holds an image."""
    pixel_bytes: int
    """The pixel data size the header claims (0 when it claims none)."""

    @classmethod
    def of(cls, path: str, attributes: JsonDataset) -> HeaderSummary:
        def text(keyword: str) -> str | None:
            value = json_value(attributes, keyword)
            return None if value is None else str(value)

        series_number = json_value(attributes, "SeriesNumber")
        return cls(
            path=path,
            sop_instance_uid=str(json_value(attributes, "SOPInstanceUID")),
            study_instance_uid=str(json_value(attributes, "StudyInstanceUID")),
            series_instance_uid=str(json_value(attributes, "SeriesInstanceUID")),
            instance_number=finite_number(json_value(attributes, "InstanceNumber"), math.inf),
            study_date=text("StudyDate"),
            study_time=text("StudyTime"),
            series_number=int(series_number) if isinstance(series_number, int | float) else None,
            modality=text("Modality"),
            series_description=text("SeriesDescription"),
            has_image=ROWS in attributes,
            pixel_bytes=_pixel_bytes(attributes),
        )


@dataclass(frozen=True)
class SeriesGroup:
    """The readable files of one series, in instance order."""

    uid: str
    headers: tuple[HeaderSummary, ...]

    @property
    def first(self) -> HeaderSummary:
        return self.headers[0]


@dataclass(frozen=True)
class StudyGroup:
    """The series of one study, in series order."""

    uid: str
    series: tuple[SeriesGroup, ...]


@dataclass(frozen=True)
class Duplicate:
    """A file whose SOPInstanceUID was already taken by ``kept`` (the first by path)."""

    path: str
    kept: str
    sop_instance_uid: str


def group_headers(
    headers: Iterable[HeaderSummary],
) -> tuple[tuple[StudyGroup, ...], tuple[Duplicate, ...]]:
    """Group headers into sorted studies; a repeated SOPInstanceUID is a duplicate, not used."""
    unique: dict[str, HeaderSummary] = {}
    duplicates: list[Duplicate] = []
    for header in sorted(headers, key=lambda h: h.path):
        uid = header.sop_instance_uid
        if uid in unique:
            duplicates.append(Duplicate(header.path, unique[uid].path, uid))
        else:
            unique[uid] = header

    by_study: dict[str, dict[str, list[HeaderSummary]]] = defaultdict(lambda: defaultdict(list))
    for header in unique.values():
        by_study[header.study_instance_uid][header.series_instance_uid].append(header)

    studies = [
        StudyGroup(study_uid, _sorted_series(series_groups))
        for study_uid, series_groups in by_study.items()
    ]
    studies.sort(key=_study_order)
    return tuple(studies), tuple(duplicates)


def _sorted_series(groups: dict[str, list[HeaderSummary]]) -> tuple[SeriesGroup, ...]:
    series = [
        SeriesGroup(uid, tuple(sorted(headers, key=_instance_order)))
        for uid, headers in groups.items()
    ]
    series.sort(key=_series_order)
    return tuple(series)


def common_attributes(
    datasets: Iterable[JsonDataset],
    only: frozenset[str] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, Any]:
    """The attributes present with the same value in every dataset, in tag order."""
    skipped = set(skip)
    found = iter(datasets)
    common = {
        key: value
        for key, value in sorted(next(found).items())
        if key not in skipped and (only is None or key in only)
    }
    for other in found:
        common = {key: value for key, value in common.items() if other.get(key) == value}
    return common


def study_attributes(datasets: Iterable[JsonDataset], uid: str) -> dict[str, Any]:
    """The attributes of a study's own level; StudyInstanceUID always among them."""
    return with_uid(common_attributes(datasets, only=STUDY_LEVEL_TAGS), STUDY_INSTANCE_UID, uid)


def series_attributes(
    datasets: Iterable[JsonDataset], study_attributes: JsonDataset, uid: str
) -> tuple[dict[str, Any], set[str]]:
    """The attributes of a series' own level (SeriesInstanceUID always among them), and the
    keys its instances leave out: those of the study and series levels."""
    excluded = set(study_attributes)
    common = common_attributes(datasets, skip=excluded | {SOP_INSTANCE_UID})
    return with_uid(common, SERIES_INSTANCE_UID, uid), excluded | common.keys()


def with_uid(attributes: dict[str, Any], key: str, uid: str) -> dict[str, Any]:
    """``attributes`` with the UID its files were grouped by: present already, unless the
    files wrote the same UID differently (another VR, say)."""
    if key in attributes:
        return attributes
    return dict(sorted({**attributes, key: {"vr": "UI", "Value": [uid]}}.items()))


def _pixel_bytes(attributes: JsonDataset) -> int:
    def count(keyword: str, default: int) -> int:
        try:
            return max(int(json_value(attributes, keyword)), 0)
        except (TypeError, ValueError, OverflowError):
            return default

    return decoded_pixel_bytes(
        count("Rows", 0),
        count("Columns", 0),
        count("SamplesPerPixel", 1),
        count("NumberOfFrames", 1),
        count("BitsAllocated", 8),
    )


def _shared(values: Iterable[Any]) -> Any:
    """The value when all are equal, else ``None``."""
    distinct = set(values)
    return distinct.pop() if len(distinct) == 1 else None


def _study_order(study: StudyGroup) -> tuple[str, str, str]:
    headers = [h for series in study.series for h in series.headers]
    date = _shared(h.study_date for h in headers) or ""
    time = _shared(h.study_time for h in headers) or ""
    return date, time, study.uid


def _series_order(series: SeriesGroup) -> tuple[float, str]:
    return finite_number(_shared(h.series_number for h in series.headers), math.inf), series.uid


def _instance_order(header: HeaderSummary) -> tuple[float, str, str]:
    return header.instance_number, header.sop_instance_uid, header.path
