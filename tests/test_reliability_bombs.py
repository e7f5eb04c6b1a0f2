"""Resource bombs: headers claiming gigabytes of data. The parser runs with its address space
capped at 2 GiB and a series limit (--max-series-bytes) of 512 MiB; each bomb must be refused
for what it claims (not because an allocation failed), the run must complete, and a good
series beside it must still be converted.

Never run these bombs without the cap: a 3.2 GB sparse image drives an uncapped parser past
20 GB of resident memory."""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate, generate_frames
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import _read_file_meta_info
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import _SOF as JPEG_SOF
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    AllTransferSyntaxes,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000TransferSyntaxes,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from reliability_support import (
    PIXEL_DATA,
    assert_clean_exit,
    assert_every_file_accounted_for,
    explicit_element,
    insert_element,
    load_outputs,
    run_parser,
)
from series_selection.parser.bounds import (
    cgroup_cpu_quota,
    codestream_problem,
    inflated_size,
    usable_cpus,
)
from series_selection.parser.scan import scan_file
from series_selection_tools.samples.synthetic import ct_series, write_series

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


def deflated_zeros(donor: Path, path: Path) -> None:
    """A deflated data set of 4 MB holding a private value of 4,000 MiB of zeros."""
    dataset = bomb_dataset(donor, path.name)
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    data = encoded(dataset)
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]  # preamble, DICM, group length
    body = zlib.decompress(data[meta_end:], -zlib.MAX_WBITS)
    pixels = body.rindex(struct.pack("<HH", *PIXEL_DATA))
    megabytes = 4000
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    value = explicit_element((0x0029, 0x1010), b"OB", b"", megabytes << 20)
    # After a full flush the deflater starts afresh: one deflated megabyte of zeros repeats.
    head = deflater.compress(body[:pixels] + value) + deflater.flush(zlib.Z_FULL_FLUSH)
    zeros = deflater.compress(bytes(1 << 20)) + deflater.flush(zlib.Z_FULL_FLUSH)
    tail = deflater.compress(body[pixels:]) + deflater.flush()
    path.write_bytes(data[:meta_end] + head + zeros * megabytes + tail)


BOMBS: dict[str, tuple[Callable[[Path, Path], None], str | None]] = {
    "matrix-65535-million-frames": (huge_matrix_claim, None),
    "value-length-4GB": (four_gigabyte_value, None),
    "sparse-image-3GB": (sparse_huge_image, None),
    "jpeg-frames-16GiB": (compressed_huge_frames, None),
    "deflated-4MB-to-4GB": (deflated_zeros, None),
}


