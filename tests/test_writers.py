"""The MetaImage writer, read back by SimpleITK and compared with SimpleITK's own writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk

from series_selection.common.errors import ConversionError
from series_selection.common.models import Rescale
from series_selection.parser import writers
from series_selection.parser.geometry import FloatArray, spacing_and_direction
from series_selection.parser.writers import write_metaimage, write_nifti

IDENTITY = Rescale(1.0, 0.0, "identity")
DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]
DTYPES += ["float32", "float64"]
R = np.sqrt(0.5)


def _oblique() -> FloatArray:
    """Rotated about two axes, i flipped, anisotropic voxels, off-centre origin."""
    a, b = np.radians(20.0), np.radians(-35.0)
    about_z = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = about_z @ about_x @ np.diag([-0.7, 0.9, 2.5])
    affine[:3, 3] = [-120.25, 33.5, 71.125]
    return affine


AFFINES = {
    "axial": np.array(
        [[0.75, 0.0, 0.0, -180.0], [0.0, 0.75, 0.0, -150.5], [0.0, 0.0, 1.25, 40.0], [0, 0, 0, 1]]
    ),
    # axes permuted and reversed; negative zeros, as a DICOM orientation may hold
    "flipped": np.array(
        [[0.0, -0.0, -3.0, 10.0], [1.5, 0.0, -0.0, -0.0], [-0.0, -1.5, 0.0, 30.0], [0, 0, 0, 1]]
    ),
    "oblique": _oblique(),
    # |cosines| tie exactly: the header's AnatomicalOrientation follows ITK's tie-break
    "45-degrees": np.array(
        [[R, -R, 0.0, 1.0], [R, R, 0.0, 2.0], [0.0, 0.0, 1.0, 3.0], [0, 0, 0, 1]]
    ),
}


def _volume(shape: tuple[int, ...], dtype: str, seed: int = 0) -> npt.NDArray[Any]:
    """Values spread over the whole range of ``dtype``, extremes included."""
    rng = np.random.default_rng(seed)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        values = rng.normal(0.0, 1e3, shape).astype(kind)
    else:
        info = np.iinfo(kind)
        values = rng.integers(info.min, info.max, shape, dtype=kind, endpoint=True)
        values.flat[:2] = [info.min, info.max]
    return values


def _read(path: Path) -> tuple[npt.NDArray[Any], sitk.Image]:
    image = sitk.ReadImage(str(path))
    return sitk.GetArrayFromImage(image), image


def _write_with_simpleitk(
    path: Path, voxels: npt.NDArray[Any], affine: FloatArray, colour: bool
) -> None:
    """The same volume written by SimpleITK itself, the reference."""
    spacing, direction = spacing_and_direction(affine)
    extra = voxels.ndim - 3 - colour
    image = sitk.GetImageFromArray(voxels, isVector=colour)
    image.SetSpacing([*spacing.tolist(), *(1.0,) * extra])
    image.SetOrigin([*affine[:3, 3].tolist(), *(0.0,) * extra])
    full = np.eye(3 + extra)
    full[:3, :3] = direction
    image.SetDirection(full.flatten().tolist())
    sitk.WriteImage(image, str(path), useCompression=False)


def _assert_geometry(image: sitk.Image, affine: FloatArray, extra: int) -> None:
    """Spacing, origin and direction are what the affine says (extra axes: identity)."""
    spacing, direction = spacing_and_direction(affine)
    full = np.eye(3 + extra)
    full[:3, :3] = direction
    assert image.GetDimension() == 3 + extra
    assert image.GetSpacing() == (*spacing.tolist(), *(1.0,) * extra)
    assert image.GetOrigin() == (*affine[:3, 3].tolist(), *(0.0,) * extra)
    assert image.GetDirection() == tuple(full.flatten().tolist())


def _check(tmp_path: Path, voxels: npt.NDArray[Any], affine: FloatArray, colour: bool) -> None:
    """Written, read back by SimpleITK: the voxels, the affine's geometry, and the same as
    the volume SimpleITK writes, down to the header's text."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    ours.mkdir()
    theirs.mkdir()
    written = write_metaimage(ours / "v.mhd", voxels, affine, IDENTITY, colour)
    assert written == [ours / "v.raw", ours / "v.mhd"]
    _write_with_simpleitk(theirs / "v.mhd", voxels, affine, colour)

    values, image = _read(ours / "v.mhd")
    assert values.dtype == voxels.dtype.newbyteorder("=")
    np.testing.assert_array_equal(values, voxels)
    assert image.GetNumberOfComponentsPerPixel() == (3 if colour else 1)
    _assert_geometry(image, affine, voxels.ndim - 3 - colour)

    reference_values, reference = _read(theirs / "v.mhd")
    np.testing.assert_array_equal(values, reference_values)
    assert values.dtype == reference_values.dtype
    assert image.GetSpacing() == reference.GetSpacing()
    assert image.GetOrigin() == reference.GetOrigin()
    assert image.GetDirection() == reference.GetDirection()
    assert (ours / "v.mhd").read_text() == (theirs / "v.mhd").read_text()
    assert (ours / "v.raw").read_bytes() == (theirs / "v.raw").read_bytes()


