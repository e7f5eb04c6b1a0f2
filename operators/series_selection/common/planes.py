"""Pictures of a volume: three orthogonal planes through its centre, in radiological display
convention, sampled through the volume's affine (never by the array's axis order); pure
functions of arrays, no files.

A picture is a grid of square pixels in patient space. Its columns run along ``right`` and its
rows (top to bottom) along ``down``, both unit vectors in LPS (patient Left, Posterior,
Superior are +x, +y, +z):

- axial: patient left on the image's right, anterior up (seen from the feet);
- coronal: patient left on the image's right, superior up (seen from the front);
- sagittal: anterior on the image's left, superior up (seen from the patient's left).

A volume of one slice (a 2D image) is shown as it is: columns along its rows, rows along its
columns, one picture named after the plane nearest to it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

FloatArray = npt.NDArray[np.float64]

MAX_PICTURE_SIZE = 256
"""The long side of a picture, in pixels, at most."""

PLANE_AXES: Mapping[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
}
"""Per plane, the LPS directions of the image's ``right`` (columns) and ``down`` (rows)."""

PLANE_OF_NORMAL = ("sagittal", "coronal", "axial")  # the plane whose normal is LPS axis 0, 1, 2
_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # negative, positive end of each LPS axis
SECONDARY_LETTER = 0.3
"""A direction component at least this large (about 17 degrees) adds its letter."""

CT_SOFT_TISSUE = (40.0, 400.0)
"""The CT window (centre, width in HU) used when a series gives none."""
PERCENTILES = (1.0, 99.0)


@dataclass(frozen=True)
class Picture:
    """One plane of a volume: values (NaN outside the volume), its pixel size in mm, and the
    patient-direction letters of its four edges."""

    plane: str
    values: FloatArray
    """(rows, columns) for grayscale, (rows, columns, 3) for colour."""
    pixel_mm: float
    right: tuple[float, float, float]
    down: tuple[float, float, float]

    @property
    def edges(self) -> dict[str, str]:
        return edge_letters(self.right, self.down)


def direction_letters(vector: npt.ArrayLike) -> str:
    """The patient-direction letters of an LPS direction, strongest first: ``(1, 0, 0)`` is
    ``"L"``, ``(0, -0.6, 0.8)`` is ``"SA"``. Components under ``SECONDARY_LETTER`` (after
    normalising) are left out, the strongest never is."""
    v = np.asarray(vector, dtype=np.float64)
    length = float(np.linalg.norm(v))
    if not math.isfinite(length) or length == 0.0:
        raise ValueError(f"no direction: {list(v)}")
    v = v / length
    order = sorted(range(3), key=lambda axis: -abs(v[axis]))
    letters = [_LETTERS[order[0]][int(v[order[0]] > 0)]]
    letters += [_LETTERS[a][int(v[a] > 0)] for a in order[1:] if abs(v[a]) >= SECONDARY_LETTER]
    return "".join(letters)


def edge_letters(right: npt.ArrayLike, down: npt.ArrayLike) -> dict[str, str]:
    """The letters at the top, bottom, left and right edges of a picture whose columns run
    along ``right`` and rows along ``down``."""
    r, d = np.asarray(right, dtype=np.float64), np.asarray(down, dtype=np.float64)
    return {
        "top": direction_letters(-d),
        "bottom": direction_letters(d),
        "left": direction_letters(-r),
        "right": direction_letters(r),
    }


def nearest_plane(normal: npt.ArrayLike) -> str:
    """``axial``, ``coronal`` or ``sagittal``: the plane whose normal is nearest to ``normal``."""
    n = np.abs(np.asarray(normal, dtype=np.float64))
    return PLANE_OF_NORMAL[int(np.argmax(n))]


def first_volume(voxels: npt.NDArray[Any], channels: int = 1) -> npt.NDArray[Any]:
    """The 3D part of ``voxels`` stored as (k, j, i) or (t, k, j, i), with a last axis of 3
    for colour: the first time point of a 4D volume."""
    spatial = voxels.ndim - (1 if channels == 3 else 0)
    if spatial == 4:
        first: npt.NDArray[Any] = voxels[0]
        return first
    if spatial != 3:
        raise ValueError(f"voxels of shape {voxels.shape} are no volume")
    return voxels


