"""The spool: received instances checked, then made durable before anyone is told so.

Layout under the spool folder::

    tmp/                   files being written (removed at start-up: never acknowledged)
    groups/<job id>/       one folder per group, the job's input: <sha256>.dcm per instance

An instance's file name is the SHA-256 of its bytes: identical bytes sent twice are one file,
and no value from the sender ever becomes part of a path.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import DeflatedExplicitVRLittleEndian

from series_selection.common.errors import PipelineError

TMP = "tmp"
GROUPS = "groups"
SUFFIX = ".dcm"


class InstanceRefusedError(PipelineError):
    """An instance that is not kept; ``status`` is the C-STORE failure status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


OUT_OF_RESOURCES = 0xA700
"""Refused: Out of Resources (PS3.4 B.2.3): the disk is full, or the data set too large."""
DATA_SET_DOES_NOT_MATCH = 0xA900
"""Error: Data Set Does Not Match SOP Class."""
CANNOT_UNDERSTAND = 0xC000
"""Error: Cannot Understand: the data set cannot be decoded or lacks its identifiers."""
PROCESSING_FAILURE = 0x0110
"""Processing failure (PS3.7 C.4.2): anything else that kept the instance from the disk."""


@dataclass(frozen=True)
class Instance:
    """What the receiver needs to know of a received instance."""

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str


def check_instance(
    data: bytes,
    max_bytes: int,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Instance:
    """Decode ``data`` (a DICOM file: preamble, file meta and data set) whole and return its
    identifiers; ``InstanceRefusedError`` with the status to answer when it cannot be kept.

    ``sop_class_uid`` and ``sop_instance_uid`` are the ones of the C-STORE request: a data set
    that names others does not match it. Every element must decode up to the last byte (a
    truncated data set is refused); a deflated data set is inflated to at most ``max_bytes``."""
    if len(data) > max_bytes:
        raise InstanceRefusedError(
            OUT_OF_RESOURCES, f"{len(data)} bytes is over the limit of {max_bytes} bytes"
        )
    try:
        dataset = dcmread(
            io.BytesIO(_bounded(data, max_bytes)), force=True, stop_before_pixels=True
        )
        syntax = str(dataset.file_meta.get("TransferSyntaxUID", "") or "")
        if syntax != DeflatedExplicitVRLittleEndian:
            check_structure(data, syntax)
        identifiers = [
            str(dataset.get(keyword, "") or "").strip()
            for keyword in (
                "SOPClassUID",
                "SOPInstanceUID",
                "StudyInstanceUID",
                "SeriesInstanceUID",
            )
        ]
    except InstanceRefusedError:
        raise
    except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError) as error:
        raise InstanceRefusedError(
            CANNOT_UNDERSTAND, f"data set cannot be decoded: {error}"
        ) from None
    except Exception as error:  # pydicom raises many kinds on hostile bytes
        raise InstanceRefusedError(
            CANNOT_UNDERSTAND, f"data set cannot be decoded: {type(error).__name__}: {error}"
        ) from None
    missing = [
        name
        for name, value in zip(
            ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"),
            identifiers,
            strict=True,
        )
        if not value
    ]
    if missing:
        raise InstanceRefusedError(CANNOT_UNDERSTAND, f"data set has no {', '.join(missing)}")
    instance = Instance(*identifiers)
    if sop_class_uid is not None and instance.sop_class_uid != sop_class_uid.strip():
        raise InstanceRefusedError(
            DATA_SET_DOES_NOT_MATCH,
            f"data set's SOP class {instance.sop_class_uid} is not the request's {sop_class_uid}",
        )
    if sop_instance_uid is not None and instance.sop_instance_uid != sop_instance_uid.strip():
        raise InstanceRefusedError(
            DATA_SET_DOES_NOT_MATCH,
            f"data set's SOP instance {instance.sop_instance_uid} is not the request's "
            f"{sop_instance_uid}",
        )
    return instance


