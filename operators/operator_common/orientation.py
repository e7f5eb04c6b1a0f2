"""Anatomical plane of an image from its direction cosines (never from PatientPosition)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PLANES = ("SAGITTAL", "CORONAL", "AXIAL")  # the plane whose normal is LPS axis 0, 1, 2
OBLIQUE = "OBLIQUE"
MIN_PLANE_COSINE = 0.8
"""A plane is named when its normal is within about 37 degrees of a patient axis."""


def plane_of(image_orientation: Sequence[float]) -> str:
    """AXIAL, CORONAL, SAGITTAL or OBLIQUE for an ImageOrientationPatient (row, column cosines)."""
    if len(image_orientation) != 6:
        raise ValueError(f"ImageOrientationPatient needs 6 values, got {len(image_orientation)}")
    cosines = np.asarray(image_orientation, dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    length = float(np.linalg.norm(normal))
    if not np.isfinite(length) or length < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(image_orientation)} has parallel axes")
    normal /= length
    axis = int(np.argmax(np.abs(normal)))
    return PLANES[axis] if abs(normal[axis]) >= MIN_PLANE_COSINE else OBLIQUE