def centre_pictures(
    voxels: npt.NDArray[Any],
    affine_lps: npt.ArrayLike,
    channels: int = 1,
    max_size: int = MAX_PICTURE_SIZE,
) -> list[Picture]:
    """Axial, coronal and sagittal pictures through the centre of a volume; one picture, as
        stored, for a volume of one slice.

        ``voxels`` is indexed (k, j, i) (4D: (t, k, j, i), the first time point is shown; colour:
        a last axis of 3), ``affine_lps`` maps (i, j, k, 1) to LPS mm. Pixels are square, the long
        side at most ``max_size``. A plane of the voxel grid is its central slice, resized; any
    other plane is sampled trilinearly at each pixel."""
    volume = first_volume(voxels, channels)
    affine = np.asarray(affine_lps, dtype=np.float64)
    shape = volume.shape[:3]
    centre = affine[:3, :3] @ ((np.array(shape[::-1], dtype=np.float64) - 1) / 2) + affine[:3, 3]
    if shape[0] == 1:
        right = _unit(affine[:3, 0])
        down = _unit(affine[:3, 1])
        plane = nearest_plane(np.cross(right, down))
        return [_picture(volume, affine, centre, plane, right, down, max_size)]
    return [
        _picture(volume, affine, centre, plane, np.array(right), np.array(down), max_size)
        for plane, (right, down) in PLANE_AXES.items()
    ]


def _unit(vector: FloatArray) -> FloatArray:
    unit: FloatArray = vector / np.linalg.norm(vector)
    return unit


def _picture(
    volume: npt.NDArray[Any],
    affine: FloatArray,
    centre: FloatArray,
    plane: str,
    right: FloatArray,
    down: FloatArray,
    max_size: int,
) -> Picture:
    """Sample the plane through ``centre`` spanned by ``right`` and ``down`` over the extent of
    the volume's box."""
    nk, nj, ni = volume.shape[:3]
    corners = np.array(
        [[i, j, k] for i in (-0.5, ni - 0.5) for j in (-0.5, nj - 0.5) for k in (-0.5, nk - 0.5)]
    )
    world = corners @ affine[:3, :3].T + affine[:3, 3] - centre
    along_x, along_y = world @ right, world @ down
    extent_x = float(along_x.max() - along_x.min())
    extent_y = float(along_y.max() - along_y.min())
    pixel_mm = max(extent_x, extent_y) / max_size
    columns = max(1, min(max_size, math.ceil(extent_x / pixel_mm - 1e-6)))
    rows = max(1, min(max_size, math.ceil(extent_y / pixel_mm - 1e-6)))
    # Pixel centres, symmetric about the volume centre.
    xs = (np.arange(columns) - (columns - 1) / 2) * pixel_mm
    ys = (np.arange(rows) - (rows - 1) / 2) * pixel_mm
    points = centre + xs[None, :, None] * right + ys[:, None, None] * down  # (rows, cols, 3)
    shape = (rows, columns, 3) if volume.ndim == 4 else (rows, columns)
    aligned = _aligned_slice(volume, affine, right, down)
    if aligned is not None:  # the plane is a plane of the voxel grid: resize that slice
        values = _resized(aligned, columns, rows)
    else:
        index: FloatArray = np.linalg.solve(
            affine[:3, :3], (points - affine[:3, 3]).reshape(-1, 3).T
        ).astype(np.float64)
        values = _trilinear(volume, index).reshape(shape)
    return Picture(
        plane=plane,
        values=values,
        pixel_mm=pixel_mm,
        right=(float(right[0]), float(right[1]), float(right[2])),
        down=(float(down[0]), float(down[1]), float(down[2])),
    )


ALIGNED = 0.9999
"""A voxel axis whose cosine with a picture axis exceeds this (0.8 degrees) lies along it."""


def _aligned_slice(
    volume: npt.NDArray[Any], affine: FloatArray, right: FloatArray, down: FloatArray
) -> npt.NDArray[np.float32] | None:
    """The slice of the voxel grid through its centre that the picture shows, arranged as the
    picture (rows along ``down``, columns along ``right``), when both picture axes lie along
    voxel axes; otherwise ``None``. Reading one slice costs far less than sampling points."""
    units = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    along_right, along_down = units.T @ right, units.T @ down  # cosines with the i, j, k axes
    axis_r, axis_d = int(np.argmax(np.abs(along_right))), int(np.argmax(np.abs(along_down)))
    if axis_r == axis_d or min(abs(along_right[axis_r]), abs(along_down[axis_d])) < ALIGNED:
        return None
    axis_n = 3 - axis_r - axis_d
    size = volume.shape[2 - axis_n]
    centre = (size - 1) / 2
    low, high = math.floor(centre), math.ceil(centre)
    middle = np.take(volume, low, axis=2 - axis_n).astype(np.float64)
    if high != low:  # an even count: halfway between the two middle slices
        middle = middle / 2 + np.take(volume, high, axis=2 - axis_n) / 2
    # Pillow resizes float32: values beyond its range (no scanner's) are shown at its limits.
    limit = float(np.finfo(np.float32).max)
    cut: npt.NDArray[np.float32] = np.clip(middle, -limit, limit).astype(np.float32)
    if 2 - axis_d > 2 - axis_r:  # the remaining array axes are (r, d): rows must be d
        cut = np.swapaxes(cut, 0, 1)
    if along_right[axis_r] < 0:
        cut = cut[:, ::-1]
    if along_down[axis_d] < 0:
        cut = cut[::-1]
    return cut


