"""Frozen records for what the operators exchange: the DICOM hierarchy and the volumes.

``attributes`` are DICOM JSON Model datasets (PS3.18 Annex F): ``{"GGGGEEEE": {"vr": ...,
"Value": [...]}}``. They are what ``dicom-metadata.json`` holds, so both operators share them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from typing import Any

from pydicom.datadict import tag_for_keyword

JsonDataset = Mapping[str, Any]


@cache
def tag_key(keyword: str) -> str:
    """The DICOM JSON key ("GGGGEEEE") of a keyword such as ``"Modality"``."""
    tag = tag_for_keyword(keyword)
    if tag is None:
        raise KeyError(f"{keyword!r} is not a DICOM keyword")
    return f"{tag:08X}"


def json_values(dataset: JsonDataset, keyword: str) -> list[Any] | None:
    """The ``Value`` list of ``keyword`` in a JSON dataset; ``None`` when the attribute is absent.

    An attribute that is present but empty gives ``[]``; a person name gives its Alphabetic form.
    """
    element = dataset.get(tag_key(keyword))
    if element is None:
        return None
    values = element.get("Value", [])
    if element.get("vr") == "PN":
        return [v.get("Alphabetic", "") if isinstance(v, dict) else v for v in values]
    return list(values)


def json_value(dataset: JsonDataset, keyword: str) -> Any:
    """The first value of ``keyword``, or ``None`` when absent or empty."""
    values = json_values(dataset, keyword)
    return values[0] if values else None


@dataclass(frozen=True)
class Instance:
    """One DICOM file: its path relative to the parser's input and its instance-level attributes."""

    path: str
    attributes: JsonDataset

    @property
    def sop_instance_uid(self) -> str:
        return str(json_value(self.attributes, "SOPInstanceUID"))


@dataclass(frozen=True)
class Series:
    """A series: the attributes constant over its instances, and the instances (sorted)."""

    attributes: JsonDataset
    instances: tuple[Instance, ...]

    @property
    def uid(self) -> str:
        return str(json_value(self.attributes, "SeriesInstanceUID"))


@dataclass(frozen=True)
class Study:
    """A study: patient and study attributes, and its series (sorted)."""

    attributes: JsonDataset
    series: tuple[Series, ...]

    @property
    def uid(self) -> str:
        return str(json_value(self.attributes, "StudyInstanceUID"))


def hierarchy_to_json(studies: tuple[Study, ...]) -> dict[str, Any]:
    """The ``dicom-metadata.json`` document for ``studies``."""
    return {
        "studies": [
            {
                "attributes": dict(study.attributes),
                "series": [
                    {
                        "attributes": dict(series.attributes),
                        "instances": [
                            {"attributes": dict(i.attributes), "path": i.path}
                            for i in series.instances
                        ],
                    }
                    for series in study.series
                ],
            }
            for study in studies
        ]
    }


def hierarchy_from_json(document: Mapping[str, Any]) -> tuple[Study, ...]:
    """The studies of a (schema-valid) ``dicom-metadata.json`` document."""
    return tuple(
        Study(
            attributes=study["attributes"],
            series=tuple(
                Series(
                    attributes=series["attributes"],
                    instances=tuple(
                        Instance(path=i["path"], attributes=i["attributes"])
                        for i in series["instances"]
                    ),
                )
                for series in study["series"]
            ),
        )
        for study in document["studies"]
    )


@dataclass(frozen=True)
class Rescale:
    """The modality rescale of a volume and how the file stores it."""

    slope: float | None
    """``None`` when the rescale differs between frames (then it is always applied)."""
    intercept: float | None
    stored_as: str  # "applied", "nifti_scl" or "identity"


@dataclass(frozen=True)
class VolumeEntry:
    """One volume file, as listed in ``series-images.json`` (see its schema for each field)."""

    path: str
    format: str
    label: str
    distinguished_by: Mapping[str, Any]
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]
    orientation: str
    dtype: str
    rescale: Rescale
    instance_count: int
    frame_count: int
    channels: int = 1
    resampled: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    study_instance_uid: str = ""
    """The study of the series: one SeriesInstanceUID may (wrongly) appear in two studies."""
    previews: Mapping[str, str] | None = None
    """Plane -> PNG picture of the volume; ``None`` when none were written."""

    def to_json(self) -> dict[str, Any]:
        entry = asdict(self)
        entry["StudyInstanceUID"] = entry.pop("study_instance_uid")
        entry["distinguished_by"] = dict(self.distinguished_by)
        entry["shape"] = list(self.shape)
        entry["spacing"] = list(self.spacing)
        entry["origin"] = list(self.origin)
        entry["direction"] = [list(axis) for axis in self.direction]
        entry["notes"] = list(self.notes)
        if self.previews is None:
            del entry["previews"]
        else:
            entry["previews"] = dict(self.previews)
        return entry

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> VolumeEntry:
        return cls(
            path=entry["path"],
            format=entry["format"],
            label=entry["label"],
            distinguished_by=dict(entry["distinguished_by"]),
            shape=tuple(entry["shape"]),
            spacing=(entry["spacing"][0], entry["spacing"][1], entry["spacing"][2]),
            origin=(entry["origin"][0], entry["origin"][1], entry["origin"][2]),
            direction=tuple((a[0], a[1], a[2]) for a in entry["direction"]),
            orientation=entry["orientation"],
            dtype=entry["dtype"],
            rescale=Rescale(**entry["rescale"]),
            instance_count=entry["instance_count"],
            frame_count=entry.get("frame_count", entry["instance_count"]),
            channels=entry.get("channels", 1),
            resampled=entry["resampled"],
            notes=tuple(entry.get("notes", ())),
            study_instance_uid=entry.get("StudyInstanceUID", ""),
            previews=entry.get("previews"),
        )
