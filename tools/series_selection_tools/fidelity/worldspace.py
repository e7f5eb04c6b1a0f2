"""Compare two volumes where it matters: the value at the same point of the patient.

Each volume is read with its own library (nibabel for NIfTI, SimpleITK for MetaImage) into
voxel values and a 4x4 affine taking (i, j, k) to patient LPS millimetres. Voxel centres of
ours are mapped into the reference's index space; where they land on its voxel centres
(the grids coincide) the values are compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import SimpleITK as sitk

RAS_TO_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
GRID_TOLERANCE_VOXELS = 0.01


@dataclass(frozen=True)
class LoadedVolume:
    """Rescaled voxel values indexed (i, j, k[, t]) and the affine (i, j, k) -> LPS mm."""

    values: npt.NDArray[np.float64]
    affine_lps: npt.NDArray[np.float64]


@dataclass(frozen=True)
class Comparison:
    """How two volumes agree in world space."""

    compared_voxels: int
    max_abs_difference: float
    max_grid_offset_voxels: float
    max_affine_difference_mm: float
    """Largest difference between the voxel step vectors of the two affines (mm): zero when
    spacing and direction agree."""
    value_scale: tuple[float, float] = (1.0, 0.0)
    """Slope and intercept of the least-squares line ours = slope * reference + intercept."""
    max_linear_residual: float = float("inf")
    """Largest distance of any compared pair from that line: ~0 when the values differ only
    by a linear rescale (a different value convention, e.g. Philips precise scaling)."""

    def agrees(self, value_tolerance: float) -> bool:
        return (
            self.compared_voxels > 0
            and self.max_grid_offset_voxels <= GRID_TOLERANCE_VOXELS
            and self.max_abs_difference <= value_tolerance
        )


def load_volume(path: Path) -> LoadedVolume:
    """Read a NIfTI (.nii, .nii.gz) or MetaImage (.mhd) file."""
    if path.name.endswith((".nii", ".nii.gz")):
        image: Any = nib.load(path)
        affine = RAS_TO_LPS @ image.affine
        if image.get_data_dtype().names:  # RGB24 / RGBA32: colour channels on a last axis
            channels = np.asanyarray(image.dataobj)
            rgb = np.stack([channels[c] for c in ("R", "G", "B")], axis=-1)
            return LoadedVolume(rgb.astype(np.float64), affine)
        return LoadedVolume(np.asarray(image.get_fdata(dtype=np.float64)), affine)
    itk = sitk.ReadImage(str(path))
    values = sitk.GetArrayFromImage(itk).astype(np.float64)
    axes = itk.GetDimension()  # vector pixels add a last axis that stays last
    order = (*range(axes)[::-1], *range(axes, values.ndim))
    values = values.transpose(order)  # (.., k, j, i) -> (i, j, k, ..)
    size = 3
    direction = np.array(itk.GetDirection()).reshape(itk.GetDimension(), -1)[:size, :size]
    spacing = np.array(itk.GetSpacing())[:size]
    affine = np.eye(4)
    affine[:3, :3] = direction * spacing
    affine[:3, 3] = np.array(itk.GetOrigin())[:size]
    return LoadedVolume(values, affine)


def in_grid_of(
    volume: LoadedVolume, affine_lps: npt.NDArray[np.float64], tolerance_mm: float = 1e-3
) -> npt.NDArray[np.float64]:
    """``volume``'s values indexed on the grid ``affine_lps`` describes, where the two grids
    are the same but for the direction each axis is stored in (a NIfTI writer may store axes
    reversed); ``ValueError`` where they are not the same voxels in space."""
    values, affine = volume.values, np.array(volume.affine_lps, dtype=float)
    for axis in range(3):
        if np.dot(affine[:3, axis], affine_lps[:3, axis]) < 0:
            values = np.flip(values, axis)
            affine[:3, 3] += affine[:3, axis] * (values.shape[axis] - 1)
            affine[:3, axis] *= -1
    difference = np.max(np.abs(affine - affine_lps))
    if difference > tolerance_mm:
        raise ValueError(f"the grids differ by {difference:.3g} mm, not by reversed axes only")
    return values


def sample_points(volume: LoadedVolume, count: int) -> npt.NDArray[np.float64]:
    """``count`` voxel indices (n, 3) of ``volume``, drawn reproducibly."""
    shape = np.array(volume.values.shape[:3])
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, n, count) for n in shape], axis=1).astype(float)


def interpolate(volume: LoadedVolume, world: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Trilinear values of ``volume`` at LPS points (3, n); NaN where a neighbour is missing."""
    inverse = np.linalg.inv(volume.affine_lps)
    index = (inverse[:3, :3] @ world + inverse[:3, 3:4]).T
    index = np.where(np.abs(index - np.rint(index)) < 1e-4, np.rint(index), index)
    low = np.floor(index).astype(int)
    fraction = index - low
    shape = np.array(volume.values.shape[:3])
    result = np.zeros(len(index))
    valid = np.ones(len(index), dtype=bool)
    for corner in np.ndindex(2, 2, 2):
        offset = np.array(corner)
        weight = np.prod(np.where(offset, fraction, 1 - fraction), axis=1)
        point = low + offset
        needed = weight > 0
        inside = np.all((point >= 0) & (point < shape), axis=1)
        valid &= inside | ~needed
        clipped = np.clip(point, 0, shape - 1)
        result += weight * volume.values[tuple(clipped.T)]
    result[~valid] = np.nan
    return result


