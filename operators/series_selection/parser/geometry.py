"""Geometry of image stacks in patient coordinates (LPS, mm), as pure functions.

Conventions (DICOM PS3.3 C.7.6.2.1.1): ImageOrientationPatient holds the row cosine (direction
of increasing column index i) then the column cosine (direction of increasing row index j);
PixelSpacing holds (row spacing, column spacing), i.e. the step along j first, then along i.
The slice axis k points along ``normal = row_cosine x column_cosine``, so (i, j, k) is
right-handed, and slices are ordered by their distance along that normal.

Geometry that defines no regular grid raises ``GeometryError`` (a ``ValueError``); arguments of
the wrong shape, a misuse rather than bad data, raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from series_selection.common.errors import GeometryError

FloatArray = npt.NDArray[np.float64]

ORTHONORMAL_TOLERANCE = 1e-3
POSITION_TOLERANCE_MM = 0.05
"""Least deviation from a regular grid that counts as uneven spacing or tilt."""
RELATIVE_POSITION_TOLERANCE = 0.01
"""...or this fraction of the slice spacing, whichever is larger."""
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
MAX_MM = 1e6
"""Largest coordinate or spacing accepted, in mm (a kilometre): no scanner writes more, and
arithmetic on values this size cannot overflow."""
MIN_SPACING_MM = 1e-6
"""Smallest pixel spacing accepted (a nanometre; microscopes write about 2.5e-4 mm)."""


def _vector(values: Sequence[float] | FloatArray, size: int, name: str) -> FloatArray:
    array = np.asarray(values, dtype=float)
    if array.shape != (size,):
        raise ValueError(f"{name} needs {size} values, got shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise GeometryError(f"{name} holds non-finite values: {array.tolist()}")
    return array


def orientation_axes(image_orientation: Sequence[float]) -> tuple[FloatArray, FloatArray]:
    """The (row cosine, column cosine) of an ImageOrientationPatient, checked to be orthonormal."""
    cosines = _vector(image_orientation, 6, "ImageOrientationPatient")
    row, column = cosines[:3], cosines[3:]
    for name, axis in (("row", row), ("column", column)):
        if abs(np.linalg.norm(axis) - 1.0) > ORTHONORMAL_TOLERANCE:
            raise GeometryError(
                f"ImageOrientationPatient {name} cosine {axis.tolist()} is not a unit vector"
            )
    if abs(float(row @ column)) > ORTHONORMAL_TOLERANCE:
        raise GeometryError(
            f"ImageOrientationPatient axes are not perpendicular: {cosines.tolist()}"
        )
    return row, column


def slice_normal(image_orientation: Sequence[float]) -> FloatArray:
    """Unit normal of the image plane: row cosine x column cosine."""
    row, column = orientation_axes(image_orientation)
    normal = np.cross(row, column)
    return np.asarray(normal / np.linalg.norm(normal), dtype=float)


def distances_along(normal: Sequence[float] | FloatArray, positions: FloatArray) -> FloatArray:
    """Signed distance of each ImagePositionPatient (shape (n, 3)) along ``normal``."""
    unit = _vector(normal, 3, "normal")
    points = np.asarray(positions, dtype=float)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"positions must have shape (n, 3), got {points.shape}")
    return np.asarray(points @ unit, dtype=float)


def position_tolerance(spacing: float) -> float:
    """How far (mm) a slice may sit from its ideal place before the stack counts as irregular."""
    return max(POSITION_TOLERANCE_MM, RELATIVE_POSITION_TOLERANCE * abs(spacing))


def regular_slice_spacing(sorted_distances: FloatArray) -> float:
    """The slice spacing of a stack whose sorted distances lie on a regular grid.

    Raises
    ------
    GeometryError
        When every slice shares one position, or a gap is uneven beyond
        ``position_tolerance``.
    ValueError
        When there are fewer than two distances, or they are not sorted.
    """
    distances = np.asarray(sorted_distances, dtype=float)
    if distances.ndim != 1 or distances.size < 2:
        raise ValueError("at least two slice distances are needed for a spacing")
    if np.any(np.diff(distances) < 0):
        raise ValueError("slice distances must be sorted ascending")
    spacing = float(distances[-1] - distances[0]) / (distances.size - 1)
    if spacing <= 0:
        raise GeometryError("all slices share one position")
    ideal = distances[0] + spacing * np.arange(distances.size)
    worst = float(np.max(np.abs(distances - ideal)))
    if worst > position_tolerance(spacing):
        gaps = np.diff(distances)
        raise GeometryError(
            f"uneven slice spacing: gaps from {gaps.min():.3f} to {gaps.max():.3f} mm "
            f"(a slice is {worst:.3f} mm off a regular {spacing:.3f} mm grid)"
        )
    return spacing


def in_plane_drift(normal: Sequence[float] | FloatArray, positions: FloatArray) -> float:
    """Largest in-plane offset (mm) of any slice origin from the first slice's normal line.

    Zero for a stack whose origins step straight along the normal; large under gantry tilt.
    """
    unit = _vector(normal, 3, "normal")
    points = np.asarray(positions, dtype=float)
    offsets = points - points[0]
    perpendicular = offsets - np.outer(offsets @ unit, unit)
    return float(np.max(np.linalg.norm(perpendicular, axis=1)))


def in_plane_offsets(
    image_orientation: Sequence[float], pixel_spacing: Sequence[float], positions: FloatArray
) -> FloatArray:
    """Each slice origin's offset from the first slice's, within the image plane, in voxels.

    Returns shape (n, 2): the offset along i (columns) and along j (rows). Zero for a stack
    whose origins step straight along the normal.
    """
    row, column = orientation_axes(image_orientation)
    row_spacing, column_spacing = _vector(pixel_spacing, 2, "PixelSpacing")
    points = np.asarray(positions, dtype=float)
    offsets = points - points[0]
    return np.stack([offsets @ row / column_spacing, offsets @ column / row_spacing], axis=1)


def affine_lps(
    image_orientation: Sequence[float],
    pixel_spacing: Sequence[float],
    first_position: Sequence[float],
    slice_step: Sequence[float] | FloatArray,
) -> FloatArray:
    """4x4 matrix taking voxel index (i, j, k, 1) to patient coordinates (LPS, mm).

    ``pixel_spacing`` is DICOM's (row spacing, column spacing); ``slice_step`` is the vector
    from one slice origin to the next.
    """
    row, column = orientation_axes(image_orientation)
    row_spacing, column_spacing = _vector(pixel_spacing, 2, "PixelSpacing")
    if min(row_spacing, column_spacing) < MIN_SPACING_MM:
        raise GeometryError(
            f"PixelSpacing must be at least {MIN_SPACING_MM:g} mm, got {list(pixel_spacing)}"
        )
    affine = np.eye(4)
    affine[:3, 0] = row * column_spacing
    affine[:3, 1] = column * row_spacing
    affine[:3, 2] = _vector(slice_step, 3, "slice step")
    affine[:3, 3] = _vector(first_position, 3, "ImagePositionPatient")
    return affine


def lps_to_ras(affine: FloatArray) -> FloatArray:
    """The same mapping expressed in RAS patient coordinates (NIfTI's convention)."""
    matrix = np.asarray(affine, dtype=float)
    if matrix.shape != (4, 4):
        raise ValueError(f"affine must be 4x4, got {matrix.shape}")
    return np.asarray(LPS_TO_RAS @ matrix, dtype=float)


QUATERNION_SCALAR_FLOOR = 0.4
"""The smallest quaternion scalar part a NIfTI qform is written with (see ``nifti_flips``)."""
FLIP_CHOICES: tuple[tuple[int, ...], ...] = ((), (0, 1), (0, 2), (1, 2))


def nifti_flips(affine: FloatArray, floor: float = QUATERNION_SCALAR_FLOOR) -> tuple[int, ...]:
    """The voxel axes (0 = i, 1 = j, 2 = k) a NIfTI file stores reversed so that its qform is
    as exact as its sform.

    NIfTI-1 keeps the rotation's quaternion as float32 b, c, d and derives its scalar part
    a = sqrt(1 - b^2 - c^2 - d^2): near a half turn (near-axial head-first slices, for one) a
    is near 0 and keeps few digits, and the qform turns by up to 0.05 degrees. Reversing two
    axes composes the rotation with a half turn about the third; of none, (i, j), (i, k),
    (j, k), in this order so that alike orientations are stored alike, the first that leaves
    a >= ``floor`` is chosen (one always leaves a >= 1/2). ``affine`` maps (i, j, k) to LPS.
    """
    from nibabel.quaternions import mat2quat

    matrix = lps_to_ras(affine)[:3, :3]
    rotation = matrix / np.linalg.norm(matrix, axis=0)
    if np.linalg.det(rotation) < 0:  # NIfTI's qfac -1: the k axis reversed
        rotation[:, 2] *= -1
    for flips in FLIP_CHOICES:
        flipped = rotation.copy()
        flipped[:, list(flips)] *= -1
        if abs(mat2quat(flipped)[0]) >= floor:
            return flips
    raise GeometryError(f"no storage order keeps the quaternion's scalar part >= {floor}")


def flipped_affine(affine: FloatArray, grid: Sequence[int], flips: Sequence[int]) -> FloatArray:
    """``affine`` for the same voxels stored with the axes ``flips`` reversed; ``grid`` is the
    voxel count along (i, j, k)."""
    flipped = np.array(affine, dtype=float)
    for axis in flips:
        flipped[:3, 3] += flipped[:3, axis] * (grid[axis] - 1)
        flipped[:3, axis] *= -1
    return flipped


def spacing_and_direction(affine: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Voxel sizes along i, j, k and the unit axis vectors (as columns) of an affine."""
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    return spacing, matrix / spacing
