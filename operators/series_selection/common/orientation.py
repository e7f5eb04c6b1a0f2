"""Anatomical plane of an image from its direction cosines (never from PatientPosition)."""

from __future__ import annotations

import math
from collections.abc import Sequence

PLANES = ("SAGITTAL", "CORONAL", "AXIAL")  # the plane whose normal is LPS axis 0, 1, 2
OBLIQUE = "OBLIQUE"
OBLIQUE_DEGREES = 30.0
"""A slice plane tilted more than this from the nearest of the three main planes is oblique."""


def plane_and_tilt(image_orientation: Sequence[float]) -> tuple[str, float]:
    """The plane (AXIAL, CORONAL, SAGITTAL or OBLIQUE) of an ImageOrientationPatient (row, then
    column cosines), and the angle in degrees between its normal and the nearest patient axis."""
    if len(image_orientation) != 6:
        raise ValueError(f"ImageOrientationPatient needs 6 values, got {len(image_orientation)}")
    rx, ry, rz, cx, cy, cz = (float(v) for v in image_orientation)
    normal = (ry * cz - rz * cy, rz * cx - rx * cz, rx * cy - ry * cx)
    length = math.sqrt(sum(c * c for c in normal))
    if not math.isfinite(length) or length < 1e-6:
        raise ValueError(f"ImageOrientationPatient {list(image_orientation)} has parallel axes")
    axis = max(range(3), key=lambda i: abs(normal[i]))
    tilt = math.degrees(math.acos(min(1.0, abs(normal[axis]) / length)))
    return (PLANES[axis] if tilt <= OBLIQUE_DEGREES else OBLIQUE), tilt


def plane_of(image_orientation: Sequence[float]) -> str:
    """AXIAL, CORONAL, SAGITTAL or OBLIQUE for an ImageOrientationPatient."""
    return plane_and_tilt(image_orientation)[0]
