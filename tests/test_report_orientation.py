"""The pictures show the patient in radiological convention, whatever the acquisition.

Each generated series holds three bright spheres at known patient positions, 35 mm from the
volume's centre towards the patient's left, anterior and superior; their voxels are chosen by the
Image Plane formula from the written DICOM geometry (``voxel_positions``), never by our code.
The parser, then the report, run on them; the test finds the spheres in each picture's pixels:

- axial: left on the image's right, anterior up;
- coronal: left on the image's right, superior up;
- sagittal: anterior on the image's left, superior up.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from series_selection.parser.run import parse_folder
from series_selection.report.cli import main as report_main
from series_selection_tools.samples.synthetic import (
    StudySpec,
    ct_series,
    mr_series,
    voxel_positions,
    write_series,
)

CENTRE = np.array([12.0, -25.0, 40.0])
OFFSET_MM = 35.0
RADIUS_MM = 7.0
MARKERS = {"L": (1.0, 0.0, 0.0), "A": (0.0, -1.0, 0.0), "S": (0.0, 0.0, 1.0)}  # LPS directions
SEEN = {
    # plane: {marker: (horizontal sign, vertical sign) of its place from the picture's centre,
    # 0 where the marker must be on the centre line}; a marker missing here is not in the plane
    "axial": {"L": (1, 0), "A": (0, -1)},
    "coronal": {"L": (1, 0), "S": (0, -1)},
    "sagittal": {"A": (-1, 0), "S": (0, -1)},
}


def _rotation(axis: int, degrees: float) -> np.ndarray[Any, np.dtype[np.float64]]:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    a, b = [n for n in range(3) if n != axis]
    matrix = np.eye(3)
    matrix[a, a], matrix[a, b], matrix[b, a], matrix[b, b] = c, -s, s, c
    return matrix


def _oblique(row: tuple[float, ...], column: tuple[float, ...]) -> dict[str, Any]:
    turn = _rotation(2, 20.0) @ _rotation(0, 35.0)
    return {
        "row_cosine": tuple(float(v) for v in turn @ np.array(row)),
        "column_cosine": tuple(float(v) for v in turn @ np.array(column)),
    }


ACQUISITIONS: dict[str, dict[str, Any]] = {
    "axial HFS": {"row_cosine": (1.0, 0.0, 0.0), "column_cosine": (0.0, 1.0, 0.0)},
    "axial FFS": {
        "row_cosine": (-1.0, 0.0, 0.0),
        "column_cosine": (0.0, 1.0, 0.0),
        "patient_position": "FFS",
    },
    "axial HFS slices downwards": {
        "row_cosine": (1.0, 0.0, 0.0),
        "column_cosine": (0.0, 1.0, 0.0),
        "slice_spacing": -3.0,
    },
    "coronal HFS": {"row_cosine": (1.0, 0.0, 0.0), "column_cosine": (0.0, 0.0, -1.0)},
    "coronal FFS": {
        "row_cosine": (-1.0, 0.0, 0.0),
        "column_cosine": (0.0, 0.0, -1.0),
        "patient_position": "FFS",
    },
    "sagittal HFS": {
        "row_cosine": (0.0, 1.0, 0.0),
        "column_cosine": (0.0, 0.0, -1.0),
        "modality": "MR",
    },
    "sagittal FFS": {
        "row_cosine": (0.0, -1.0, 0.0),
        "column_cosine": (0.0, 0.0, -1.0),
        "patient_position": "FFS",
        "modality": "MR",
    },
    "oblique HFS": {**_oblique((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)), "modality": "MR"},
    "oblique FFS": {
        **_oblique((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
        "patient_position": "FFS",
    },
}


def _write_marker_series(folder: Path, name: str, number: int) -> None:
    """One series of ``ACQUISITIONS[name]`` centred on ``CENTRE`` with the three spheres."""
    settings = dict(ACQUISITIONS[name])
    modality = settings.pop("modality", "CT")
    geometry = {
        "rows": 64,
        "columns": 60,
        "slices": 40,
        "pixel_spacing": (2.0, 2.2),
        "slice_spacing": 3.0,
        **settings,
    }
    base = (mr_series if modality == "MR" else ct_series)(
        study=StudySpec(study_description="MARKERS"),
        series_description=name,
        series_number=number,
        **geometry,
    )
    # Put the volume's centre on CENTRE: the origin is slice 0's first pixel.
    row, column = np.array(base.row_cosine), np.array(base.column_cosine)
    normal = np.cross(row, column)
    half = (
        (base.columns - 1) / 2 * base.pixel_spacing[1] * row
        + (base.rows - 1) / 2 * base.pixel_spacing[0] * column
        + (base.slices - 1) / 2 * base.slice_spacing * normal
    )
    spec = replace(base, origin=tuple(float(v) for v in CENTRE - half))
    positions = voxel_positions(spec)
    background = 1024 if modality == "CT" else 100  # 0 HU; a flat MR signal
    values = np.full(positions.shape[:3], background, dtype=np.int64)
    for direction in MARKERS.values():
        place = CENTRE + OFFSET_MM * np.array(direction)
        inside = np.linalg.norm(positions - place, axis=-1) <= RADIUS_MM
        assert inside.any(), f"{name}: a marker falls between voxels"
        values[inside] = background + 1000
    write_series(folder / f"series-{number}", spec, seed=number, values=values)


@pytest.fixture(scope="module")
def report_of_markers(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("markers")
    for number, name in enumerate(ACQUISITIONS, start=1):
        _write_marker_series(root / "dicom", name, number)
    parse_folder(root / "dicom", root / "parsed", "nii.gz", workers=2)
    assert report_main(["--input", str(root / "parsed"), "--output", str(root / "report")]) == 0
    report = json.loads((root / "report" / "report.json").read_text())
    return root / "report", report


def _bright_places(picture: Path) -> list[tuple[float, float]]:
    """(x, y) of the bright pixels, from the picture's centre, x right and y down."""
    pixels = np.asarray(Image.open(picture).convert("L"), dtype=np.int32)
    ys, xs = np.nonzero(pixels >= 250)
    height, width = pixels.shape
    return [(x - (width - 1) / 2, y - (height - 1) / 2) for x, y in zip(xs, ys, strict=True)]


@pytest.mark.parametrize("name", list(ACQUISITIONS))
def test_each_marker_is_on_the_side_the_convention_says(
    report_of_markers: tuple[Path, dict[str, Any]], name: str
) -> None:
    folder, report = report_of_markers
    series = next(
        s for study in report["studies"] for s in study["series"] if s["SeriesDescription"] == name
    )
    (volume,) = series["volumes"]
    assert set(volume["pictures"]) == set(SEEN)
    for plane, expected in SEEN.items():
        places = _bright_places(folder / volume["pictures"][plane])
        assert places, f"{name} {plane}: no marker seen"
        horizontal = [(x, y) for x, y in places if abs(x) > abs(y)]
        vertical = [(x, y) for x, y in places if abs(y) >= abs(x)]
        for marker, (sign_x, sign_y) in expected.items():
            group = horizontal if sign_x else vertical
            assert group, f"{name} {plane}: marker {marker} not seen"
            for x, y in group:
                along = x * sign_x if sign_x else y * sign_y
                assert along > 10, f"{name} {plane}: marker {marker} at ({x}, {y})"
        assert len(expected) == 2 and horizontal and vertical