def parse_capped(source: Path, out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the parser under the memory cap and the series limit; its checked outputs and its
    report's records by path, every input file accounted for."""
    flags = ("--workers", "2", "--max-series-bytes", str(MAX_SERIES_BYTES))
    result = run_parser(source, out, *flags, memory_limit=MEMORY_LIMIT, timeout=300)
    assert_clean_exit(result)
    outputs = load_outputs(out)
    return outputs, assert_every_file_accounted_for(outputs["parse-report.json"], source)


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

    outputs, files = parse_capped(source, tmp_path / "out")
    report = outputs["parse-report.json"]
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


def decodable_encapsulated_syntaxes() -> set[UID]:
    """Every compressed transfer syntax the installed pydicom and its plugins decode."""
    syntaxes = set()
    for syntax in AllTransferSyntaxes:
        with suppress(NotImplementedError):
            if syntax.is_encapsulated and get_decoder(syntax).is_available:
                syntaxes.add(syntax)
    return syntaxes


CODESTREAM_DONORS = {
    JPEGBaseline8Bit: "SC_rgb_jpeg_dcmtk.dcm",
    JPEGExtended12Bit: "JPGExtended.dcm",
    JPEGLossless: "SC_rgb_jpeg_gdcm.dcm",  # selection value 1 is one of process 14's
    JPEGLosslessSV1: "SC_rgb_jpeg_gdcm.dcm",
    JPEGLSLossless: "MR_small_jpeg_ls_lossless.dcm",
    JPEGLSNearLossless: "JPEGLSNearLossless_16.dcm",
    JPEG2000Lossless: "MR_small_jp2klossless.dcm",
    JPEG2000: "SC_rgb_gdcm_KY.dcm",
    # openjpeg decodes part 1 codestreams under the HTJ2K syntaxes too: their headers are alike
    HTJ2KLossless: "MR_small_jp2klossless.dcm",
    HTJ2KLosslessRPCL: "MR_small_jp2klossless.dcm",
    HTJ2K: "JPEG2000.dcm",
    RLELossless: "MR_small_RLE.dcm",
}
"""A real frame of each compressed transfer syntax: files that come with pydicom."""
PIXEL_MODULE = (
    "Rows", "Columns", "SamplesPerPixel", "PhotometricInterpretation", "PlanarConfiguration",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation",
)  # fmt: skip
COMPRESSED = sorted(CODESTREAM_DONORS)


def test_every_compressed_syntax_pydicom_decodes_has_a_donor() -> None:
    assert set(CODESTREAM_DONORS) == decodable_encapsulated_syntaxes()


def donor_image(syntax: UID) -> tuple[pydicom.Dataset, bytes]:
    """The donor file of ``syntax`` and its first frame."""
    dataset = pydicom.dcmread(get_testdata_file(CODESTREAM_DONORS[syntax]))
    frames = generate_frames(dataset.PixelData, number_of_frames=1)
    return dataset, next(frames)


def compressed_image(donor: Path, path: Path, syntax: UID, frame: Callable[[bytes], bytes]) -> None:
    """The donor slice, as a series of its own, with the image of ``syntax``'s donor file and
    that file's first frame passed through ``frame``."""
    dataset = bomb_dataset(donor, path.name)
    source, codestream = donor_image(syntax)
    for keyword in PIXEL_MODULE:
        if keyword in source:
            setattr(dataset, keyword, source[keyword].value)
    dataset.file_meta.TransferSyntaxUID = syntax
    dataset.PixelData = encapsulate([frame(codestream)])
    dataset["PixelData"].VR = "OB"
    path.write_bytes(encoded(dataset))


def declaring(rows: int, columns: int, syntax: UID) -> Callable[[bytes], bytes]:
    """A frame whose codestream header declares ``rows`` x ``columns`` pixels instead."""

    def patch(frame: bytes) -> bytes:
        if syntax in JPEG2000TransferSyntaxes:  # SIZ after SOC: Xsiz, Ysiz, XOsiz, YOsiz
            left, top = struct.unpack_from(">2I", frame, 16)
            return frame[:8] + struct.pack(">2I", left + columns, top + rows) + frame[16:]
        at = 2  # JPEG and JPEG-LS: past the segments before SOF (length, precision, Y, X)
        while frame[at : at + 2] not in JPEG_SOF:
            at += 2 + struct.unpack_from(">H", frame, at + 2)[0]
        return frame[: at + 5] + struct.pack(">2H", rows, columns) + frame[at + 9 :]

    return patch


def rle_expanding(frame: bytes) -> bytes:
    """Two RLE segments: the low bytes, which pydicom's own decoder expands first, are 20
    million runs of 128 zeros (2.5 GB); the high bytes end after one byte."""
    low, high = b"\x81\x00" * 20_000_000, b"\x00\x00"
    return struct.pack("<16I", 2, 64, 64 + len(high), *[0] * 13) + high + low


@pytest.mark.parametrize("syntax", COMPRESSED, ids=lambda syntax: syntax.name)
def test_compressed_frames_are_decoded_only_at_their_dicom_size(
    tmp_path: Path, syntax: UID
) -> None:
    """Beside a good series and a good image of the same syntax, a frame whose codestream
    declares 40000 x 40000 pixels (6.4 GB as JPEG 2000 decodes it) over an image the DICOM
    header calls small; for RLE, a frame pydicom's own decoder would expand to 2.5 GB."""
    source = tmp_path / "in"
    good = write_series(source / "good", ct_series(slices=3), seed=21)
    donor = write_series(tmp_path / "donor", ct_series(rows=8, columns=8, slices=1), seed=22)
    compressed_image(donor.files[0], source / "compressed", syntax, lambda frame: frame)
    hostile = rle_expanding if syntax == RLELossless else declaring(40000, 40000, syntax)
    compressed_image(donor.files[0], source / "bomb", syntax, hostile)

    outputs, files = parse_capped(source, tmp_path / "out")
    report = outputs["parse-report.json"]
    assert {files[name]["status"] for name in ("compressed", "bomb")} == {"used"}
    series = {s["SeriesInstanceUID"]: s for s in report["series"]}
    compressed, bomb = (
        files[name]["SOPInstanceUID"].removesuffix(".1") for name in ("compressed", "bomb")
    )
    assert {uid: s["volumes"] for uid, s in series.items()} == {
        good.series_uid: 1,
        compressed: 1,
        bomb: 0,
    }
    reason = series[bomb]["reason"]
    assert not any(failure in reason for failure in ALLOCATION_FAILURES), reason
    if syntax != RLELossless:
        assert "codestream declares 40000 x 40000 pixels" in reason, reason


@settings(max_examples=200, deadline=None)
@given(
    syntax=st.sampled_from([s for s in COMPRESSED if s != RLELossless]),
    size=st.none() | st.tuples(st.integers(1, 65535), st.integers(1, 65535)),
)
def test_a_codestream_is_decoded_only_when_it_declares_the_dicom_size(
    syntax: UID, size: tuple[int, int] | None
) -> None:
    """Any size a JPEG, JPEG-LS or JPEG 2000 codestream header may declare (``None``: the
    DICOM header's) is refused unless it is the DICOM header's, before any decoder runs."""
    dataset, frame = donor_image(syntax)
    rows, columns = size or (dataset.Rows, dataset.Columns)
    dataset.PixelData = encapsulate([declaring(rows, columns, syntax)(frame)])
    problem = codestream_problem(dataset, syntax)
    assert (problem is None) == ((rows, columns) == (dataset.Rows, dataset.Columns)), problem


@given(segments=st.integers(0, 15))
def test_an_rle_frame_is_decoded_only_with_the_segments_its_image_needs(segments: int) -> None:
    dataset, frame = donor_image(RLELossless)  # 16-bit grayscale: two segments
    dataset.PixelData = encapsulate([struct.pack("<I", segments) + frame[4:]])
    problem = codestream_problem(dataset, RLELossless)
    assert (problem is None) == (segments == 2), problem


INFLATE_LIMIT = 64 << 10


@settings(max_examples=50, deadline=None)
@given(size=st.integers(0, 4 * INFLATE_LIMIT), seed=st.integers(0, 2**32 - 1))
def test_a_deflated_file_is_read_only_when_it_inflates_within_the_limit(
    tmp_path_factory: pytest.TempPathFactory, size: int, seed: int
) -> None:
    """A deflated file holding ``size`` bytes of a private value (zeros, text-like or random)
    is scanned when its data set inflates to at most the limit, refused otherwise."""
    folder = tmp_path_factory.mktemp("deflated")
    donor = write_series(folder / "donor", ct_series(rows=8, columns=8, slices=1), seed=22)
    dataset = bomb_dataset(donor.files[0], "deflated")
    dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    alphabet = np.random.default_rng(seed).integers(1, 256)
    value = np.random.default_rng(seed).integers(0, alphabet, size, dtype=np.uint8)
    dataset.add_new((0x0029, 0x1010), "OB", value.tobytes())
    data = encoded(dataset)
    meta_end = 144 + struct.unpack_from("<I", data, 140)[0]
    inflated = len(zlib.decompress(data[meta_end:], -zlib.MAX_WBITS))
    (folder / "deflated").write_bytes(data)

    scanned = scan_file(folder, "deflated", max_bytes=INFLATE_LIMIT)

    if inflated <= INFLATE_LIMIT:
        assert scanned.summary is not None, scanned.skip_reason
    else:
        assert scanned.skip_reason == (
            "deflated data set inflates to more than 64.0 KiB, the limit set by the memory "
            "available (--max-series-bytes): not read"
        )


@pytest.mark.skipif(os.geteuid() != 0, reason="a process limit root cannot escape needs root")
@pytest.mark.parametrize("limit", [2, 4, 5])
def test_workers_the_process_limit_refuses_are_done_without(tmp_path: Path, limit: int) -> None:
    """``--workers 4`` under a limit of ``limit`` processes and threads, fewer than the parser,
    four workers and the pool's two threads: the run goes on with those that started, and
    says so, in any of the places the system may refuse (a fork, a thread of the pool)."""
    result = run_parser(
        REPO / "samples", tmp_path / "out", "--workers", "4", process_limit=limit, timeout=120
    )

    assert_clean_exit(result)
    report = load_outputs(tmp_path / "out")["parse-report.json"]
    assert report["summary"]["volumes"] == 8
    warnings = [line for line in result.stderr.splitlines() if " WARNING " in line]
    assert warnings
    assert all("cannot run" in line and "worker processes" in line for line in warnings)


@given(
    padding=st.integers(0, 12_000),
    syntax=st.sampled_from(
        [ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian]
    ),
    group_length_error=st.integers(-200, 200),
)
@settings(max_examples=150, deadline=None)
def test_the_quick_look_at_the_file_meta_finds_every_deflated_file(
    padding: int, syntax: str, group_length_error: int
) -> None:
    """Whatever the file meta holds before the transfer syntax (a long version value) and
    whatever its group length claims, a file is inflated within the bound exactly when pydicom
    would read it as deflated."""
    meta = pydicom.dataset.FileMetaDataset()
    meta.FileMetaInformationVersion = b"\x00\x01" + b"\x00" * padding
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = syntax
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    pydicom.filewriter.write_file_meta_info(buffer, meta, enforce_standard=True)
    written = bytearray(buffer.getvalue())
    stated = struct.unpack_from("<I", written, 8)[0]
    struct.pack_into("<I", written, 8, max(0, stated + group_length_error))
    body = zlib.compress(b"\x08\x00\x60\x00CS\x02\x00CT", 9)[2:-4]
    data = io.BytesIO(b"\x00" * 128 + b"DICM" + bytes(written) + body)
    inflated = inflated_size(data, 1 << 20)
    assert data.tell() == 0
    data.seek(128 + 4)
    read_syntax = _read_file_meta_info(data).get("TransferSyntaxUID")
    assert (inflated is not None) == (read_syntax == DeflatedExplicitVRLittleEndian)


@pytest.mark.parametrize(
    ("files", "quota", "cpus"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5, 2),
        ({"cpu.max": "50000 100000\n"}, 0.5, 1),
        ({"cpu.max": "max 100000\n"}, None, None),
        ({"cpu/cpu.cfs_quota_us": "250000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.5, 3),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, None),
        ({"cpu.max": "garbage"}, None, None),
        ({}, None, None),
    ],
    ids=["v2-1.5", "v2-0.5", "v2-none", "v1-2.5", "v1-none", "unreadable", "absent"],
)
def test_workers_default_to_the_cpus_a_container_may_use(
    tmp_path: Path, files: dict[str, str], quota: float | None, cpus: int | None
) -> None:
    # A parser under a CPU limit (docker --cpus, a Kubernetes limit) on a large machine must
    # not fork one worker per CPU of the machine: each costs memory the limit does not have.
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cgroup_cpu_quota(tmp_path) == quota
    machine = len(os.sched_getaffinity(0))
    assert usable_cpus(tmp_path) == (machine if cpus is None else min(machine, cpus))
