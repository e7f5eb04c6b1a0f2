"""The values DICOM itself defines at a patient point, read straight from classic slices.

Each slice is read with pydicom and placed by its own ImagePositionPatient,
ImageOrientationPatient and PixelSpacing (PS3.3 C.7.6.2.1.1). A point between two parallel
slices gets the linear blend of the two, each sampled bilinearly: the reference for volumes
that had to be resampled (gantry tilt, uneven spacing).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pydicom

from series_selection_tools.fidelity.worldspace import LoadedVolume, interpolate, sample_points


@dataclass(frozen=True)
class DicomSlice:
    values: npt.NDArray[np.float64]  # (i, j): modality values, column index first
    affine_lps: npt.NDArray[np.float64]  # (i, j, k) -> LPS, k a unit step along the normal


def read_slices(files: Iterable[Path]) -> list[DicomSlice]:
    """Classic single-frame slices, sorted along their (shared) normal."""
    slices = []
    for file in files:
        dataset = pydicom.dcmread(file)
        row = np.array(dataset.ImageOrientationPatient[:3], dtype=float)
        column = np.array(dataset.ImageOrientationPatient[3:], dtype=float)
        row_spacing, column_spacing = (float(v) for v in dataset.PixelSpacing)
        affine = np.eye(4)
        affine[:3, 0] = row * column_spacing
        affine[:3, 1] = column * row_spacing
        affine[:3, 2] = np.cross(row, column)
        affine[:3, 3] = np.array(dataset.ImagePositionPatient, dtype=float)
        slope = float(dataset.get("RescaleSlope", 1) or 1)
        intercept = float(dataset.get("RescaleIntercept", 0) or 0)
        values = dataset.pixel_array.astype(np.float64).T * slope + intercept
        slices.append(DicomSlice(values, affine))
    normal = slices[0].affine_lps[:3, 2]
    return sorted(slices, key=lambda s: float(s.affine_lps[:3, 3] @ normal))


def values_at(slices: list[DicomSlice], world: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """DICOM's values at LPS points (3, n): NaN outside the stack or its slices."""
    normal = slices[0].affine_lps[:3, 2]
    distances = np.array([s.affine_lps[:3, 3] @ normal for s in slices])
    along = normal @ world
    result = np.full(world.shape[1], np.nan)
    upper = np.searchsorted(distances, along - 1e-4)
    for index in range(len(slices)):
        here = np.abs(along - distances[index]) < 1e-4
        between = (
            (upper == index + 1) & ~here & (along < distances[min(index + 1, len(slices) - 1)])
        )
        if np.any(here):
            result[here] = _in_plane(slices[index], world[:, here])
        if np.any(between) and index + 1 < len(slices):
            weight = (along[between] - distances[index]) / (distances[index + 1] - distances[index])
            lower_values = _in_plane(slices[index], world[:, between])
            upper_values = _in_plane(slices[index + 1], world[:, between])
            result[between] = (1 - weight) * lower_values + weight * upper_values
    return result


def _in_plane(dicom_slice: DicomSlice, world: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Bilinear values of one slice at the projections of ``world`` onto its plane."""
    inverse = np.linalg.inv(dicom_slice.affine_lps)
    index = inverse[:3, :3] @ world + inverse[:3, 3:4]
    flat = np.eye(4)
    flat[:3, :3] = dicom_slice.affine_lps[:3, :3]
    flat[:3, 3] = dicom_slice.affine_lps[:3, 3]
    plane = LoadedVolume(dicom_slice.values[:, :, None], flat)
    projected = flat[:3, :3] @ np.vstack([index[:2], np.zeros(index.shape[1])]) + flat[:3, 3:4]
    return interpolate(plane, projected)


def compare_with_dicom(
    ours: LoadedVolume, slices: list[DicomSlice], samples: int = 50_000
) -> tuple[int, float]:
    """Points compared (inside the DICOM stack) and the largest absolute value difference."""
    indices = sample_points(ours, min(samples, int(np.prod(ours.values.shape[:3]))))
    world = ours.affine_lps[:3, :3] @ indices.T + ours.affine_lps[:3, 3:4]
    expected = values_at(slices, world)
    inside = ~np.isnan(expected)
    if not np.any(inside):
        return 0, float("inf")
    values = ours.values[tuple(indices[inside].astype(int).T)]
    return int(inside.sum()), float(np.max(np.abs(values - expected[inside])))