def _bounded(data: bytes, max_bytes: int) -> bytes:
    """``data``, with a deflated data set first checked to inflate to at most ``max_bytes``
    (pydicom would inflate it whole, whatever its size)."""
    if DeflatedExplicitVRLittleEndian.encode() not in data[:4096]:
        return data
    meta = dcmread(io.BytesIO(data), stop_before_pixels=True, force=True, specific_tags=[])
    if str(meta.file_meta.get("TransferSyntaxUID", "")) != DeflatedExplicitVRLittleEndian:
        return data
    start = _data_set_offset(data)
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    inflated = 0
    view = memoryview(data)[start:]
    for offset in range(0, len(view), 1 << 16):
        chunk = inflater.decompress(view[offset : offset + (1 << 16)], max_bytes + 1 - inflated)
        inflated += len(chunk)
        if inflated > max_bytes or inflater.unconsumed_tail:
            raise InstanceRefusedError(
                OUT_OF_RESOURCES, f"deflated data set inflates to over {max_bytes} bytes"
            )
    return data


def _data_set_offset(data: bytes) -> int:
    """Where the data set starts after the 128-byte preamble, ``DICM`` and the file meta."""
    position = 132
    group_length = int.from_bytes(data[position + 8 : position + 12], "little")
    return position + 12 + group_length


LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
MAX_DEPTH = 64


class _TruncatedError(Exception):
    pass


def check_structure(data: bytes, syntax: str) -> None:
    """Walk every element of the file's data set by its tag and length, into sequences of
    undefined length: each value must end inside the data, the last exactly at its end.
    ``InstanceRefusedError`` (cannot understand) names the offset where it does not.

    pydicom reads a value cut short without complaint: this is what tells a truncated data set
    from a whole one (a cut exactly between two elements cannot be told)."""
    little = syntax != "1.2.840.10008.1.2.2"
    try:
        start = _after_file_meta(data)
        # As pydicom does: the first element tells explicit from implicit VR, whatever the
        # transfer syntax claims (real files get it wrong).
        explicit = _looks_explicit(data[start + 4 : start + 6])
        _Walker(data, explicit, little).elements(start, len(data), 0)
    except _TruncatedError as error:
        raise InstanceRefusedError(CANNOT_UNDERSTAND, f"data set is cut short: {error}") from None


def _looks_explicit(vr: bytes) -> bool:
    return len(vr) == 2 and all(0x41 <= c <= 0x5A for c in vr)


def _after_file_meta(data: bytes) -> int:
    """The offset of the data set: after the preamble, ``DICM`` and the group 2 elements."""
    position = 132 if data[128:132] == b"DICM" else 0
    while (
        position + 8 <= len(data) and int.from_bytes(data[position : position + 2], "little") == 2
    ):
        vr = data[position + 4 : position + 6]
        if vr in LONG_LENGTH_VRS:
            length = int.from_bytes(data[position + 8 : position + 12], "little")
            position += 12 + length
        else:
            position += 8 + int.from_bytes(data[position + 6 : position + 8], "little")
    if position > len(data):
        raise _TruncatedError(f"file meta information runs past the end ({len(data)} bytes)")
    return position


