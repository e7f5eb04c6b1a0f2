"""Hierarchy: headers -> studies -> series -> instances, with each attribute at its level.

Pure functions. An attribute goes as high as it can: study level for patient and study
attributes constant over the study, series level for any other attribute constant over the
series, instance level for the rest (and always SOPInstanceUID).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from operator_common.models import Instance, JsonDataset, Series, Study, json_value, tag_key

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


@dataclass(frozen=True)
class Header:
    """A readable DICOM file: its path relative to the input and its full header (DICOM JSON)."""

    path: str
    attributes: JsonDataset


@dataclass(frozen=True)
class Duplicate:
    """A file whose SOPInstanceUID was already taken by ``kept`` (the first by path)."""

    path: str
    kept: str
    sop_instance_uid: str


def build_hierarchy(headers: Iterable[Header]) -> tuple[tuple[Study, ...], tuple[Duplicate, ...]]:
    """Group headers into sorted studies; a repeated SOPInstanceUID is a duplicate, not used."""
    unique: dict[str, Header] = {}
    duplicates: list[Duplicate] = []
    for header in sorted(headers, key=lambda h: h.path):
        uid = str(json_value(header.attributes, "SOPInstanceUID"))
        if uid in unique:
            duplicates.append(Duplicate(header.path, unique[uid].path, uid))
        else:
            unique[uid] = header

    by_study: dict[str, dict[str, list[Header]]] = defaultdict(lambda: defaultdict(list))
    for header in unique.values():
        study_uid = str(json_value(header.attributes, "StudyInstanceUID"))
        series_uid = str(json_value(header.attributes, "SeriesInstanceUID"))
        by_study[study_uid][series_uid].append(header)

    studies = [_study(series_groups) for series_groups in by_study.values()]
    studies.sort(key=_study_order)
    return tuple(studies), tuple(duplicates)


def _study(series_groups: Mapping[str, list[Header]]) -> Study:
    members = [h.attributes for group in series_groups.values() for h in group]
    study_attributes = common_attributes(members, only=STUDY_LEVEL_TAGS)
    series = [_series(group, exclude=study_attributes.keys()) for group in series_groups.values()]
    series.sort(key=_series_order)
    return Study(attributes=study_attributes, series=tuple(series))


def _series(headers: Sequence[Header], exclude: Iterable[str]) -> Series:
    excluded = set(exclude)
    series_attributes = common_attributes(
        [h.attributes for h in headers], skip=excluded | {SOP_INSTANCE_UID}
    )
    excluded |= series_attributes.keys()
    instances = [
        Instance(
            path=h.path,
            attributes={k: v for k, v in h.attributes.items() if k not in excluded},
        )
        for h in headers
    ]
    instances.sort(key=_instance_order)
    return Series(attributes=series_attributes, instances=tuple(instances))


def common_attributes(
    datasets: Sequence[JsonDataset],
    only: frozenset[str] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, Any]:
    """The attributes present with the same value in every dataset, in tag order."""
    skipped = set(skip)
    first, rest = datasets[0], datasets[1:]
    return {
        key: value
        for key, value in sorted(first.items())
        if key not in skipped
        and (only is None or key in only)
        and all(other.get(key) == value for other in rest)
    }


def _number(dataset: JsonDataset, keyword: str) -> float:
    value = json_value(dataset, keyword)
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _study_order(study: Study) -> tuple[str, str, str]:
    attributes = study.attributes
    date = json_value(attributes, "StudyDate") or ""
    time = json_value(attributes, "StudyTime") or ""
    return str(date), str(time), study.uid


def _series_order(series: Series) -> tuple[float, str]:
    return _number(series.attributes, "SeriesNumber"), series.uid


def _instance_order(instance: Instance) -> tuple[float, str, str]:
    return _number(instance.attributes, "InstanceNumber"), instance.sop_instance_uid, instance.path
