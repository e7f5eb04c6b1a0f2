"""Fuzzing: real DICOM files (generated, and a few scanner files from ../shared/data when they
are there) with their headers mutated — bytes flipped, cut short, element values and lengths
replaced. ``scan_file`` and a whole ``parse_folder`` run must never raise and never hang.

Bounded for CI; ``RELIABILITY_FUZZ_EXAMPLES=5000`` runs a longer campaign (see docs/reliability.md).
"""

from __future__ import annotations

import os
import struct
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement

from reliability_support import LONG_LENGTH_VRS, OUTPUTS, PIXEL_DATA, time_limit
from series_selection.parser.run import parse_folder
from series_selection.parser.scan import scan_file
from series_selection_tools.samples.synthetic import ct_series, mr_series, write_series

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
SHARED_FILES = (
    "dcm_qa_enh/In/Siemens/XA10/6_1.dcm",  # enhanced multi-frame MR
    "dcm_qa_mosaic/In/ep2d_Int_4/IM-0003-0001.dcm",  # Siemens mosaic with a CSA header
    "dcm_qa_philips_enh/In/cl/2001_0001.dcm",  # Philips enhanced, private sequences
    "dcm_qa_nih/In/20180918GE/mr_0004/axial_epi_fmri_interleaved_i_to_s-00001.dcm",  # GE
    "dcm_qa_ts/In/1.dcm",  # another transfer syntax
    "highdicom/dx_image.dcm",
)
EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "0"))
SECONDS_PER_EXAMPLE = 20
NASTY_VALUES = (
    b"nan", b"-inf", b"1e999", b"-0", b"0\\0\\0", b"1\\" * 40, b"\\", b"\0" * 8,
    b"99999999999999999999", b"-1", b"\xff\xfe", b"../../x", b"ISO 2022 IR 87", b"\x1b$B",
)  # fmt: skip
"""Values parsers tend to trip on: non-finite and out-of-range numbers, empty multi-values."""


@dataclass(frozen=True)
class Element:
    """Where one top-level header element sits in its file."""

    length_at: int
    length_size: int
    value_at: int
    length: int


@dataclass(frozen=True)
class Seed:
    """A file to mutate and the layout of its header."""

    name: str
    data: bytes
    header_end: int
    elements: tuple[Element, ...]


@cache
def seeds() -> tuple[Seed, ...]:
    """Generated CT and MR slices, then whichever shared scanner files exist."""
    folder = Path(tempfile.mkdtemp(prefix="fuzz-seeds-"))
    paths = [
        write_series(folder / "ct", ct_series(slices=1, rows=12, columns=10), seed=31).files[0],
        write_series(folder / "mr", mr_series(slices=1, rows=10, columns=12), seed=32).files[0],
    ]
    paths += [SHARED_DATA / name for name in SHARED_FILES if (SHARED_DATA / name).is_file()]
    return tuple(_seed(path) for path in paths)


def _seed(path: Path) -> Seed:
    data = path.read_bytes()
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    elements: list[Element] = []
    for tag in dataset.keys():  # noqa: SIM118 - the raw elements, not their values
        raw: Any = dataset.get_item(tag)  # raw until its value is asked for
        if not isinstance(raw, RawDataElement) or raw.length == 0xFFFFFFFF:
            continue
        size = 4 if dataset.original_encoding[0] or raw.VR in LONG_LENGTH_VRS else 2
        elements.append(Element(raw.value_tell - size, size, raw.value_tell, raw.length))
    pixels = struct.pack("<HH", *PIXEL_DATA)
    header_end = data.rfind(pixels)
    return Seed(path.name, data, header_end if header_end > 0 else len(data), tuple(elements))


@st.composite
def mutated_files(draw: st.DrawFn) -> bytes:
    """A seed file with one to four header mutations."""
    seed = draw(st.sampled_from(seeds()))
    data = bytearray(seed.data)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "value", "length"]))
        end = min(seed.header_end, len(data))
        if kind == "flip" and end > 0:
            at = draw(st.integers(0, end - 1))
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[draw(st.integers(0, end)) :]
        elif seed.elements and len(data) == len(seed.data):
            element = draw(st.sampled_from(seed.elements))
            if kind == "value":
                value = draw(st.one_of(st.binary(max_size=300), st.sampled_from(NASTY_VALUES)))
                value += b"\0" * (len(value) % 2)
                stated = struct.pack("<I" if element.length_size == 4 else "<H", len(value))
                end_of_value = element.value_at + element.length
                data[element.length_at : end_of_value] = stated + value
            else:
                fmt = "<I" if element.length_size == 4 else "<H"
                length = draw(st.integers(0, 256**element.length_size - 1))
                data[element.length_at : element.value_at] = struct.pack(fmt, length)
    return bytes(data)


def fuzz_settings(default_examples: int) -> settings:
    return settings(
        max_examples=EXAMPLES or default_examples,
        deadline=None,  # a hang is caught by time_limit; slow examples are not failures
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        derandomize=not EXAMPLES,  # CI explores the same examples every run
        database=None,
    )


@fuzz_settings(default_examples=400)
@given(data=mutated_files())
def test_scan_file_never_raises(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "mutant").write_bytes(data)
        with time_limit(SECONDS_PER_EXAMPLE):
            scanned = scan_file(root, "mutant")
    assert (scanned.header is None) != (scanned.skip_reason is None)


@fuzz_settings(default_examples=100)
@given(data=mutated_files())
def test_parse_folder_never_raises(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        source, out = Path(folder) / "in", Path(folder) / "out"
        source.mkdir()
        (source / "mutant").write_bytes(data)
        with time_limit(SECONDS_PER_EXAMPLE):
            summary = parse_folder(source, out, "nii.gz", workers=1)
        assert summary.files == 1
        assert all((out / name).is_file() for name in OUTPUTS)


def test_seeds_include_scanner_files_when_present() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real scanner data not found at {SHARED_DATA}")
    assert len(seeds()) == 2 + len(SHARED_FILES)
    assert all(seed.elements for seed in seeds())