@pytest.mark.parametrize("affine", AFFINES.values(), ids=AFFINES.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_3d_volume_reads_back(tmp_path: Path, dtype: str, affine: FloatArray) -> None:
    _check(tmp_path, _volume((4, 5, 6), dtype), affine, colour=False)


@pytest.mark.parametrize("affine", AFFINES.values(), ids=AFFINES.keys())
@pytest.mark.parametrize("dtype", DTYPES)
def test_4d_volume_reads_back(tmp_path: Path, dtype: str, affine: FloatArray) -> None:
    _check(tmp_path, _volume((3, 4, 5, 6), dtype), affine, colour=False)


@pytest.mark.parametrize("affine", AFFINES.values(), ids=AFFINES.keys())
@pytest.mark.parametrize("dtype", ["uint8", "uint16"])
def test_colour_volume_reads_back_as_3_component_vectors(
    tmp_path: Path, dtype: str, affine: FloatArray
) -> None:
    _check(tmp_path, _volume((4, 5, 6, 3), dtype), affine, colour=True)


def test_4d_colour_volume_reads_back(tmp_path: Path) -> None:
    _check(tmp_path, _volume((2, 4, 5, 6, 3), "uint8"), AFFINES["oblique"], colour=True)


def test_single_slice_reads_back(tmp_path: Path) -> None:
    _check(tmp_path, _volume((1, 5, 6), "int16"), AFFINES["flipped"], colour=False)


@pytest.mark.parametrize("layout", ["big-endian", "fortran-order"])
def test_any_memory_layout_is_written_little_endian_c_order(tmp_path: Path, layout: str) -> None:
    native = _volume((4, 5, 6), "int16")
    voxels = native.astype(">i2") if layout == "big-endian" else np.asfortranarray(native)
    write_metaimage(tmp_path / "v.mhd", voxels, AFFINES["oblique"], IDENTITY, colour=False)
    assert (tmp_path / "v.raw").read_bytes() == native.astype("<i2").tobytes()
    np.testing.assert_array_equal(_read(tmp_path / "v.mhd")[0], native)


def test_rewriting_gives_identical_bytes(tmp_path: Path) -> None:
    voxels = _volume((3, 4, 5), "float32")
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        write_metaimage(tmp_path / run / "v.mhd", voxels, AFFINES["oblique"], IDENTITY, False)
    for name in ("v.mhd", "v.raw"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_header_names_its_data_file_beside_it(tmp_path: Path) -> None:
    name = "1.2.840.113619.2.55_echo-2"
    write_metaimage(
        tmp_path / f"{name}.mhd", _volume((2, 3, 4), "int16"), np.eye(4), IDENTITY, False
    )
    lines = (tmp_path / f"{name}.mhd").read_text().splitlines()
    assert lines[-1] == f"ElementDataFile = {name}.raw"
    assert "BinaryDataByteOrderMSB = False" in lines


def test_a_kept_rescale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rescale"):
        write_metaimage(
            tmp_path / "v.mhd",
            _volume((2, 3, 4), "int16"),
            np.eye(4),
            Rescale(2.0, -1.0, "nifti_scl"),
            colour=False,
        )
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
@pytest.mark.parametrize("shape", [(4, 5, 6), (3, 4, 5, 6), (4, 5, 6, 3)], ids=["3d", "4d", "rgb"])
def test_reversed_views_are_written_in_pieces_as_their_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, shape: tuple[int, ...]
) -> None:
    # Pieces far smaller than one slice, one time point or one row: every level is split.
    monkeypatch.setattr(writers, "GZIP_PIECE", 16)
    colour = len(shape) == 4 and shape[-1] == 3
    voxels = _volume(shape, "uint8") if colour else _volume(shape, "int16").astype(">i2")
    reversed_view = np.flip(voxels, (0, 2))
    write_nifti(tmp_path / name, reversed_view, AFFINES["oblique"], IDENTITY, colour)
    image: Any = nib.load(tmp_path / name)
    stored = np.asanyarray(image.dataobj)
    if colour:
        stored = np.stack([stored[c] for c in ("R", "G", "B")], axis=-1)
        expected = reversed_view.transpose(2, 1, 0, 3)
    else:
        expected = reversed_view.T
    np.testing.assert_array_equal(stored, expected)


@pytest.mark.parametrize("shape", [(1, 1, 32768), (32768, 1, 1), (2, 32768, 1, 1)])
def test_an_axis_longer_than_nifti_holds_is_a_reason_not_a_file(
    tmp_path: Path, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ConversionError, match="32768 voxels along one axis: NIfTI-1 holds at most"):
        write_nifti(
            tmp_path / "v.nii", np.zeros(shape, np.int16), AFFINES["oblique"], IDENTITY, False
        )
    assert not list(tmp_path.iterdir())


def test_the_longest_axis_nifti_holds_is_written(tmp_path: Path) -> None:
    write_nifti(
        tmp_path / "v.nii", np.zeros((1, 1, 32767), np.int16), AFFINES["axial"], IDENTITY, False
    )
    assert nib.load(tmp_path / "v.nii").shape == (32767, 1, 1)
