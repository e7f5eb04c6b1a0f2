"""The one module that reads DICOM files: byte counts against pydicom's, numbers, the preamble
rule, and the line between a file's fault and a defect of ours."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pydicom
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import UID
from pydicom.valuerep import IS, DSfloat

from series_selection.common.errors import DicomReadError
from series_selection.parser import scan
from series_selection.parser.reading import (
    decoded_pixel_bytes,
    file_errors,
    finite_number,
    raised_in_library,
    read_dataset,
    read_header,
    stored_pixel_bytes,
)
from series_selection.parser.run import parse_folder
from series_selection_tools.samples.synthetic import ct_series, write_series


@given(
    rows=st.integers(1, 600),
    columns=st.integers(1, 600),
    samples=st.sampled_from([1, 3]),
    frames=st.integers(1, 40),
    bits=st.sampled_from([1, 8, 16, 32, 64]),
)
def test_pixel_byte_counts_agree_with_pydicom(
    rows: int, columns: int, samples: int, frames: int, bits: int
) -> None:
    dataset = Dataset()
    dataset.Rows, dataset.Columns, dataset.SamplesPerPixel = rows, columns, samples
    dataset.NumberOfFrames, dataset.BitsAllocated = frames, bits
    dataset.PhotometricInterpretation = "RGB" if samples == 3 else "MONOCHROME2"
    stored = stored_pixel_bytes(rows, columns, samples, frames, bits)
    decoded = decoded_pixel_bytes(rows, columns, samples, frames, bits)
    assert stored == get_expected_length(dataset, "bytes")
    assert decoded == get_expected_length(dataset, "pixels") * max(bits // 8, 1)


@given(st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**400), 10**400))
def test_finite_number_is_the_value_when_finite_else_the_default(value: float) -> None:
    try:
        expected = float(value)
    except OverflowError:
        expected = -1.0
    if not math.isfinite(expected):
        expected = -1.0
    assert finite_number(value, -1.0) == expected
    assert finite_number(str(value), -1.0) == expected
    assert finite_number([value, 7], -1.0) == expected


def test_finite_number_reads_what_pydicom_gives() -> None:
    assert finite_number(MultiValue(DSfloat, ["2.5", "3"]), 0.0) == 2.5
    assert finite_number(IS("12"), 0.0) == 12.0
    for nothing in (None, [], "", " ", "abc", b"\xff", "nan", "1e999", Dataset()):
        assert finite_number(nothing, 9.0) == 9.0


def test_a_file_without_its_preamble_is_read_only_when_it_starts_like_a_header(
    tmp_path: Path,
) -> None:
    (path,) = write_series(tmp_path / "ct", ct_series(slices=1, rows=8, columns=8)).files
    dataset = pydicom.dcmread(path)
    dataset.preamble = None
    del dataset.file_meta
    bare = io.BytesIO()
    dataset.save_as(bare, implicit_vr=True, little_endian=True)  # starts with group 0008
    bare_path = tmp_path / "bare.dcm"
    bare_path.write_bytes(bare.getvalue())
    assert read_dataset(bare_path).SOPInstanceUID == dataset.SOPInstanceUID
    with pytest.raises(InvalidDicomError):
        read_header(io.BytesIO(b"\x10\x00" + bare.getvalue()[2:]))


def test_what_pydicom_refuses_becomes_a_read_error_naming_the_file() -> None:
    with pytest.raises(DicomReadError, match=r"^a\.dcm: .*transfer syntax"), file_errors("a.dcm"):
        UID("1.2.3").is_encapsulated  # noqa: B018 - pydicom raises: not a transfer syntax


def test_a_defect_of_ours_passes_unchanged() -> None:
    with pytest.raises(TypeError) as raised, file_errors("a.dcm"):
        stored_pixel_bytes(None, 1, 1, 1, 8)  # type: ignore[arg-type]
    assert not raised_in_library(raised.value)


def test_scan_file_lets_a_defect_through_instead_of_calling_the_file_malformed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (path,) = write_series(tmp_path / "ct", ct_series(slices=1, rows=8, columns=8)).files

    def defect(*_: object) -> None:
        raise KeyError("a defect in our own code")

    monkeypatch.setattr(scan.HeaderSummary, "of", defect)
    with pytest.raises(KeyError, match="a defect"):
        scan.scan_file(path.parent, path.name)


def test_a_defect_in_conversion_fails_the_run_instead_of_becoming_a_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_series(tmp_path / "in", ct_series(slices=3, rows=8, columns=8))

    def defect(*_: object) -> None:
        raise TypeError("a defect in our own code")

    monkeypatch.setattr("series_selection.parser.convert.plan_volumes", defect)
    with pytest.raises(TypeError, match="a defect"):
        parse_folder(tmp_path / "in", tmp_path / "out", "nii", workers=1)
