"""The files the operators exchange: their names, and one frozen, typed model of each JSON file
with its ``to_json`` and ``from_json`` (the schemas in ``schemas/`` say what each field may
hold; ``to_json`` gives the fields in the order the files have them).

- ``dicom-metadata.json``: ``DicomMetadata`` -> ``Study`` -> ``Series`` -> ``Instance``;
- ``series-images.json``: ``SeriesImages`` -> ``VolumeEntry`` -> ``Rescale``;
- ``selected-images.json``: ``SelectedImages`` -> ``SelectionImages`` -> ``ChosenSeries`` ->
  ``ImageEntry``.

``attributes`` are DICOM JSON Model datasets (PS3.18 Annex F): ``{"GGGGEEEE": {"vr": ...,
"Value": [...]}}``. The text of every file is made by ``jsonio.json_write``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from series_selection.common.dictionary import tag_key
from series_selection.common.jsonio import LazyArray

METADATA_FILE = "dicom-metadata.json"
SERIES_IMAGES_FILE = "series-images.json"
REPORT_FILE = "parse-report.json"
SELECTED_IMAGES_FILE = "selected-images.json"
EXPLAIN_FILE = "selection-explain.json"
VOLUME_FORMATS = ("mhd", "nii", "nii.gz")
"""The volume file formats the parser writes (``--format``)."""
DEFAULT_VOLUME_FORMAT = "nii.gz"
FORMAT_ENV = "DICOM_PARSER_FORMAT"
"""The parser's volume format, as a pipeline sets it."""
EXPLAIN_ENV = "SERIES_SELECTOR_EXPLAIN"
"""Set to 1, the selector prints its explanation table (``--explain``)."""
RULES_BASE64_ENV = "NVIDIA_CLARA_SELECTION_RULES_BASE64"
"""The selection rules, base64-encoded: how a pipeline hands them to the selector."""
RULES_FILE_ENV = "NVIDIA_CLARA_SELECTION_RULES_FILE"
"""The selection rules file, when no base64 rules are given."""

JsonDataset = Mapping[str, Any]
JsonArray = list[Any] | LazyArray
"""The JSON of a model's children: a list, or a ``LazyArray`` for a writer that streams them."""


def json_values(dataset: JsonDataset, keyword: str) -> list[Any] | None:
    """The ``Value`` list of ``keyword`` in a JSON dataset; ``None`` when the attribute is absent.

    An attribute that is present but empty gives ``[]``; a person name gives its Alphabetic form.
    """
    element = dataset.get(tag_key(keyword))
    return None if element is None else list(element_values(element))


def element_values(element: Mapping[str, Any]) -> tuple[Any, ...]:
    """The values of one DICOM JSON element (``{"vr": ..., "Value": [...]}``); a person name
    gives its Alphabetic form."""
    values = element.get("Value")
    if not values:
        return ()
    if element.get("vr") == "PN":
        return tuple(v.get("Alphabetic", "") if isinstance(v, dict) else v for v in values)
    return tuple(values)


def json_value(dataset: JsonDataset, keyword: str) -> Any:
    """The first value of ``keyword``, or ``None`` when absent or empty."""
    values = json_values(dataset, keyword)
    return values[0] if values else None


def value_text(value: Any) -> str:
    """A value of a JSON dataset as text: text as itself, any other value as Python writes it.
    An object or array nested too deeply for that (JSON decoders take about a thousand levels)
    is a note saying so."""
    if isinstance(value, str):
        return value
    try:
        return repr(value)
    except RecursionError:
        return f"({type(value).__name__} nested too deeply to show)"


@dataclass(frozen=True)
class Instance:
    """One DICOM file: its path relative to the parser's input and its instance-level attributes."""

    path: str
    attributes: JsonDataset

    @property
    def sop_instance_uid(self) -> str:
        return value_text(json_value(self.attributes, "SOPInstanceUID"))

    def to_json(self) -> dict[str, Any]:
        return self.json_entry(self.path, self.attributes)

    @staticmethod
    def json_entry(path: str, attributes: JsonDataset) -> dict[str, Any]:
        """An instance's JSON from its path and attributes."""
        dataset = attributes if isinstance(attributes, dict) else dict(attributes)
        return {"attributes": dataset, "path": path}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Instance:
        return cls(path=entry["path"], attributes=entry["attributes"])


