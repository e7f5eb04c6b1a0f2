"""Small PNG pictures of each volume, made while its voxels are in memory: three planes through
its centre in radiological convention (``common.planes``), windowed for display, listed per
volume in ``series-images.json`` as ``previews``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydicom.dataset import Dataset

from series_selection.common.errors import DicomReadError, OutputError
from series_selection.common.jsonio import atomic_write_bytes
from series_selection.common.models import Rescale
from series_selection.common.planes import (
    MAX_PICTURE_SIZE,
    centre_pictures,
    display_window,
    to_colour,
    to_grey,
)
from series_selection.parser.reading import file_errors, finite_number, read_header

PREVIEWS_FOLDER = "previews"
PNG_COMPRESSION = 3
"""zlib level for the PNG files: small pictures, where higher levels only cost time."""


UNPLACED = "image"
"""The picture of an image without patient position."""


def write_previews(
    voxels: npt.NDArray[Any],
    affine_lps: npt.NDArray[np.float64],
    rescale: Rescale,
    colour: bool,
    photometric: str,
    header_file: Path,
    output_root: Path,
    stem: str,
    located: bool = True,
) -> dict[str, str]:
    """Write the pictures of one volume into ``output_root/previews``; return plane -> path
    relative to ``output_root``. The window comes from ``header_file`` (a file of the series).
    A 2D image without patient position (not ``located``) has one picture, ``image``, as
    stored: it lies in no anatomical plane."""
    # Values near the float64 limits (refused by no rule, written by no scanner) may overflow
    # on the way to grey levels: they are shown black or white, without a warning per volume.
    with np.errstate(over="ignore", invalid="ignore"):
        shown = _pictures(voxels, affine_lps, rescale, colour, photometric, header_file)
    written: dict[str, str] = {}
    for plane_of_volume, pixels in shown:
        plane = plane_of_volume if located else UNPLACED
        relative = f"{PREVIEWS_FOLDER}/{stem}_{plane}.png"
        buffer = io.BytesIO()
        Image.fromarray(pixels, "RGB" if colour else "L").save(
            buffer, format="PNG", compress_level=PNG_COMPRESSION
        )
        try:
            atomic_write_bytes(output_root / relative, buffer.getvalue())
        except OSError as error:
            raise OutputError(f"cannot write {relative}: {error.strerror or error}") from error
        written[plane] = relative
    return written


def _pictures(
    voxels: npt.NDArray[Any],
    affine_lps: npt.NDArray[np.float64],
    rescale: Rescale,
    colour: bool,
    photometric: str,
    header_file: Path,
) -> list[tuple[str, npt.NDArray[np.uint8]]]:
    """Each plane and its 8-bit pixels: colour as it is, grayscale windowed."""
    pictures = centre_pictures(voxels, affine_lps, 3 if colour else 1, MAX_PICTURE_SIZE)
    if colour:
        return [(picture.plane, to_colour(picture.values)) for picture in pictures]
    values = [picture.values for picture in pictures]
    if rescale.stored_as == "nifti_scl" and rescale.slope is not None:
        values = [v * rescale.slope + (rescale.intercept or 0.0) for v in values]
    centre, width, modality = _window_attributes(header_file)
    low, high = display_window(np.concatenate([v.ravel() for v in values]), centre, width, modality)
    invert = photometric == "MONOCHROME1"
    return [
        (picture.plane, to_grey(v, low, high, invert))
        for picture, v in zip(pictures, values, strict=True)
    ]


def _window_attributes(path: Path) -> tuple[float | None, float | None, str | None]:
    """WindowCenter, WindowWidth (first values) and Modality of a file; enhanced multi-frame
    objects give their window in the shared functional groups. ``None`` where absent."""
    try:
        with file_errors(""), path.open("rb") as handle:
            header = read_header(handle, defer_size=4096)
            return _window_of(header)
    except (DicomReadError, OSError, EOFError):  # gone or unreadable now: no window
        return None, None, None


def _window_of(header: Dataset) -> tuple[float | None, float | None, str | None]:
    modality = str(header.get("Modality", "") or "") or None
    voi: Dataset = header
    if "WindowCenter" not in header:
        shared = header.get("SharedFunctionalGroupsSequence")
        groups = shared[0].get("FrameVOILUTSequence") if shared else None
        if groups:
            voi = groups[0]
    nan = float("nan")
    centre = finite_number(voi.get("WindowCenter"), nan)
    width = finite_number(voi.get("WindowWidth"), nan)
    if centre != centre or width != width:  # NaN: absent or not a number
        return None, None, modality
    return centre, width, modality
