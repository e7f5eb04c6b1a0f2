"""The pure resampling functions, on arrays whose correct result is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from series_selection.parser.resample import (
    Resampling,
    even_planes,
    in_plane_grid,
    interpolate_planes,
    resample_values,
    shift_onto_grid,
)


def test_grid_holds_every_slice() -> None:
    grid = in_plane_grid(np.array([[0.0, 0.0], [0.0, 2.5], [-1.0, 5.0]]), rows=4, columns=3)
    assert grid.start == (-1, 0)
    assert grid.shape == (4 + 5, 3 + 1)


def test_whole_shift_places_the_slice_unchanged() -> None:
    image = np.arange(12.0).reshape(3, 4)
    grid = in_plane_grid(np.array([[0.0, 0.0], [1.0, 2.0]]), rows=3, columns=4)
    shifted = shift_onto_grid(image, grid.shifts[1], grid, fill=-1)
    assert shifted.shape == (5, 5)
    assert np.array_equal(shifted[2:5, 1:5], image)
    assert np.all(shifted[:2] == -1) and np.all(shifted[:, 0] == -1)


def test_fractional_shift_of_a_ramp_is_exact() -> None:
    ramp = np.tile(np.arange(6.0) * 10, (3, 1)).T  # value = 10 * row
    grid = in_plane_grid(np.array([[0.0, 0.0], [0.0, 0.25]]), rows=6, columns=3)
    shifted = shift_onto_grid(ramp, grid.shifts[1], grid, fill=np.nan)
    # Grid row r holds the ramp at row r - 0.25: 10 * (r - 0.25), where both neighbours exist.
    assert shifted[1:6, 0] == pytest.approx(10 * (np.arange(1, 6) - 0.25))
    assert np.isnan(shifted[0, 0]) and np.isnan(shifted[6, 0])


def test_even_planes_use_the_smallest_gap() -> None:
    assert even_planes(np.array([0.0, 1.0, 3.0, 4.5])) == pytest.approx([0, 1, 2, 3, 4])
    with pytest.raises(ValueError, match="strictly increasing"):
        even_planes(np.array([0.0, 0.0, 1.0]))


def test_interpolation_along_the_normal_is_linear() -> None:
    distances = np.array([0.0, 1.0, 4.0])
    stack = distances[:, None, None] * np.ones((3, 2, 2)) * 7  # value = 7 * distance
    planes = np.array([0.0, 0.5, 2.0, 4.0])
    assert interpolate_planes(stack, distances, planes)[:, 0, 0] == pytest.approx(7 * planes)


def test_integer_volumes_stay_integer_and_4d_is_resampled_per_time_point() -> None:
    distances = np.array([0.0, 1.0, 3.0])
    planes = even_planes(distances)
    volume = np.stack([np.full((3, 2, 2), t * 100, dtype=np.int16) for t in range(2)])
    volume[:, :, 0, 0] += np.array([0, 10, 30], dtype=np.int16)
    result = resample_values(volume, Resampling(distances, planes, None, "uneven"))
    assert result.dtype == np.int16
    assert result.shape == (2, 4, 2, 2)
    assert list(result[1, :, 0, 0]) == [100, 110, 120, 130]