@dataclass(frozen=True)
class Series:
    """A series: the attributes constant over its instances, and the instances (sorted)."""

    attributes: JsonDataset
    instances: tuple[Instance, ...]

    @cached_property
    def uid(self) -> str:
        return value_text(json_value(self.attributes, "SeriesInstanceUID"))

    def to_json(self) -> dict[str, Any]:
        return self.json_entry(self.attributes, [i.to_json() for i in self.instances])

    @staticmethod
    def json_entry(attributes: JsonDataset, instances: JsonArray) -> dict[str, Any]:
        """A series' JSON from its attributes and its instances' JSON."""
        dataset = attributes if isinstance(attributes, dict) else dict(attributes)
        return {"attributes": dataset, "instances": instances}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Series:
        return cls(
            attributes=entry["attributes"],
            instances=tuple(Instance.from_json(i) for i in entry["instances"]),
        )


@dataclass(frozen=True)
class Study:
    """A study: patient and study attributes, and its series (sorted)."""

    attributes: JsonDataset
    series: tuple[Series, ...]

    @cached_property
    def uid(self) -> str:
        return value_text(json_value(self.attributes, "StudyInstanceUID"))

    def to_json(self) -> dict[str, Any]:
        return self.json_entry(self.attributes, [s.to_json() for s in self.series])

    @staticmethod
    def json_entry(attributes: JsonDataset, series: JsonArray) -> dict[str, Any]:
        """A study's JSON from its attributes and its series' JSON."""
        dataset = attributes if isinstance(attributes, dict) else dict(attributes)
        return {"attributes": dataset, "series": series}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> Study:
        return cls(
            attributes=entry["attributes"],
            series=tuple(Series.from_json(s) for s in entry["series"]),
        )


@dataclass(frozen=True)
class DicomMetadata:
    """``dicom-metadata.json``: the studies, each with its series, each with its instances.

    The parser writes it as it reads the headers back, with the ``json_entry`` of each class
    (the children of each level given as a ``LazyArray``); whoever holds it whole uses
    ``to_json``, which makes its JSON with the same ``json_entry``.
    """

    studies: tuple[Study, ...]

    def to_json(self) -> dict[str, Any]:
        return self.json_entry([study.to_json() for study in self.studies])

    @staticmethod
    def json_entry(studies: JsonArray) -> dict[str, Any]:
        """The document's JSON from its studies' JSON."""
        return {"studies": studies}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> DicomMetadata:
        """The model of a schema-valid document."""
        return cls(studies=tuple(Study.from_json(study) for study in document["studies"]))


@dataclass(frozen=True)
class Rescale:
    """The modality rescale of a volume and how the file stores it."""

    slope: float | None
    """``None`` when the rescale differs between frames (then it is always applied)."""
    intercept: float | None
    stored_as: str  # "applied", "nifti_scl" or "identity"


PATIENT_GEOMETRY = "patient"
IMAGE_PLANE_ONLY = "image plane only: no patient position"
"""The geometry of a 2D image without ImagePositionPatient (a radiograph, say): its origin and
direction say nothing of where it lies in the patient, and its orientation is ``NO_PLANE``."""
NO_PLANE = "NONE"


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
    geometry: str = PATIENT_GEOMETRY
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
            geometry=entry.get("geometry", PATIENT_GEOMETRY),
            previews=entry.get("previews"),
        )


