"""Pixels read straight from the file into a volume equal pydicom's ``pixel_array``: on real
scanner files, the samples, and generated files with awkward bit layouts."""

from __future__ import annotations

import warnings
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from series_selection.common.errors import ConversionError
from series_selection.parser.frames import StoredPixels, read_frames
from series_selection.parser.scan import list_files
from series_selection_tools.samples.synthetic import mr_series, write_series

REPO = Path(__file__).resolve().parent.parent


def write_image(
    path: Path,
    syntax: UID,
    bits_allocated: int,
    bits_stored: int,
    signed: bool,
    shape: tuple[int, int] = (5, 7),
) -> None:
    """A one-frame grayscale image whose unused high bits hold noise."""
    rng = np.random.default_rng(bits_allocated * 100 + bits_stored + signed)
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits_allocated // 8}")
    values = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, shape, dtype=dtype)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.ImagePositionPatient = [0, 0, 0]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.Rows, ds.Columns = shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    big_endian = syntax == ExplicitVRBigEndian
    ds.PixelData = values.astype(dtype.newbyteorder(">" if big_endian else "<")).tobytes()
    ds.save_as(path, enforce_file_format=True)


def assert_read_as_pydicom_reads(path: Path) -> bool:
    """Whether the file's pixels are read directly; either way they equal pixel_array."""
    frames = read_frames(path, path.name)
    if len(frames) != 1 or not isinstance(frames[0][1], StoredPixels):
        return False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = dcmread(path).pixel_array
    got = frames[0][1].read()
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)
    return True


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRLittleEndian])
@pytest.mark.parametrize(
    ("bits_allocated", "bits_stored"), [(8, 8), (8, 6), (16, 16), (16, 12), (32, 32), (32, 20)]
)
@pytest.mark.parametrize("signed", [False, True])
def test_native_pixels_are_read_directly_as_pydicom_reads_them(
    tmp_path: Path, syntax: UID, bits_allocated: int, bits_stored: int, signed: bool
) -> None:
    path = tmp_path / "image.dcm"
    write_image(path, syntax, bits_allocated, bits_stored, signed)
    assert assert_read_as_pydicom_reads(path)


def test_big_endian_and_truncated_pixels_go_through_pydicom(tmp_path: Path) -> None:
    write_image(tmp_path / "big.dcm", ExplicitVRBigEndian, 16, 12, True)
    assert not assert_read_as_pydicom_reads(tmp_path / "big.dcm")
    write_image(tmp_path / "cut.dcm", ExplicitVRLittleEndian, 16, 16, False)
    data = (tmp_path / "cut.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[:-10])
    with pytest.raises(
        ConversionError, match="pixel data holds 60 bytes where its header describes 70"
    ):
        read_frames(tmp_path / "cut.dcm", "cut.dcm")


@pytest.mark.slow
def test_real_files_are_read_as_pydicom_reads_them() -> None:
    roots = [REPO / "samples", REPO.parent / "shared" / "data"]
    direct = 0
    for root in (r for r in roots if r.is_dir()):
        for relative, problem in list_files(root):
            if problem is None:
                with suppress(ConversionError, InvalidDicomError):  # not an image: reported
                    direct += assert_read_as_pydicom_reads(root / relative)
    assert direct >= 10


def test_a_frame_of_another_type_is_cast_as_numpy_assigns(tmp_path: Path) -> None:
    """Slices of one volume stored unsigned and signed: the volume keeps the first's type."""
    write_image(tmp_path / "unsigned.dcm", ExplicitVRLittleEndian, 16, 16, False)
    ((_, stored),) = read_frames(tmp_path / "unsigned.dcm", "unsigned.dcm")
    assert isinstance(stored, StoredPixels)
    volume_slice = np.zeros(stored.shape, dtype=np.int16)
    stored.read_into(volume_slice)
    expected = np.zeros(stored.shape, dtype=np.int16)
    expected[...] = dcmread(tmp_path / "unsigned.dcm").pixel_array
    np.testing.assert_array_equal(volume_slice, expected)


def test_a_uih_vframe_mosaic_is_refused_by_name_not_read_as_one_slice(tmp_path: Path) -> None:
    """Its tiles' positions are only in the private sequence (0065,1051); read plainly it would
    be one slice of the whole mosaic at the first tile's position."""
    (path,) = write_series(tmp_path / "mr", mr_series(slices=1, rows=8, columns=8)).files
    dataset = dcmread(path)
    dataset.ImageType = ["ORIGINAL", "PRIMARY", "M", "VFRAME"]
    block = dataset.private_block(0x0065, "Image Private Header", create=True)
    block.add_new(0x50, "DS", "4")
    tiles = []
    for z in range(4):
        tile = Dataset()
        tile.ImagePositionPatient = [0.0, 0.0, 4.0 * z]
        tiles.append(tile)
    block.add_new(0x51, "SQ", tiles)
    dataset.save_as(path)
    with pytest.raises(ConversionError, match=r"UIH VFRAME mosaic: .*\(0065,1051\)"):
        read_frames(path, path.name)
