"""Siemens mosaics: one stored image holding a whole stack of slices as tiles.

The tile count, the slice normal (whose sign says whether tiles run feet-to-head or
head-to-feet) and the position of the first tile come from the Siemens CSA header, read
by nibabel's ``nicom`` package.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from series_selection.common.errors import ConversionError
from series_selection.parser.reading import file_errors

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # nicom warns on import that its readers are experimental
    from nibabel.nicom import dicomwrappers


UIH_VFRAME = (
    "UIH VFRAME mosaic: the slices' positions are only in the private sequence (0065,1051), "
    "whose layout no reference conversion here checks: not converted"
)


def is_mosaic(dataset: Dataset) -> bool:
    """A Siemens mosaic: ImageType holds MOSAIC."""
    return "MOSAIC" in _image_type(dataset)


def is_uih_vframe(dataset: Dataset) -> bool:
    """A United Imaging (UIH) VFRAME mosaic: ImageType holds VFRAME."""
    return "VFRAME" in _image_type(dataset)


def _image_type(dataset: Dataset) -> list[str]:
    image_type = dataset.get("ImageType") or []
    return [str(v).upper() for v in image_type]


def mosaic_tiles(
    dataset: Dataset, pixels: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], list[tuple[float, float, float]]]:
    """The tiles of a mosaic as (slices, rows, columns) and each tile's ImagePositionPatient."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with file_errors(""):
                wrapper: Any = dicomwrappers.wrapper_from_data(dataset)
                count = int(wrapper.n_mosaic)
                first = np.asarray(wrapper.image_position, dtype=float)
                normal = np.asarray(wrapper.slice_normal, dtype=float)
        except (AttributeError, TypeError, ValueError) as error:  # no mosaic CSA header, no numbers
            raise ConversionError(f"Siemens mosaic without a usable CSA header: {error}") from error
    spacing = float(dataset.get("SpacingBetweenSlices") or dataset.get("SliceThickness") or 0)
    if count < 1 or spacing <= 0 or not np.all(np.isfinite(normal)) or first.shape != (3,):
        raise ConversionError("Siemens mosaic: tile count, slice spacing or normal is missing")
    per_side = math.ceil(math.sqrt(count))
    rows, columns = pixels.shape[0] // per_side, pixels.shape[1] // per_side
    if rows * per_side != pixels.shape[0] or columns * per_side != pixels.shape[1]:
        raise ConversionError(f"Siemens mosaic: {pixels.shape} does not split into {count} tiles")
    tiles = (
        pixels.reshape(per_side, rows, per_side, columns)
        .transpose(0, 2, 1, 3)
        .reshape(per_side * per_side, rows, columns)[:count]
    )
    positions = [tuple(float(v) for v in first + n * spacing * normal) for n in range(count)]
    return tiles, positions  # type: ignore[return-value]
