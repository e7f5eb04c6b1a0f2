"""Resource bombs: headers claiming gigabytes of data. The parser runs with its address space
capped at 2 GiB and a series limit (--max-series-bytes) of 512 MiB; each bomb must be refused
for what it claims (not because an allocation failed), the run must complete, and a good
series beside it must still be converted.

Never run these bombs without the cap: a 3.2 GB sparse image drives an uncapped parser past
20 GB of resident memory."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.uid import UID, JPEGBaseline8Bit

from reliability_support import (
    PIXEL_DATA,
    assert_clean_exit,
    assert_every_file_accounted_for,
    explicit_element,
    insert_element,
    load_outputs,
    run_parser,
)
from sample_studies.synthetic import ct_series, write_series

REPO = Path(__file__).resolve().parent.parent

MEMORY_LIMIT = 2 * 1024**3
MAX_SERIES_BYTES = MEMORY_LIMIT // 4
"""A series limit (--max-series-bytes) that fits the memory limit."""
ALLOCATION_FAILURES = ("MemoryError", "Unable to allocate", "Cannot allocate", "out of memory")


def bomb_dataset(donor: Path, name: str) -> pydicom.Dataset:
    """The donor file as the only instance of a series of its own."""
    dataset = pydicom.dcmread(donor)
    uid = pydicom.uid.generate_uid(prefix=None, entropy_srcs=["bomb", name])
    dataset.SeriesInstanceUID = uid
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = UID(f"{uid}.1")
    return dataset


def encoded(dataset: pydicom.Dataset) -> bytes:
    buffer = DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def huge_matrix_claim(donor: Path, path: Path) -> None:
    """65535 x 65535 pixels in a million frames, over a few bytes of pixel data."""
    dataset = bomb_dataset(donor, path.name)
    dataset.Rows = dataset.Columns = 65535
    dataset.NumberOfFrames = 1_000_000
    path.write_bytes(encoded(dataset))


def four_gigabyte_value(donor: Path, path: Path) -> None:
    """A header element stating a value length of 4 GB, in a 2 kB file."""
    element = explicit_element((0x0029, 0x1010), b"OB", bytes(8), 0xFFFFFFF0)
    path.write_bytes(insert_element(encoded(bomb_dataset(donor, path.name)), element))


def sparse_huge_image(donor: Path, path: Path) -> None:
    """A complete 40000 x 40000 16-bit image (3.2 GB) whose pixels are a hole in a sparse file."""
    dataset = bomb_dataset(donor, path.name)
    dataset.Rows = dataset.Columns = 40000
    data = encoded(dataset)
    size = 40000 * 40000 * 2
    head = data[: data.rindex(struct.pack("<HH", *PIXEL_DATA))]
    head += struct.pack("<HH2sHI", *PIXEL_DATA, b"OW", 0, size)
    path.write_bytes(head)
    os.truncate(path, len(head) + size)


def compressed_huge_frames(donor: Path, path: Path) -> None:
    """64 JPEG frames of 16384 x 16384 (16 GiB decoded) in a 2 kB file."""
    dataset = bomb_dataset(donor, path.name)
    dataset.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    dataset.Rows = dataset.Columns = 16384
    dataset.NumberOfFrames = 64
    dataset.BitsAllocated = dataset.BitsStored = 8
    dataset.HighBit = 7
    dataset.PixelRepresentation = 0
    dataset.PixelData = encapsulate([b"\xff\xd8\xff\xd9"] * 64)
    dataset["PixelData"].VR = "OB"
    path.write_bytes(encoded(dataset))


BOMBS: dict[str, tuple[Callable[[Path, Path], None], str | None]] = {
    "matrix-65535-million-frames": (huge_matrix_claim, None),
    "value-length-4GB": (four_gigabyte_value, None),
    "sparse-image-3GB": (sparse_huge_image, None),
    "jpeg-frames-16GiB": (compressed_huge_frames, None),
}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=bug, strict=True)) if bug else name
        for name, (_, bug) in BOMBS.items()
    ],
)
def test_bomb_is_refused_before_allocating(tmp_path: Path, name: str) -> None:
    source = tmp_path / "in"
    good = write_series(source / "good", ct_series(slices=3), seed=21)
    donor = write_series(tmp_path / "donor", ct_series(rows=8, columns=8, slices=1), seed=22)
    make, _ = BOMBS[name]
    make(donor.files[0], source / name)

    result = run_parser(
        source,
        tmp_path / "out",
        *("--workers", "2", "--max-series-bytes", str(MAX_SERIES_BYTES)),
        memory_limit=MEMORY_LIMIT,
        timeout=300,
    )

    assert_clean_exit(result)
    outputs = load_outputs(tmp_path / "out")
    report = outputs["parse-report.json"]
    files = assert_every_file_accounted_for(report, source)
    assert good.series_uid in outputs["series-images.json"]
    record = files[name]
    if record["status"] == "skipped":
        reason = record["reason"]
    else:
        (series,) = (s for s in report["series"] if s["SeriesInstanceUID"] != good.series_uid)
        assert series["volumes"] == 0
        reason = series["reason"]
    assert not reason.rstrip().endswith(":"), f"reason without detail: {reason!r}"
    assert not any(failure in reason for failure in ALLOCATION_FAILURES), reason


def test_running_out_of_memory_is_named(tmp_path: Path) -> None:
    source = tmp_path / "in"
    donor = write_series(tmp_path / "donor", ct_series(rows=8, columns=8, slices=1), seed=22)
    source.mkdir()
    sparse_huge_image(donor.files[0], source / "sparse-image-3GB")

    # A limit above the memory cap: the series is read, and the reading runs out of memory.
    limit = str(8 << 30)
    result = run_parser(
        source,
        tmp_path / "out",
        "--max-series-bytes",
        limit,
        memory_limit=MEMORY_LIMIT,
        timeout=300,
    )

    assert_clean_exit(result)
    (series,) = load_outputs(tmp_path / "out")["parse-report.json"]["series"]
    assert "out of memory" in series["reason"]


def test_a_full_disk_is_a_clear_error(tmp_path: Path) -> None:
    """Writes beyond 64 KiB fail (RLIMIT_FSIZE), as on a full disk: exit code 5, one line."""
    result = run_parser(REPO / "samples", tmp_path / "out", file_size_limit=64 << 10)
    assert_clean_exit(result, code=5)
    (error,) = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert "cannot keep the headers in a temporary file" in error
