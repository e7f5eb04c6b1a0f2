"""Volume writers, one per format. Each writes into a scratch folder; ``publish`` then moves
the finished files into place, so a reader never sees a half-written volume."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import nibabel as nib
import numpy as np
import numpy.typing as npt
from isal import igzip

from series_selection.common.errors import ConversionError
from series_selection.common.models import Rescale
from series_selection.parser.geometry import FloatArray, lps_to_ras, spacing_and_direction

GZIP_LEVEL = 3
"""ISA-L's level 3 deflates about 4 times faster than zlib-ng level 5 (8 times zlib level 6);
files are a few percent larger (docs/performance.md)."""
NIFTI_VOXEL_OFFSET = 352
GZIP_PIECE = 8 << 20
"""Voxel bytes are deflated this many at a time, so the compressed copy stays small."""


class Writer(Protocol):
    """Write ``voxels`` to ``path`` with its LPS ``affine``; return the files written.
    ``located`` is false for a 2D image without patient position: its affine then places it
    only in its own plane, and the file says the patient space is unknown."""

    def __call__(
        self,
        path: Path,
        voxels: npt.NDArray[Any],
        affine: FloatArray,
        rescale: Rescale,
        colour: bool,
        located: bool = True,
    ) -> list[Path]: ...


RGB24 = np.dtype([("R", "u1"), ("G", "u1"), ("B", "u1")])
METAIMAGE_TYPES = {
    ("i", 1): "MET_CHAR",
    ("u", 1): "MET_UCHAR",
    ("i", 2): "MET_SHORT",
    ("u", 2): "MET_USHORT",
    ("i", 4): "MET_INT",
    ("u", 4): "MET_UINT",
    ("i", 8): "MET_LONG_LONG",
    ("u", 8): "MET_ULONG_LONG",
    ("f", 4): "MET_FLOAT",
    ("f", 8): "MET_DOUBLE",
}
"""MetaIO element type by numpy kind and size, as ITK names them on 64-bit Linux."""


MAX_NIFTI_DIMENSION = 32767
"""NIfTI-1 stores each dimension as a signed 16-bit number."""


def write_nifti(
    path: Path,
    voxels: npt.NDArray[Any],
    affine: FloatArray,
    rescale: Rescale,
    colour: bool,
    located: bool = True,
) -> list[Path]:
    """Write ``voxels`` ((k, j, i) or (t, k, j, i), C order) as NIfTI-1 with sform = qform
    (codes 1, scanner space); not ``located``: both codes 0 (unknown space), spacing only.

    Colour voxels ((k, j, i, 3), 8-bit) are stored as RGB24.

    The header and the voxel block are written directly: nibabel would drop a scl_slope set on
    an in-memory image, and this way the voxel bytes need no reordering copy.
    """
    little_endian = voxels.dtype.newbyteorder("<")
    grid = voxels.shape[-2::-1] if colour else voxels.shape[::-1]
    if colour and voxels.dtype != np.uint8:
        raise ConversionError(f"{voxels.dtype} colour does not fit NIfTI RGB24: use MetaImage")
    if max(grid) > MAX_NIFTI_DIMENSION:
        raise ConversionError(
            f"{max(grid)} voxels along one axis: NIfTI-1 holds at most {MAX_NIFTI_DIMENSION} "
            "(MetaImage, --format mhd, holds more)"
        )
    ras = lps_to_ras(affine)
    header = nib.Nifti1Header()
    header.set_data_dtype(RGB24 if colour else little_endian)
    header.set_data_shape(grid)
    header.set_xyzt_units("mm", "sec")
    header.set_qform(ras if located else None, code=1 if located else 0)
    header.set_sform(ras if located else None, code=1 if located else 0)
    zooms = spacing_and_direction(affine)[0]
    header.set_zooms((*zooms, *(1.0,) * (len(grid) - 3)))
    if rescale.stored_as == "nifti_scl":
        header.set_slope_inter(rescale.slope, rescale.intercept)
    header["vox_offset"] = NIFTI_VOXEL_OFFSET
    header["descrip"] = b"dicom-parser"
    head = io.BytesIO()
    header.write_to(head)  # the 348-byte header, then the extension flag
    pieces = _c_order_pieces(voxels, little_endian)
    with path.open("wb") as file:
        file_head = head.getvalue().ljust(NIFTI_VOXEL_OFFSET, b"\0")
        if path.name.endswith(".gz"):
            # No name and a zero time in the gzip header: reruns write identical bytes.
            with igzip.IGzipFile("", "wb", GZIP_LEVEL, fileobj=file, mtime=0) as gzipped:
                gzipped.write(file_head)
                for piece in pieces:
                    gzipped.write(piece)
        else:
            file.write(file_head)
            file.writelines(pieces)
    return [path]


def _c_order_pieces(voxels: npt.NDArray[Any], dtype: np.dtype[Any]) -> Iterator[memoryview]:
    """The bytes of ``voxels`` as ``dtype`` in C order, at most about ``GZIP_PIECE`` at a time: an
    array stored with axes reversed (``np.flip``) is copied a piece at a time, never whole."""
    if voxels.ndim > 1 and voxels[0].nbytes > GZIP_PIECE:  # a time point, a huge slice
        for part in voxels:
            yield from _c_order_pieces(part, dtype)
        return
    step = max(1, GZIP_PIECE // max(1, voxels[0].nbytes))
    for start in range(0, len(voxels), step):
        piece = np.ascontiguousarray(voxels[start : start + step], dtype=dtype)
        yield piece.reshape(-1).view(np.uint8).data


def write_metaimage(
    path: Path,
    voxels: npt.NDArray[Any],
    affine: FloatArray,
    rescale: Rescale,
    colour: bool,
    located: bool = True,
) -> list[Path]:
    """Write ``voxels`` as MetaImage (``.mhd`` header + ``.raw`` data) with LPS geometry;
    colour as 3-component vector pixels; not ``located``: AnatomicalOrientation unknown.

    The header and the voxel block are written directly, with the keys, order and number
    format ITK's MetaIO writes: SimpleITK would first copy the whole volume into an image.
    """
    if rescale.stored_as == "nifti_scl":
        raise ValueError("MetaImage cannot store a rescale: apply it before writing")
    data = np.ascontiguousarray(voxels, dtype=voxels.dtype.newbyteorder("<"))
    element_type = METAIMAGE_TYPES.get((data.dtype.kind, data.dtype.itemsize))
    if element_type is None:
        raise ConversionError(f"{data.dtype} has no MetaImage element type")
    grid = data.shape[-2::-1] if colour else data.shape[::-1]
    spacing, direction = spacing_and_direction(affine)
    origin = np.asarray(affine, dtype=float)[:3, 3]
    extra = len(grid) - 3
    full = np.eye(3 + extra)
    full[:3, :3] = direction
    raw = path.with_suffix(".raw")
    fields = [
        ("ObjectType", "Image"),
        ("NDims", str(len(grid))),
        ("BinaryData", "True"),
        ("BinaryDataByteOrderMSB", "False"),
        ("CompressedData", "False"),
        ("TransformMatrix", _numbers(full.T.flatten())),  # one axis vector after another
        ("Offset", _numbers([*origin, *(0.0,) * extra])),
        ("CenterOfRotation", _numbers([0.0] * len(grid))),
    ]
    dimensions = " ".join(str(size) for size in grid)
    if extra or not located:  # ITK orients only 3D images; others get an unknown one
        fields += [("ElementSpacing", _numbers([*spacing, *(1.0,) * extra]))]
        fields += [("DimSize", dimensions), ("AnatomicalOrientation", "?" * len(grid))]
    else:
        fields += [("AnatomicalOrientation", _anatomical_orientation(direction))]
        fields += [("ElementSpacing", _numbers(spacing)), ("DimSize", dimensions)]
    if colour:
        fields += [("ElementNumberOfChannels", str(data.shape[-1]))]
    fields += [("ElementType", element_type), ("ElementDataFile", raw.name)]
    with raw.open("wb") as file:
        file.write(data.reshape(-1).view(np.uint8).data)
    path.write_bytes("".join(f"{key} = {value}\n" for key, value in fields).encode())
    return [raw, path]


def _numbers(values: Any) -> str:
    """Numbers as ITK writes them: 17 significant digits (C++ streams, ``%.17g``), and
    zero never negative."""
    return " ".join(f"{float(value) + 0.0:.17g}" for value in values)


def _anatomical_orientation(direction: FloatArray) -> str:
    """ITK's three-letter orientation (the side each axis comes from) of a 3x3 direction.

    Greedy, as ``itk::AnatomicalOrientation``: the largest remaining |cosine| (ties to the
    later patient axis, then image axis) fixes one image axis to one patient axis.
    """
    letters = ["?"] * 3
    free = [(abs(float(direction[p, a])), p, a) for p in range(3) for a in range(3)]
    while free:
        _, patient, axis = max(free)
        letters[axis] = "RLAPIS"[2 * patient + (direction[patient, axis] <= 0)]
        free = [f for f in free if f[1] != patient and f[2] != axis]
    return "".join(letters)


WRITERS: dict[str, Writer] = {"mhd": write_metaimage, "nii": write_nifti, "nii.gz": write_nifti}


def publish(files: list[Path], destination: Path) -> None:
    """Move finished files into ``destination`` in order (data before the header naming it)."""
    destination.mkdir(parents=True, exist_ok=True)
    for file in files:
        file.replace(destination / file.name)
