"""Resampling a stack whose slices are not on a rectangular, evenly spaced grid.

Two cases, both with linear interpolation and exact geometry:

- gantry tilt: every slice is parallel, but its origin drifts within the image plane. Each
  slice is shifted onto one common in-plane grid (wide enough to hold every slice whole);
- uneven spacing: slices sit at irregular distances along the normal. The stack is
  interpolated onto evenly spaced planes, as far apart as the closest two input slices.

Pure functions on arrays ordered (k, j, i).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from series_selection.parser.geometry import FloatArray

INTEGER_SNAP = 1e-3
"""In-plane shifts this close to a whole voxel count are taken as whole."""


@dataclass(frozen=True)
class InPlaneGrid:
    """Where each slice's pixel (0, 0) lands on the common grid, and that grid's size."""

    shifts: FloatArray  # (k, 2): column (i) and row (j) offset of each slice, in voxels
    start: tuple[int, int]  # the common grid's first column and row, relative to slice 0
    shape: tuple[int, int]  # the common grid's rows and columns


def in_plane_grid(offsets: FloatArray, rows: int, columns: int) -> InPlaneGrid:
    """The smallest common grid holding every slice, given each slice's (i, j) offset."""
    shifts = np.asarray(offsets, dtype=float)
    if shifts.ndim != 2 or shifts.shape[1] != 2:
        raise ValueError(f"offsets must have shape (k, 2), got {shifts.shape}")
    snapped = np.where(np.abs(shifts - np.rint(shifts)) < INTEGER_SNAP, np.rint(shifts), shifts)
    low = np.floor(snapped.min(axis=0)).astype(int)
    high = np.ceil(snapped.max(axis=0)).astype(int)
    return InPlaneGrid(
        shifts=snapped,
        start=(int(low[0]), int(low[1])),
        shape=(rows + int(high[1] - low[1]), columns + int(high[0] - low[0])),
    )


def shift_onto_grid(
    image: npt.NDArray[Any], shift: FloatArray, grid: InPlaneGrid, fill: float
) -> npt.NDArray[np.float64]:
    """One slice (j, i) resampled onto ``grid``; bilinear, ``fill`` where it has no data."""
    column_shift = float(shift[0]) - grid.start[0]
    row_shift = float(shift[1]) - grid.start[1]
    whole_rows, whole_columns = math.floor(row_shift), math.floor(column_shift)
    fraction_rows, fraction_columns = row_shift - whole_rows, column_shift - whole_columns
    source = image.astype(np.float64)
    weights = (
        ((0, 0), (1 - fraction_rows) * (1 - fraction_columns)),
        ((1, 0), fraction_rows * (1 - fraction_columns)),
        ((0, 1), (1 - fraction_rows) * fraction_columns),
        ((1, 1), fraction_rows * fraction_columns),
    )
    total = np.zeros(grid.shape)
    for (down, right), weight in weights:
        if weight == 0:
            continue
        placed = np.full(grid.shape, np.nan)
        top, left = whole_rows + down, whole_columns + right
        placed[top : top + source.shape[0], left : left + source.shape[1]] = source
        total += weight * placed
    return np.where(np.isnan(total), fill, total)


def even_planes(distances: FloatArray) -> FloatArray:
    """Evenly spaced plane distances from the first slice to the last, as far apart as the
    closest two slices (the last plane may fall short of the last slice by under one step)."""
    sorted_distances = np.asarray(distances, dtype=float)
    step, count = even_plane_step_and_count(sorted_distances)
    return np.asarray(sorted_distances[0] + step * np.arange(count), dtype=float)


def even_plane_step_and_count(distances: FloatArray) -> tuple[float, int]:
    """The step and number of the planes ``even_planes`` places, without placing them."""
    gaps = np.diff(distances)
    if distances.ndim != 1 or gaps.size == 0 or np.any(gaps <= 0):
        raise ValueError("distances must be strictly increasing, at least two")
    step = float(gaps.min())
    return step, math.floor((distances[-1] - distances[0]) / step + 1e-6) + 1


def interpolate_planes(
    stack: npt.NDArray[np.float64], distances: FloatArray, planes: FloatArray
) -> npt.NDArray[np.float64]:
    """Linear interpolation of ``stack`` (k, j, i) at slices ``distances`` onto ``planes``."""
    upper = np.clip(np.searchsorted(distances, planes, side="right"), 1, len(distances) - 1)
    lower = upper - 1
    span = distances[upper] - distances[lower]
    weight = np.clip((planes - distances[lower]) / span, 0.0, 1.0)[:, None, None]
    return np.asarray((1 - weight) * stack[lower] + weight * stack[upper], dtype=np.float64)


@dataclass(frozen=True)
class Resampling:
    """How a stack is brought onto a regular grid, and the sentence that says so."""

    distances: FloatArray  # each input slice's distance along the normal (ascending)
    planes: FloatArray | None  # output plane distances, when spacing is uneven
    grid: InPlaneGrid | None  # the common in-plane grid, under gantry tilt
    description: str


def resample_stack(
    stack: npt.NDArray[np.float64], resampling: Resampling, fill: float
) -> npt.NDArray[np.float64]:
    """Apply ``resampling`` to one stack (k, j, i) of values."""
    grid = resampling.grid
    if grid is not None:
        stack = np.stack(
            [
                shift_onto_grid(s, shift, grid, fill)
                for s, shift in zip(stack, grid.shifts, strict=True)
            ]
        )
    if resampling.planes is not None:
        stack = interpolate_planes(stack, resampling.distances, resampling.planes)
    return stack


def resample_values(voxels: npt.NDArray[Any], resampling: Resampling) -> npt.NDArray[Any]:
    """Resample a (k, j, i) or (t, k, j, i) volume; integers are rounded back to their type.

    Where a slice has no data on the common grid, the volume's minimum value is used.
    """
    values = voxels.astype(np.float64)
    fill = float(values.min())
    stacks = values.reshape((-1, *values.shape[-3:]))
    result = np.stack([resample_stack(stack, resampling, fill) for stack in stacks])
    result = result.reshape((*voxels.shape[:-3], *result.shape[-3:]))
    if np.issubdtype(voxels.dtype, np.integer):
        return np.rint(result).astype(voxels.dtype)
    return result.astype(np.float32)
