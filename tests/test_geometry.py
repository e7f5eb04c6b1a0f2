"""The pure geometry functions, against values worked out by hand from DICOM PS3.3 C.7.6.2."""

from __future__ import annotations

import numpy as np
import pytest

from series_selection.common.errors import ConversionError
from series_selection.common.orientation import plane_of
from series_selection.parser.geometry import (
    affine_lps,
    distances_along,
    in_plane_drift,
    lps_to_ras,
    orientation_axes,
    regular_slice_spacing,
    slice_normal,
    spacing_and_direction,
)

AXIAL = (1, 0, 0, 0, 1, 0)
CORONAL = (1, 0, 0, 0, 0, -1)
SAGITTAL = (0, 1, 0, 0, 0, -1)


@pytest.mark.parametrize(
    ("orientation", "normal"),
    [(AXIAL, (0, 0, 1)), (CORONAL, (0, 1, 0)), (SAGITTAL, (-1, 0, 0))],
)
def test_slice_normal_is_row_cross_column(orientation: tuple[float, ...], normal: tuple) -> None:
    assert slice_normal(orientation) == pytest.approx(normal)


def test_orientation_axes_rejects_bad_cosines() -> None:
    with pytest.raises(ConversionError, match="not a unit vector"):
        orientation_axes((2, 0, 0, 0, 1, 0))
    with pytest.raises(ConversionError, match="not perpendicular"):
        orientation_axes((1, 0, 0, 0.6, 0.8, 0))
    with pytest.raises(ConversionError, match="non-finite"):
        orientation_axes((np.nan, 0, 0, 0, 1, 0))
    with pytest.raises(ValueError, match="6 values"):
        orientation_axes((1, 0, 0, 0, 1))


def test_non_square_pixels_row_spacing_steps_along_the_column_direction() -> None:
    # PixelSpacing = (row spacing 0.8, column spacing 0.5): moving one column (i) goes 0.5 mm
    # along the row cosine; moving one row (j) goes 0.8 mm along the column cosine.
    affine = affine_lps(AXIAL, (0.8, 0.5), (10, 20, 30), (0, 0, 2.5))
    assert affine @ [1, 0, 0, 1] == pytest.approx([10.5, 20, 30, 1])
    assert affine @ [0, 1, 0, 1] == pytest.approx([10, 20.8, 30, 1])
    assert affine @ [0, 0, 1, 1] == pytest.approx([10, 20, 32.5, 1])


def test_oblique_affine_matches_the_standard_formula() -> None:
    angle = np.deg2rad(17)
    row = np.array([np.cos(angle), np.sin(angle), 0.0])
    column = np.array([0.0, 0.0, -1.0])
    origin = np.array([-5.0, 12.0, 60.0])
    affine = affine_lps((*row, *column), (0.9, 0.7), origin, 3.0 * np.cross(row, column))
    i, j, k = 7, 11, 4
    expected = origin + i * 0.7 * row + j * 0.9 * column + k * 3.0 * np.cross(row, column)
    assert (affine @ [i, j, k, 1])[:3] == pytest.approx(expected)
    spacing, direction = spacing_and_direction(affine)
    assert spacing == pytest.approx([0.7, 0.9, 3.0])
    assert direction[:, 0] == pytest.approx(row)


def test_feet_first_slices_sort_along_the_normal_not_by_z_sign() -> None:
    # A coronal stack: the normal is +y (posterior), so the anterior-most slice comes first.
    positions = np.array([[0, 5.0, 0], [0, -5.0, 0], [0, 0.0, 0]])
    distances = distances_along(slice_normal(CORONAL), positions)
    assert list(np.argsort(distances)) == [1, 2, 0]


def test_regular_spacing_and_uneven_gaps() -> None:
    assert regular_slice_spacing(np.array([0.0, 1.25, 2.5, 3.75])) == pytest.approx(1.25)
    assert regular_slice_spacing(np.array([0.0, 1.2501, 2.4999])) == pytest.approx(1.24995)
    with pytest.raises(ConversionError, match="uneven slice spacing"):
        regular_slice_spacing(np.array([0.0, 1.0, 3.0, 4.0]))
    with pytest.raises(ConversionError, match="share one position"):
        regular_slice_spacing(np.array([2.0, 2.0]))
    with pytest.raises(ValueError, match="sorted"):
        regular_slice_spacing(np.array([1.0, 0.0]))


def test_in_plane_drift_detects_gantry_tilt() -> None:
    normal = slice_normal(AXIAL)
    straight = np.array([[0, 0, 0], [0, 0, 2.0], [0, 0, 4.0]])
    tilted = np.array([[0, 0, 0], [0, 0.7, 2.0], [0, 1.4, 4.0]])
    assert in_plane_drift(normal, straight) == pytest.approx(0)
    assert in_plane_drift(normal, tilted) == pytest.approx(1.4)


def test_lps_to_ras_flips_the_first_two_axes() -> None:
    affine = affine_lps(AXIAL, (1, 1), (10, 20, 30), (0, 0, 1))
    assert lps_to_ras(affine)[:3, 3] == pytest.approx([-10, -20, 30])
    assert lps_to_ras(affine)[:3, 0] == pytest.approx([-1, 0, 0])


@pytest.mark.parametrize(
    ("orientation", "plane"),
    [
        (AXIAL, "AXIAL"),
        (CORONAL, "CORONAL"),
        (SAGITTAL, "SAGITTAL"),
        ((1, 0, 0, 0, np.cos(0.3), -np.sin(0.3)), "AXIAL"),  # 17 degrees off axial
        ((1, 0, 0, 0, np.cos(0.8), -np.sin(0.8)), "OBLIQUE"),  # 46 degrees
    ],
)
def test_plane_of(orientation: tuple[float, ...], plane: str) -> None:
    assert plane_of(orientation) == plane
