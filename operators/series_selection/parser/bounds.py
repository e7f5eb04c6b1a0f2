"""Bounds on what one input may cost, checked before anything is inflated or decoded.

A series may claim at most ``--max-series-bytes`` of pixel data (checked on its headers). A
decoder, though, allocates what each frame's own codestream declares, and pydicom inflates a
deflated data set whole: both are checked here against the DICOM header and the bound first.
"""

from __future__ import annotations

import math
import os
import resource
import struct
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from isal import isal_zlib
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.pixels.decoders.rle import _rle_parse_header
from pydicom.pixels.utils import _get_jpg_parameters, as_pixel_options
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from series_selection.common.errors import ConversionError, DicomReadError
from series_selection.parser.reading import file_errors

INFLATE_CHUNK = 1 << 20
INFLATE_ERROR = cast("type[Exception]", isal_zlib.error)  # isal's stub types it as an instance
META_PEEK = 8192
"""Bytes read to find the transfer syntax without parsing the file meta group."""
DEFLATED_UID = DeflatedExplicitVRLittleEndian.encode()
TRANSFER_SYNTAX_ELEMENT = 0x0010
LONG_LENGTH_VRS = frozenset(
    {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
)
"""VRs whose explicit-VR length field has 4 bytes (after 2 reserved ones)."""
JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  \r\n\x87\n"
J2K_START = b"\xff\x4f\xff\x51"  # SOC, then SIZ
DECODING: dict[str, Any] = {"decoding_plugin": "pylibjpeg", "allow_excess_frames": False}
"""How compressed frames are decoded: by the pylibjpeg plugins alone, which fill a frame of the
DICOM header's size (pydicom's own RLE decoder, tried when one fails, expands a segment without
bound), and never past NumberOfFrames (pydicom decodes extra fragments by default)."""


CGROUP_ROOT = Path("/sys/fs/cgroup")


def usable_cpus(cgroup_root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: those it may run on, or fewer under a cgroup CPU quota (a
    container's ``--cpus``, a Kubernetes CPU limit), rounded up."""
    cpus = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    return cpus if quota is None else max(1, min(cpus, math.ceil(quota)))


def cgroup_cpu_quota(cgroup_root: Path = CGROUP_ROOT) -> float | None:
    """The CPU time a cgroup grants per unit of time (1.5: one and a half CPUs), from cgroup v2's
    ``cpu.max`` or v1's ``cpu.cfs_quota_us``; ``None`` where no quota is set or readable."""
    try:
        v2 = cgroup_root / "cpu.max"
        if v2.is_file():
            quota, period = v2.read_text().split()[:2]
        else:
            v1 = cgroup_root / "cpu"
            quota = (v1 / "cpu.cfs_quota_us").read_text().strip()
            period = (v1 / "cpu.cfs_period_us").read_text().strip()
        granted = int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):  # no quota: "max", -1, or no such files
        return None
    return granted if granted > 0 else None


def usable_memory() -> int:
    """Bytes this process may use: physical memory, or less under a cgroup or rlimit cap."""
    limits = [os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")]
    cgroup = Path("/sys/fs/cgroup/memory.max")
    if cgroup.is_file() and cgroup.read_text().strip().isdigit():
        limits.append(int(cgroup.read_text()))
    address_space, _ = resource.getrlimit(resource.RLIMIT_AS)
    if address_space != resource.RLIM_INFINITY:
        limits.append(address_space)
    return min(limits)


def default_max_series_bytes() -> int:
    """Largest pixel data a series may claim: converting takes about twice that in memory, so at
    most a third of the memory available (and never over 8 GiB)."""
    return min(8 << 30, usable_memory() // 3)


def size_text(count: int) -> str:
    """A byte count for people: 512 bytes, 24.0 KiB, 8.0 GiB."""
    if count < 1024:
        return f"{count} bytes"
    size = count / 1024
    for unit in ("KiB", "MiB"):
        if size < 1024:
            return f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def inflated_size(file: BinaryIO, limit: int) -> int | None:
    """The size the deflated data set in ``file`` inflates to, counted no further than just
    past ``limit`` (pydicom inflates it whole, in memory; here it is inflated a chunk at a time);
    ``None`` when the file is not deflated. The file is left where it was."""
    start = file.tell()
    try:
        if _meta_names_no_deflate(file.read(META_PEEK)):
            return None
        file.seek(start)
        try:
            with file_errors(""):
                read_preamble(file, True)
                syntax = _read_file_meta_info(file).get("TransferSyntaxUID")
        except DicomReadError:  # not a readable file meta group: pydicom says what is wrong
            return None
        if syntax != DeflatedExplicitVRLittleEndian:
            return None
        inflater = isal_zlib.decompressobj(-isal_zlib.MAX_WBITS)  # ISA-L: about 4x zlib's speed
        size = 0
        while not inflater.eof and size <= limit:
            data = inflater.unconsumed_tail or file.read(INFLATE_CHUNK)
            try:
                inflated = len(inflater.decompress(data, INFLATE_CHUNK))
            except INFLATE_ERROR as error:
                raise DicomReadError(f"deflated data set cannot be inflated: {error}") from error
            if not data and not inflated:
                break
            size += inflated
        return size
    finally:
        file.seek(start)


def _meta_names_no_deflate(head: bytes) -> bool:
    """Whether ``head``, a file's first bytes, holds its whole file meta group (after the
    128-byte preamble and ``DICM``, explicit VR, as the standard writes it) and no deflated
    transfer syntax in it: then the file is not deflated, and its meta is parsed only once.

    The group is walked element by element, as pydicom reads it: up to the first tag of
    another group, whatever its group length says."""
    if head[128:132] != b"DICM":
        return False
    at = 132
    while at + 8 <= len(head):
        group, element = struct.unpack_from("<HH", head, at)
        if group != 2:
            return True
        vr = head[at + 4 : at + 6]
        if not vr.isalpha() or not vr.isupper():
            return False
        if vr.decode() in LONG_LENGTH_VRS:
            if at + 12 > len(head):
                return False
            (length,), start = struct.unpack_from("<I", head, at + 8), at + 12
        else:
            (length,), start = struct.unpack_from("<H", head, at + 6), at + 8
        if element == TRANSFER_SYNTAX_ELEMENT and DEFLATED_UID in head[start : start + length]:
            return False
        at = start + length
    return False


class Declared(NamedTuple):
    """The size of a frame: as its codestream declares it, or as the DICOM header does."""

    rows: int
    columns: int
    samples: int
    bits: int

    def __str__(self) -> str:
        return f"{self.columns} x {self.rows} pixels, {self.samples} sample(s) of {self.bits} bits"


def decoded_pixels(dataset: Dataset) -> npt.NDArray[Any]:
    """The pixels pydicom decodes, once every compressed frame has been checked."""
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is not None and UID(syntax).is_transfer_syntax and UID(syntax).is_encapsulated:
        problem = codestream_problem(dataset, UID(syntax))
        if problem:
            raise ConversionError(problem)
        dataset.pixel_array_options(**DECODING)
    return np.asarray(dataset.pixel_array)


def codestream_problem(dataset: Dataset, syntax: UID) -> str | None:
    """Why the compressed frames of ``dataset`` must not be decoded: a frame whose codestream
    header declares another size than the DICOM header, or cannot be read."""
    check = CHECKS.get(syntax)
    if check is None:
        return f"{syntax.name} pixel data: its frame sizes cannot be checked, not decoded"
    options = as_pixel_options(dataset)
    expected = Declared(
        int(options["rows"]),
        int(options["columns"]),
        int(options.get("samples_per_pixel") or 1),
        int(options["bits_allocated"]),
    )
    count = int(options["number_of_frames"])
    frames = generate_frames(
        dataset.PixelData,
        number_of_frames=count,
        extended_offsets=options.get("extended_offsets"),
    )
    for number, frame in enumerate(islice(frames, count), start=1):
        problem = check(frame, expected)
        if problem:
            return f"frame {number}: {problem}, not decoded"
    return None


def _jpeg(frame: bytes, expected: Declared) -> str | None:
    header = _get_jpg_parameters(frame)
    if not header:
        return "no readable JPEG frame header (SOF)"
    found = Declared(header["height"], header["width"], header["components"], header["precision"])
    return _disagreement("JPEG", found, expected)


def _jpeg_2000(frame: bytes, expected: Declared) -> str | None:
    start = _codestream_start(frame)
    try:
        if frame[start : start + 4] != J2K_START:
            raise ValueError
        width, height, left, top = struct.unpack_from(">4I", frame, start + 8)
        (components,) = struct.unpack_from(">H", frame, start + 40)
        precision = max((frame[start + 42 + 3 * c] & 0x7F) + 1 for c in range(components))
    except (ValueError, IndexError, struct.error):
        return "no readable JPEG 2000 image header (SIZ)"
    found = Declared(height - top, width - left, components, precision)
    return _disagreement("JPEG 2000", found, expected)


def _codestream_start(frame: bytes) -> int:
    """Where a JPEG 2000 codestream starts: 0, or in the JP2 box some writers wrap it in."""
    offset = len(JP2_SIGNATURE) if frame.startswith(JP2_SIGNATURE) else 0
    while offset and offset + 8 <= len(frame):
        length, box = struct.unpack_from(">I4s", frame, offset)
        if box == b"jp2c":
            return offset + 8
        offset = offset + length if length >= 8 else len(frame)
    return offset


def _rle(frame: bytes, expected: Declared) -> str | None:
    try:
        offsets = _rle_parse_header(frame[:64])
    except ValueError as error:
        return f"RLE header unreadable: {error}"
    segments = expected.samples * max(expected.bits // 8, 1)
    if len(offsets) != segments:
        return f"its RLE header lists {len(offsets)} segments, the DICOM header needs {segments}"
    if offsets != sorted(set(offsets)) or offsets[0] < 64 or offsets[-1] >= len(frame):
        return f"its RLE header places segments outside the frame ({offsets})"
    return None


def _disagreement(kind: str, found: Declared, expected: Declared) -> str | None:
    if found[:3] == expected[:3] and 0 < found.bits <= expected.bits:
        return None
    return f"its {kind} codestream declares {found}, the DICOM header {expected}"


CHECKS: dict[UID, Callable[[bytes, Declared], str | None]] = {
    **dict.fromkeys(JPEGTransferSyntaxes + JPEGLSTransferSyntaxes, _jpeg),
    **dict.fromkeys(JPEG2000TransferSyntaxes, _jpeg_2000),
    RLELossless: _rle,
}
"""How each compressed transfer syntax pydicom decodes declares the size of a frame."""