def compare(ours: LoadedVolume, reference: LoadedVolume, samples: int = 50_000) -> Comparison:
    """Sample voxel centres of ``ours``, find the same patient points in ``reference``."""
    indices = sample_points(ours, min(samples, int(np.prod(ours.values.shape[:3]))))
    world = ours.affine_lps[:3, :3] @ indices.T + ours.affine_lps[:3, 3:4]
    inverse = np.linalg.inv(reference.affine_lps)
    theirs = (inverse[:3, :3] @ world + inverse[:3, 3:4]).T
    nearest = np.rint(theirs)
    inside = np.all((nearest >= 0) & (nearest < np.array(reference.values.shape[:3])), axis=1)
    if not np.any(inside):
        return Comparison(0, float("inf"), float("inf"), float("inf"))
    offset = float(np.max(np.abs(theirs[inside] - nearest[inside])))
    ours_index = tuple(indices[inside].astype(int).T)
    ref_index = tuple(nearest[inside].astype(int).T)
    ours_values = ours.values[ours_index]
    ref_values = reference.values[ref_index]
    if ours_values.shape != ref_values.shape:
        return Comparison(int(inside.sum()), float("inf"), offset, float("inf"))
    difference = float(np.max(np.abs(ours_values - ref_values)))
    scale, residual = _linear_fit(ours_values.ravel(), ref_values.ravel())
    step_ours = ours.affine_lps[:3, :3]
    step_ref = reference.affine_lps[:3, :3]
    # Reference steps expressed along our axes: compare the patient-space vectors of one voxel.
    mapped = step_ref @ np.rint(np.linalg.solve(step_ref, step_ours))
    return Comparison(
        compared_voxels=int(inside.sum()),
        max_abs_difference=difference,
        max_grid_offset_voxels=offset,
        max_affine_difference_mm=float(np.max(np.abs(mapped - step_ours))),
        value_scale=scale,
        max_linear_residual=residual,
    )


def _linear_fit(
    ours: npt.NDArray[np.float64], reference: npt.NDArray[np.float64]
) -> tuple[tuple[float, float], float]:
    design = np.vstack([reference, np.ones_like(reference)]).T
    (slope, intercept), *_ = np.linalg.lstsq(design, ours, rcond=None)
    residual = float(np.max(np.abs(design @ (slope, intercept) - ours)))
    return (float(slope), float(intercept)), residual
