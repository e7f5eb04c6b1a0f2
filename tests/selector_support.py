"""What the selector tests share: parser-output folders built from pydicom Datasets and small
real NIfTI volumes, and in-memory series for the matching tests."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from pydicom import Dataset
from pydicom.uid import generate_uid

from series_selection.common.jsonio import write_json
from series_selection.common.models import DicomMetadata, Instance, Series, Study, VolumeEntry
from series_selection.selector.inputs import facts_of
from series_selection.selector.matching import Result
from series_selection.selector.rules import parse_rules

AXIAL_IOP = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
CORONAL_IOP = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]
SAGITTAL_IOP = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]


def dataset_json(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """A DICOM JSON Model dataset of ``keyword -> value``, written by pydicom."""
    dataset = Dataset()
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    result: dict[str, Any] = dataset.to_json_dict()
    return result


@dataclass
class SeriesFixture:
    """One series of a parser-output folder: its attributes at each level and its volumes."""

    series: dict[str, Any]
    study: dict[str, Any] = field(default_factory=dict)
    instances: Sequence[dict[str, Any]] = ({},)
    volumes: int = 1
    orientation: str = "AXIAL"
    shape: tuple[int, int, int] = (4, 3, 2)


def build_study(fixtures: Sequence[SeriesFixture]) -> tuple[Study, ...]:
    """Studies (grouped by StudyInstanceUID) holding the fixtures' series."""
    by_study: dict[str, tuple[dict[str, Any], list[Series]]] = {}
    for fixture in fixtures:
        study_attributes = {"StudyInstanceUID": "1.2.3", **fixture.study}
        series_attributes = {"SeriesInstanceUID": generate_uid(), **fixture.series}
        instances = tuple(
            Instance(
                path=f"dicom/{series_attributes['SeriesInstanceUID']}/{index}.dcm",
                attributes=dataset_json({"SOPInstanceUID": generate_uid(), **attributes}),
            )
            for index, attributes in enumerate(fixture.instances)
        )
        entry = by_study.setdefault(study_attributes["StudyInstanceUID"], (study_attributes, []))
        entry[1].append(Series(dataset_json(series_attributes), instances))
    return tuple(
        Study(dataset_json(attributes), tuple(series)) for attributes, series in by_study.values()
    )


def volume_entry(path: str, fixture: SeriesFixture, label: str = "") -> dict[str, Any]:
    """A series-images.json entry for a NIfTI volume at ``path``."""
    return {
        "path": path,
        "format": "nii.gz",
        "label": label,
        "distinguished_by": {},
        "shape": list(fixture.shape),
        "spacing": [0.8, 0.8, 2.5],
        "origin": [0.0, 0.0, 0.0],
        "direction": [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]],
        "orientation": fixture.orientation,
        "dtype": "int16",
        "rescale": {"slope": 1.0, "intercept": 0.0, "stored_as": "identity"},
        "instance_count": len(fixture.instances),
        "frame_count": len(fixture.instances),
        "channels": 1,
        "resampled": None,
        "notes": [],
    }


def write_parser_output(folder: Path, fixtures: Sequence[SeriesFixture]) -> tuple[Study, ...]:
    """Write dicom-metadata.json, series-images.json and real NIfTI volumes into ``folder``."""
    studies = build_study(fixtures)
    write_json(folder / "dicom-metadata.json", DicomMetadata(studies).to_json(), "dicom-metadata")
    listing: dict[str, list[dict[str, Any]]] = {}
    all_series = [series for study in studies for series in study.series]
    for series, fixture in zip(all_series, fixtures, strict=True):
        for index in range(fixture.volumes):
            label = f"echo-{index + 1}" if fixture.volumes > 1 else ""
            path = f"volumes/{series.uid}{'_' + label if label else ''}.nii.gz"
            voxels = np.arange(np.prod(fixture.shape), dtype=np.int16).reshape(fixture.shape)
            (folder / "volumes").mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(voxels + index, np.eye(4)), folder / path)
            listing.setdefault(series.uid, []).append(volume_entry(path, fixture, label))
    write_json(folder / "series-images.json", listing, "series-images")
    return studies


def judge(conditions: Mapping[str, Any], fixture: SeriesFixture) -> Result:
    """Every condition of one selection tested on the one series of ``fixture``."""
    rules = parse_rules(rules_json({"conditions": conditions}), "test")
    selection = rules.selections[0]
    (study,) = build_study([fixture])
    (series,) = study.series
    volumes = tuple(
        VolumeEntry.from_json(volume_entry(f"v{i}.nii.gz", fixture)) for i in range(fixture.volumes)
    )
    facts = facts_of(study, series, rules.keywords, volumes)
    result = selection.conditions.evaluate(facts)
    assert result.passed == selection.conditions.holds(facts)
    return result


def rules_json(*selections: Mapping[str, Any]) -> str:
    return json.dumps({"selections": list(selections)})
