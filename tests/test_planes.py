"""common.planes: picture geometry and display windows, as pure functions (no files)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from series_selection.common import planes
from series_selection.common.planes import (
    PLANE_AXES,
    centre_pictures,
    direction_letters,
    display_window,
    edge_letters,
    nearest_plane,
    to_colour,
    to_grey,
)


@pytest.mark.parametrize(
    ("vector", "letters"),
    [
        ((1, 0, 0), "L"),
        ((-1, 0, 0), "R"),
        ((0, 1, 0), "P"),
        ((0, -1, 0), "A"),
        ((0, 0, 1), "S"),
        ((0, 0, -1), "I"),
        ((0, -0.6, 0.8), "SA"),
        ((0.1, 0, -1), "I"),  # a small component adds no letter
        ((1, 1, 1), "LPS"),
    ],
)
def test_direction_letters(vector: tuple[float, float, float], letters: str) -> None:
    assert direction_letters(vector) == letters


def test_direction_letters_refuse_no_direction() -> None:
    with pytest.raises(ValueError, match="no direction"):
        direction_letters((0, 0, 0))


def test_the_planes_follow_the_radiological_convention() -> None:
    assert edge_letters(*PLANE_AXES["axial"]) == {
        "top": "A", "bottom": "P", "left": "R", "right": "L"
    }  # fmt: skip
    assert edge_letters(*PLANE_AXES["coronal"]) == {
        "top": "S", "bottom": "I", "left": "R", "right": "L"
    }  # fmt: skip
    assert edge_letters(*PLANE_AXES["sagittal"]) == {
        "top": "S", "bottom": "I", "left": "A", "right": "P"
    }  # fmt: skip


def test_nearest_plane() -> None:
    assert nearest_plane((0, 0, -1)) == "axial"
    assert nearest_plane((0.1, 0.9, 0.3)) == "coronal"
    assert nearest_plane((-1, 0.2, 0)) == "sagittal"


def _affine(columns: tuple[float, ...], rows: tuple[float, ...], slices: tuple[float, ...]):  # type: ignore[no-untyped-def]
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2] = columns, rows, slices
    return affine


def _bright(picture: np.ndarray) -> tuple[float, float]:  # type: ignore[type-arg]
    """(x, y) of the brightest pixel from the centre, x right, y down."""
    y, x = np.unravel_index(np.nanargmax(picture), picture.shape[:2])
    return x - (picture.shape[1] - 1) / 2, y - (picture.shape[0] - 1) / 2


@pytest.mark.parametrize("flip", [False, True])
def test_a_voxel_on_the_patients_left_shows_on_the_images_right(flip: bool) -> None:
    voxels = np.zeros((9, 9, 9))  # k, j, i
    i = 1 if flip else 7  # LPS x grows with i, or shrinks with it when flipped
    voxels[4, 4, i] = 1000
    sign = -1.0 if flip else 1.0
    affine = _affine((sign * 2, 0, 0), (0, 2, 0), (0, 0, 2))
    axial, coronal, sagittal = centre_pictures(voxels, affine)
    assert [p.plane for p in (axial, coronal, sagittal)] == ["axial", "coronal", "sagittal"]
    assert _bright(axial.values)[0] > 0
    assert _bright(coronal.values)[0] > 0
    assert np.nanmax(sagittal.values) < 1000  # the sagittal plane through the centre misses it


def test_anterior_is_up_in_axial_and_left_in_sagittal() -> None:
    voxels = np.zeros((9, 9, 9))
    voxels[4, 1, 4] = 1000  # j = 1: towards anterior, as the column cosine points posterior
    axial, _, sagittal = centre_pictures(voxels, _affine((2, 0, 0), (0, 2, 0), (0, 0, 2)))
    assert _bright(axial.values)[1] < 0
    assert _bright(sagittal.values)[0] < 0


def test_superior_is_up_in_coronal_and_sagittal_for_slices_ordered_downwards() -> None:
    voxels = np.zeros((9, 9, 9))
    voxels[1, 4, 4] = 1000  # k = 1, and k runs towards the feet: superior of the centre
    _, coronal, sagittal = centre_pictures(voxels, _affine((2, 0, 0), (0, 2, 0), (0, 0, -2)))
    assert _bright(coronal.values)[1] < 0
    assert _bright(sagittal.values)[1] < 0


def test_pictures_have_square_pixels_and_at_most_the_size_asked() -> None:
    voxels = np.zeros((10, 400, 300))  # 300 columns of 0.5 mm, 400 rows of 1 mm, 10 slices of 5
    pictures = centre_pictures(voxels, _affine((0.5, 0, 0), (0, 1, 0), (0, 0, 5)), max_size=64)
    for picture in pictures:
        assert max(picture.values.shape) == 64
    axial = pictures[0]
    assert axial.values.shape == (64, 24)  # 400 mm by 150 mm
    assert math.isclose(axial.pixel_mm, 400 / 64)


def test_points_outside_an_oblique_volume_are_not_a_number() -> None:
    turn = math.radians(40)
    columns = (math.cos(turn), math.sin(turn), 0.0)
    rows = (-math.sin(turn), math.cos(turn), 0.0)
    axial, _, _ = centre_pictures(np.ones((5, 20, 20)), _affine(columns, rows, (0, 0, 1)))
    assert np.isnan(axial.values[0, 0])
    assert axial.values[axial.values.shape[0] // 2, axial.values.shape[1] // 2] == 1.0


def test_a_single_slice_is_shown_as_stored() -> None:
    voxels = np.zeros((1, 6, 8))
    voxels[0, 0, 7] = 1000  # first row, last column
    (picture,) = centre_pictures(voxels, _affine((0, 1, 0), (0, 0, -1), (1, 0, 0)))
    assert picture.plane == "sagittal"
    assert picture.edges == {"top": "S", "bottom": "I", "left": "A", "right": "P"}
    x, y = _bright(picture.values)
    assert x > 0 and y < 0


def test_4d_shows_the_first_time_point_and_colour_stays_colour() -> None:
    voxels = np.zeros((3, 4, 5, 6))
    voxels[0] = 7.0
    assert np.nanmax(centre_pictures(voxels, np.eye(4))[0].values) == 7.0
    colour = np.zeros((4, 5, 6, 3), dtype=np.uint8)
    colour[..., 0] = 200
    axial = centre_pictures(colour, np.eye(4), channels=3)[0]
    assert axial.values.shape[-1] == 3
    assert to_colour(axial.values)[2, 2].tolist() == [200, 0, 0]


def test_display_window() -> None:
    assert display_window([0.0], 40, 400) == pytest.approx((-160.5 + 0.5, 239.5 - 0.5), abs=1)
    assert display_window([0.0], None, None, "CT") == (-160.0, 240.0)
    values = np.arange(1001, dtype=float)
    assert display_window(values, None, None, "MR") == pytest.approx((10.0, 990.0))
    assert display_window([np.nan, 5.0, 5.0]) == (4.5, 5.5)
    assert display_window([np.nan]) == (0.0, 1.0)


def test_to_grey() -> None:
    grey = to_grey(np.array([-10.0, 0.0, 5.0, 10.0, 20.0, np.nan]), 0.0, 10.0)
    assert grey.tolist() == [0, 0, 128, 255, 255, 0]
    assert to_grey(np.array([0.0, 10.0]), 0.0, 10.0, invert=True).tolist() == [255, 0]


def test_a_slice_of_the_grid_and_sampling_at_each_pixel_agree(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path (the grid's central slice, resized) shows what sampling shows."""
    k, j, i = np.indices((30, 40, 50), dtype=np.float64)
    voxels = 3 * i - 2 * j + 5 * k  # linear: both interpolations are exact inside
    affine = _affine((-1.5, 0, 0), (0, 0, -1.2), (0, 2.0, 0))  # a coronal-like stack, flipped
    fast = centre_pictures(voxels, affine, max_size=64)
    monkeypatch.setattr(planes, "ALIGNED", 2.0)  # no axis is ever aligned: sample every pixel
    sampled = centre_pictures(voxels, affine, max_size=64)
    for a, b in zip(fast, sampled, strict=True):
        assert a.values.shape == b.values.shape
        inner = (slice(4, -4), slice(4, -4))
        assert np.allclose(a.values[inner], b.values[inner], atol=0.01 * np.ptp(b.values[inner]))