@dataclass(frozen=True)
class SeriesImages:
    """``series-images.json``: the volumes of each series that has any, by SeriesInstanceUID, in
    the order of the series in ``dicom-metadata.json``."""

    volumes: Mapping[str, tuple[VolumeEntry, ...]]

    def to_json(self) -> dict[str, Any]:
        return {uid: [v.to_json() for v in volumes] for uid, volumes in self.volumes.items()}

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> SeriesImages:
        """The model of a schema-valid document."""
        return cls(
            volumes={
                uid: tuple(VolumeEntry.from_json(entry) for entry in entries)
                for uid, entries in document.items()
            }
        )


@dataclass(frozen=True)
class ImageEntry:
    """One volume of a chosen series, as ``selected-images.json`` lists it."""

    path: str
    """Relative to the folder holding ``selected-images.json``."""
    format: str
    label: str
    shape: tuple[int, ...]
    spacing: tuple[float, float, float]
    orientation: str
    dtype: str
    channels: int
    geometry: str = PATIENT_GEOMETRY

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "label": self.label,
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "orientation": self.orientation,
            "geometry": self.geometry,
            "dtype": self.dtype,
            "channels": self.channels,
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> ImageEntry:
        return cls(
            path=entry["path"],
            format=entry["format"],
            label=entry["label"],
            shape=tuple(entry["shape"]),
            spacing=(entry["spacing"][0], entry["spacing"][1], entry["spacing"][2]),
            orientation=entry["orientation"],
            dtype=entry["dtype"],
            channels=entry["channels"],
            geometry=entry.get("geometry", PATIENT_GEOMETRY),
        )


def series_label(number: Any, description: Any, uid: str) -> str:
    """A series as people name it: its number and description (``#2 'Abd 1.25mm'``); its UID
    where it has no number."""
    label = f"#{number}" if number is not None else uid
    return f"{label} {str(description)!r}" if description else label


@dataclass(frozen=True)
class ChosenSeries:
    """A series a selection chose, with its volumes."""

    study_instance_uid: str
    series_instance_uid: str
    series_number: int | float | str | None
    series_description: str | None
    modality: str | None
    instance_count: int
    images: tuple[ImageEntry, ...]

    @property
    def label(self) -> str:
        return series_label(self.series_number, self.series_description, self.series_instance_uid)

    def to_json(self) -> dict[str, Any]:
        return {
            "StudyInstanceUID": self.study_instance_uid,
            "SeriesInstanceUID": self.series_instance_uid,
            "SeriesNumber": self.series_number,
            "SeriesDescription": self.series_description,
            "Modality": self.modality,
            "instance_count": self.instance_count,
            "images": [image.to_json() for image in self.images],
        }

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> ChosenSeries:
        return cls(
            study_instance_uid=entry["StudyInstanceUID"],
            series_instance_uid=entry["SeriesInstanceUID"],
            series_number=entry["SeriesNumber"],
            series_description=entry["SeriesDescription"],
            modality=entry["Modality"],
            instance_count=entry["instance_count"],
            images=tuple(ImageEntry.from_json(image) for image in entry["images"]),
        )


@dataclass(frozen=True)
class SelectionImages:
    """One selection of the rules and the series it chose, in the selection's order."""

    name: str
    series: tuple[ChosenSeries, ...]

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> SelectionImages:
        return cls(
            name=entry["name"], series=tuple(ChosenSeries.from_json(s) for s in entry["series"])
        )


@dataclass(frozen=True)
class SelectedImages:
    """``selected-images.json``: every selection, in rule order, with the series it chose."""

    selections: tuple[SelectionImages, ...]

    def to_json(self) -> dict[str, Any]:
        """The document; a series chosen by several selections (the same ``ChosenSeries``) has
        one entry object, listed under each (``json_write`` with ``reuse`` formats it once)."""
        chosen = {id(series): series for s in self.selections for series in s.series}
        entries = {key: series.to_json() for key, series in chosen.items()}
        return {
            "selections": [
                {"name": s.name, "series": [entries[id(series)] for series in s.series]}
                for s in self.selections
            ]
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> SelectedImages:
        """The model of a schema-valid document."""
        return cls(selections=tuple(SelectionImages.from_json(s) for s in document["selections"]))