def _resized(cut: npt.NDArray[np.float32], columns: int, rows: int) -> FloatArray:
    """``cut`` (rows, columns[, 3]) resized to the picture's pixels by Pillow (bilinear,
    averaging over every source pixel when reducing)."""
    channels = [cut] if cut.ndim == 2 else [cut[..., c] for c in range(cut.shape[2])]
    resized = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(c), "F").resize(
                (columns, rows), Image.Resampling.BILINEAR
            ),
            dtype=np.float64,
        )
        for c in channels
    ]
    values: FloatArray = resized[0] if cut.ndim == 2 else np.stack(resized, axis=-1)
    return values


def _trilinear(volume: npt.NDArray[Any], index: FloatArray) -> FloatArray:
    """Values of ``volume`` (k, j, i[, c]) at fractional voxel indices ``index`` (3, n) as
    (i, j, k); NaN for points outside the volume's box."""
    sizes = np.array(volume.shape[2::-1], dtype=np.float64)[:, None]  # ni, nj, nk
    inside = np.all((index >= -0.5) & (index <= sizes - 0.5), axis=0)
    clamped = np.clip(index, 0, sizes - 1)
    low = np.floor(clamped).astype(np.intp)
    high = np.minimum(low + 1, sizes.astype(np.intp) - 1)
    frac = clamped - low
    channels = volume.shape[3:]
    nj, ni = volume.shape[1], volume.shape[2]
    flat = volume.reshape(-1, *channels)
    result = np.zeros((index.shape[1], *channels), dtype=np.float64)
    for corner_k in (0, 1):
        wk = frac[2] if corner_k else 1 - frac[2]
        k = high[2] if corner_k else low[2]
        for corner_j in (0, 1):
            wj = frac[1] if corner_j else 1 - frac[1]
            j = high[1] if corner_j else low[1]
            for corner_i in (0, 1):
                wi = frac[0] if corner_i else 1 - frac[0]
                i = high[0] if corner_i else low[0]
                weight = wk * wj * wi
                sampled = np.take(flat, (k * nj + j) * ni + i, axis=0).astype(np.float64)
                result += sampled * (weight[:, None] if channels else weight)
    result[~inside] = np.nan
    return result


def display_window(
    values: npt.ArrayLike,
    centre: float | None = None,
    width: float | None = None,
    modality: str | None = None,
) -> tuple[float, float]:
    """The range of values shown from black to white: the series' window (centre and width,
    as DICOM's VOI LUT gives them) when present, else CT soft tissue for CT, else the 1st to
    99th percentile of ``values`` (NaN ignored)."""
    if centre is not None and width is not None and math.isfinite(centre) and width >= 1:
        return centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    if (modality or "").upper() == "CT":
        centre, width = CT_SOFT_TISSUE
        return centre - width / 2, centre + width / 2
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size == 0:
        return 0.0, 1.0
    low, high = np.percentile(finite, PERCENTILES)
    if high <= low:
        return float(low) - 0.5, float(low) + 0.5
    return float(low), float(high)


def to_grey(
    values: npt.ArrayLike, low: float, high: float, invert: bool = False
) -> npt.NDArray[np.uint8]:
    """Values as 8-bit grey, ``low`` black and ``high`` white (inverted for MONOCHROME1);
    NaN (outside the volume) black."""
    v = np.asarray(values, dtype=np.float64)
    scaled = np.clip((v - low) / (high - low), 0.0, 1.0)
    if invert:
        scaled = 1.0 - scaled
    scaled = np.where(np.isfinite(v), scaled, 0.0)
    grey: npt.NDArray[np.uint8] = np.rint(scaled * 255).astype(np.uint8)
    return grey


def to_colour(values: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Colour values (0-255 per channel) as 8-bit RGB; NaN (outside the volume) black."""
    v = np.asarray(values, dtype=np.float64)
    rgb: npt.NDArray[np.uint8] = np.rint(np.clip(np.nan_to_num(v, nan=0.0), 0, 255)).astype(
        np.uint8
    )
    return rgb