class _Walker:
    def __init__(self, data: bytes, explicit: bool, little: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.order: Literal["little", "big"] = "little" if little else "big"

    def _int(self, start: int, size: int) -> int:
        if start + size > len(self.data):
            raise _TruncatedError(f"element header at byte {start} runs past the end")
        return int.from_bytes(self.data[start : start + size], self.order)

    def _tag(self, position: int) -> int:
        return (self._int(position, 2) << 16) | self._int(position + 2, 2)

    def elements(self, position: int, end: int, depth: int) -> int:
        """Walk elements from ``position`` to ``end`` (or to an item delimiter when ``end``
        is ``None``-like: -1); returns the position after them."""
        if depth > MAX_DEPTH:
            raise _TruncatedError(f"sequences nested deeper than {MAX_DEPTH} levels")
        while position < end if end >= 0 else True:
            tag = self._tag(position)
            if tag == ITEM_END:
                if end >= 0:
                    raise _TruncatedError(f"item delimiter outside an item at byte {position}")
                return position + 8
            vr = b""
            if self.explicit and tag >> 16 != 0xFFFE:
                vr = self.data[position + 4 : position + 6]
                if vr in LONG_LENGTH_VRS:
                    length, header = self._int(position + 8, 4), 12
                else:
                    length, header = self._int(position + 6, 2), 8
            else:
                length, header = self._int(position + 4, 4), 8
            position += header
            if length == UNDEFINED:
                position = self._undefined(tag, vr, position, depth)
            else:
                position += length
                limit = end if end >= 0 else len(self.data)
                if position > limit:
                    raise _TruncatedError(
                        f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes, "
                        f"{limit - position + length} remain"
                    )
        if end >= 0 and position != end:
            raise _TruncatedError(f"elements end at byte {position}, not at {end}")
        return position

    def _undefined(self, tag: int, vr: bytes, position: int, depth: int) -> int:
        """Items up to the sequence delimiter: fragments of encapsulated pixel data, or data
        sets of a sequence."""
        fragments = tag == PIXEL_DATA or vr not in (b"", b"SQ", b"UN")
        while True:
            item = self._tag(position)
            length = self._int(position + 4, 4)
            position += 8
            if item == SEQUENCE_END:
                return position
            if item != ITEM:
                raise _TruncatedError(f"expected an item at byte {position - 8}")
            if length == UNDEFINED:
                if fragments:
                    raise _TruncatedError(f"pixel data fragment of undefined length at {position}")
                position = self.elements(position, -1, depth + 1)
            elif position + length > len(self.data):
                raise _TruncatedError(f"item at byte {position - 8} needs {length} bytes")
            else:
                position += length


def digest_of(data: bytes) -> str:
    """The SHA-256 of the data set in ``data`` (a DICOM file), file meta left out but its
    transfer syntax in: the same instance sent by two peers (whose file meta differ, as it
    names the sender) is one file."""
    try:
        start = _after_file_meta(data)
        meta = dcmread(io.BytesIO(data[:start]), force=True).file_meta
        syntax = str(meta.get("TransferSyntaxUID", ""))
    except Exception:  # a file checked already; whatever fails, the whole file is hashed
        start, syntax = 0, ""
    digest = hashlib.sha256(syntax.encode("ascii", "replace") + b"\0")
    digest.update(memoryview(data)[start:])
    return digest.hexdigest()


class Spool:
    """Durable files in the spool folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.tmp = folder / TMP
        self.groups = folder / GROUPS

    def open(self) -> None:
        """Create the folders; remove files a crash left half-written."""
        for path in (self.folder, self.tmp, self.groups):
            path.mkdir(parents=True, exist_ok=True)
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        _fsync_folder(self.folder)

    def group_folder(self, group_id: str) -> Path:
        return self.groups / group_id

    def create_group(self, group_id: str) -> Path:
        folder = self.group_folder(group_id)
        folder.mkdir(exist_ok=True)
        _fsync_folder(self.groups)
        return folder

    def files(self, group_id: str) -> list[Path]:
        """The instance files of a group, by name."""
        folder = self.group_folder(group_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == SUFFIX)

    def store(self, group_id: str, data: bytes, digest: str) -> tuple[Path, bool]:
        """Write ``data`` as ``<digest>.dcm`` in the group's folder, durably: a temporary file
        written, flushed and synced, renamed into place, the folder synced. Returns the path and
        whether the file was already there (same bytes). ``InstanceRefusedError`` when it cannot be
        written (out of resources when the disk is full)."""
        target = self.group_folder(group_id) / f"{digest}{SUFFIX}"
        if target.is_file():
            return target, True
        temporary = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                view = memoryview(data)
                while view:
                    written = os.write(descriptor, view)
                    view = view[written:]
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            temporary.rename(target)
            _fsync_folder(target.parent)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            status = (
                OUT_OF_RESOURCES
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                else PROCESSING_FAILURE
            )
            raise InstanceRefusedError(
                status, f"cannot write to the spool: {error.strerror}"
            ) from None
        return target, False


def _fsync_folder(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
