"""What the report shows, gathered from the parser's and the selector's files (never their
code): per study, per series, per volume, and per selection, as the ``report.json`` document."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from series_selection.common.errors import InputError
from series_selection.common.jsonio import read_json
from series_selection.common.models import (
    EXPLAIN_FILE,
    METADATA_FILE,
    REPORT_FILE,
    SERIES_IMAGES_FILE,
    JsonDataset,
    VolumeEntry,
    json_value,
    value_text,
)
from series_selection.common.planes import PLANE_AXES, edge_letters

IDENTIFIERS = ("PatientName", "PatientID", "PatientBirthDate", "AccessionNumber")
"""Shown only with --show-identifiers: the page is meant to be shared in a ticket."""


@dataclass(frozen=True)
class Series:
    """What the page needs of a series of ``dicom-metadata.json``."""

    uid: str
    attributes: JsonDataset
    first_instance: JsonDataset
    instance_count: int


@dataclass(frozen=True)
class Study:
    """What the page needs of a study of ``dicom-metadata.json``."""

    uid: str
    attributes: JsonDataset
    series: tuple[Series, ...]


def studies_of(document: Mapping[str, Any]) -> tuple[Study, ...]:
    """The studies of a (schema-valid) ``dicom-metadata.json`` document: read from the
    document itself, so the page depends on the file, not on how an operator models it."""
    return tuple(
        Study(
            uid=value_text(json_value(study["attributes"], "StudyInstanceUID")),
            attributes=study["attributes"],
            series=tuple(
                Series(
                    uid=value_text(json_value(series["attributes"], "SeriesInstanceUID")),
                    attributes=series["attributes"],
                    first_instance=series["instances"][0]["attributes"]
                    if series["instances"]
                    else {},
                    instance_count=len(series["instances"]),
                )
                for series in study["series"]
            ),
        )
        for study in document["studies"]
    )


_KEYWORD = re.compile(r"\.([A-Za-z][A-Za-z0-9]*)(\[\d+\])*$")


def read_inputs(
    parser_dir: Path, selector_dir: Path | None
) -> tuple[tuple[Study, ...], dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """The parser's three files and, when given, the selector's explanation, schema-checked."""
    if not parser_dir.is_dir():
        raise InputError(f"input folder {parser_dir} does not exist or is not a folder")
    studies = studies_of(read_json(parser_dir / METADATA_FILE, "dicom-metadata"))
    images = read_json(parser_dir / SERIES_IMAGES_FILE, "series-images")
    parse_report = read_json(parser_dir / REPORT_FILE, "parse-report")
    explain = None
    if selector_dir is not None:
        if not selector_dir.is_dir():
            raise InputError(f"selections folder {selector_dir} does not exist or is not a folder")
        explain = read_json(selector_dir / EXPLAIN_FILE, "selection-explain")
    return studies, images, parse_report, explain


def _first(keyword: str, *datasets: JsonDataset) -> Any:
    for dataset in datasets:
        value = json_value(dataset, keyword)
        if value is not None:
            return value
    return None


def _text(value: Any) -> str:
    if isinstance(value, dict):  # a person name without Alphabetic
        return " ".join(value_text(v) for v in value.values())
    return "" if value is None else value_text(value)


def gather(
    studies: Sequence[Study],
    images: Mapping[str, Any],
    parse_report: Mapping[str, Any],
    explain: Mapping[str, Any] | None,
    show_identifiers: bool,
    pictures: Mapping[str, Mapping[str, str]],
) -> dict[str, Any]:
    """The ``report.json`` document. ``pictures`` maps a volume's path in the parser's folder
    to its pictures (plane -> path relative to the report)."""
    reasons = {(s["StudyInstanceUID"], s["SeriesInstanceUID"]): s for s in parse_report["series"]}
    verdicts = _verdicts(explain) if explain is not None else None
    study_entries = []
    for study in studies:
        series_entries = []
        for series in study.series:
            key = (study.uid, series.uid)
            volumes = [
                (VolumeEntry.from_json(v), v.get("geometry", "patient") == "patient")
                for v in images.get(series.uid, [])
                if v.get("StudyInstanceUID", study.uid) == study.uid
            ]
            series_entries.append(
                _series_entry(series, volumes, reasons.get(key, {}), verdicts, pictures, key)
            )
        study_entries.append(_study_entry(study, series_entries, show_identifiers))
    selections = (
        [
            {
                "name": s["name"],
                "required": s["required"],
                "chosen": [
                    {
                        key: explain["series"][index][key]
                        for key in ("SeriesInstanceUID", "SeriesNumber", "SeriesDescription")
                    }
                    for index in s["chosen"]
                ],
            }
            for s in explain["selections"]
        ]
        if explain is not None
        else None
    )
    return {
        "show_identifiers": show_identifiers,
        "rules": explain["rules"] if explain is not None else None,
        "selections": selections,
        "summary": {
            "studies": len(study_entries),
            "series": sum(len(s["series"]) for s in study_entries),
            "volumes": sum(len(series["volumes"]) for s in study_entries for series in s["series"]),
        },
        "studies": study_entries,
    }


def _study_entry(
    study: Study, series: list[dict[str, Any]], show_identifiers: bool
) -> dict[str, Any]:
    attributes = study.attributes
    first_series = study.series[0].attributes if study.series else {}
    modalities = sorted({s["Modality"] for s in series if s["Modality"]})
    entry: dict[str, Any] = {
        "StudyInstanceUID": study.uid,
        "StudyDate": _text(_first("StudyDate", attributes, first_series)),
        "StudyTime": _text(_first("StudyTime", attributes, first_series)),
        "StudyDescription": _text(_first("StudyDescription", attributes, first_series)),
        "modalities": modalities,
        "series_count": len(series),
    }
    if show_identifiers:
        entry["identifiers"] = {
            keyword: _text(_first(keyword, attributes, first_series)) for keyword in IDENTIFIERS
        }
    entry["series"] = series
    return entry


def _series_entry(
    series: Series,
    volumes: list[tuple[VolumeEntry, bool]],
    reported: Mapping[str, Any],
    verdicts: dict[tuple[str, str], list[dict[str, Any]]] | None,
    pictures: Mapping[str, Mapping[str, str]],
    key: tuple[str, str],
) -> dict[str, Any]:
    first_instance = series.first_instance
    number = _first("SeriesNumber", series.attributes, first_instance)
    entry: dict[str, Any] = {
        "SeriesInstanceUID": series.uid,
        "SeriesNumber": number if isinstance(number, int) else None,
        "SeriesDescription": _text(_first("SeriesDescription", series.attributes, first_instance)),
        "Modality": _text(_first("Modality", series.attributes, first_instance)),
        "instances": series.instance_count,
        "volumes": [_volume_entry(v, pictures.get(v.path, {}), placed) for v, placed in volumes],
        "reason": reported.get("reason"),
    }
    entry["selections"] = None if verdicts is None else verdicts.get(key, [])
    return entry


def _volume_entry(
    volume: VolumeEntry, pictures: Mapping[str, str], in_patient: bool
) -> dict[str, Any]:
    """A volume's facts; ``in_patient`` is false for an image without patient position (its
    pictures get no direction letters)."""
    time_points = volume.shape[3] if len(volume.shape) == 4 else 1
    edges = {}
    for plane in pictures:
        if not in_patient or volume.orientation not in ("AXIAL", "CORONAL", "SAGITTAL", "OBLIQUE"):
            continue
        if volume.shape[2] == 1:  # a single slice, shown as stored
            edges[plane] = edge_letters(volume.direction[0], volume.direction[1])
        else:
            edges[plane] = edge_letters(*PLANE_AXES[plane])
    return {
        "label": volume.label,
        "path": volume.path,
        "shape": list(volume.shape),
        "spacing": list(volume.spacing),
        "orientation": volume.orientation,
        "dtype": volume.dtype,
        "channels": volume.channels,
        "time_points": time_points,
        "single_slice": volume.shape[2] == 1,
        "resampled": volume.resampled,
        "notes": list(volume.notes),
        "pictures": dict(pictures),
        "edges": edges,
    }


def _verdicts(explain: Mapping[str, Any]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Per series (study and series UID): per selection, whether it was chosen, its rank, and
    otherwise why not (the first failing condition)."""
    listed = explain["series"]
    keys = [(s["StudyInstanceUID"], s["SeriesInstanceUID"]) for s in listed]
    verdicts: dict[tuple[str, str], list[dict[str, Any]]] = {key: [] for key in keys}
    for selection in explain["selections"]:
        rank = {index: place + 1 for place, index in enumerate(selection["ranked"])}
        chosen = set(selection["chosen"])
        why: dict[int, str] = {}
        for index in selection["matched_without_volume"]:
            why[index] = "matches, but the parser made no volume of it"
        for group in selection["failed"]:
            for index in group["series"]:
                why[index] = _first_failure(group["conditions"], listed[index]["values"])
        for index, key in enumerate(keys):
            if index in chosen:
                text = None
            elif index in rank:
                text = (
                    f"matches (rank {rank[index]}), "
                    "but a better-ranked series of its study was chosen"
                )
            else:
                text = why.get(index, "not chosen")
            verdicts[key].append(
                {
                    "name": selection["name"],
                    "chosen": index in chosen,
                    "rank": rank.get(index),
                    "why_not": text,
                }
            )
    return verdicts


def _first_failure(conditions: Sequence[Mapping[str, str]], values: Mapping[str, Any]) -> str:
    """The first failing condition as ``Keyword: why (seen value)``."""
    if not conditions:
        return "does not match"
    condition = conditions[0]
    found = _KEYWORD.search(condition["path"])
    keyword = found.group(1) if found else condition["path"]
    text = f"{keyword}: {condition['why']}"
    if found and keyword in values and values[keyword] is not None:
        text += f" (seen {_seen(values[keyword])})"
    return text


def _seen(value: Any) -> str:
    if isinstance(value, dict) and "per_instance" in value:
        return "varies: " + " | ".join(_seen(v) for v in value["per_instance"][:3])
    if isinstance(value, list):
        return "\\".join(_seen(v) for v in value)
    return str(value)
