"""The spool: received instances checked, then made durable before anyone is told so.

Layout under the spool folder::

    tmp/                   files being written (removed at start-up: never acknowledged)
    groups/<job id>/       one folder per group, the job's input: <SOP Instance UID>.dcm

Each file holds the data set as it was received, after a file meta of our own that depends only
on the instance and its transfer syntax: the same instance sent twice, by any peer, is the same
bytes, kept once. Other bytes under the same SOP Instance UID are kept beside it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)

from series_selection.common.errors import InstanceRefusedError
from series_selection.common.folders import sync_folder

TMP = "tmp"
GROUPS = "groups"
SUFFIX = ".dcm"


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
    """Check ``data``, a DICOM file (preamble, file meta and data set), as ``check_data_set``
    does; the transfer syntax is the file meta's."""
    try:
        start, syntax = read_file_meta(data)
    except _TruncatedError as error:
        raise InstanceRefusedError(
            CANNOT_UNDERSTAND, f"file meta cannot be read: {error}"
        ) from None
    return check_data_set(
        memoryview(data)[start:], syntax, max_bytes, sop_class_uid, sop_instance_uid
    )


def check_data_set(
    data: bytes | memoryview,
    syntax: str,
    max_bytes: int,
    sop_class_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> Instance:
    """Walk every element of the data set ``data`` (encoded in ``syntax``) and return its
    identifiers; ``InstanceRefusedError`` with the status to answer when it cannot be kept.

    Each value must end inside the data, the last exactly at its end (a truncated data set is
    refused: pydicom reads a value cut short without complaint); sequences of undefined length
    are walked into. A deflated data set is inflated to at most ``max_bytes`` first.
    ``sop_class_uid`` and ``sop_instance_uid`` are the C-STORE request's: a data set that names
    others does not match it."""
    if len(data) > max_bytes:
        raise InstanceRefusedError(
            OUT_OF_RESOURCES, f"{len(data)} bytes is over the limit of {max_bytes} bytes"
        )
    if syntax == DeflatedExplicitVRLittleEndian:
        data = _inflate(data, max_bytes)
    try:
        # As pydicom does: the first element tells explicit from implicit VR, whatever the
        # transfer syntax claims (real files get it wrong).
        walker = _Walker(data, _looks_explicit(bytes(data[4:6])), syntax != ExplicitVRBigEndian)
        walker.elements(0, len(data), 0)
    except _TruncatedError as error:
        raise InstanceRefusedError(CANNOT_UNDERSTAND, f"data set is cut short: {error}") from None
    values = [walker.found.get(tag, "") for tag in IDENTIFIERS.values()]
    missing = [name for name, value in zip(IDENTIFIERS, values, strict=True) if not value]
    if missing:
        raise InstanceRefusedError(CANNOT_UNDERSTAND, f"data set has no {', '.join(missing)}")
    instance = Instance(*values)
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


IDENTIFIERS = {
    "SOPClassUID": 0x00080016,
    "SOPInstanceUID": 0x00080018,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
}
MAX_IDENTIFIER_BYTES = 256


def _inflate(data: bytes | memoryview, max_bytes: int) -> bytes:
    """The deflated data set ``data`` inflated, refused past ``max_bytes`` (pydicom would
    inflate it whole, whatever its size)."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    parts, inflated = [], 0
    view = memoryview(data)
    try:
        for offset in range(0, len(view), 1 << 16):
            chunk = inflater.decompress(view[offset : offset + (1 << 16)], max_bytes + 1 - inflated)
            inflated += len(chunk)
            parts.append(chunk)
            if inflated > max_bytes or inflater.unconsumed_tail:
                raise InstanceRefusedError(
                    OUT_OF_RESOURCES, f"deflated data set inflates to over {max_bytes} bytes"
                )
        parts.append(inflater.flush())
    except zlib.error as error:
        raise InstanceRefusedError(
            CANNOT_UNDERSTAND, f"deflated data set cannot be inflated: {error}"
        ) from None
    if not inflater.eof:
        raise InstanceRefusedError(CANNOT_UNDERSTAND, "deflated data set is cut short")
    return b"".join(parts)


def file_meta(instance: Instance, syntax: str) -> bytes:
    """The preamble, ``DICM`` and file meta of a file holding ``instance`` in ``syntax``
    (explicit VR little endian, as PS3.10 7.1 says); the same for the same instance, whoever
    sent it."""
    elements = b"".join(
        [
            _element(0x0001, b"OB", b"\x00\x01"),
            _element(0x0002, b"UI", _uid(instance.sop_class_uid)),
            _element(0x0003, b"UI", _uid(instance.sop_instance_uid)),
            _element(0x0010, b"UI", _uid(syntax)),
            _element(0x0012, b"UI", _uid(PYDICOM_IMPLEMENTATION_UID)),
        ]
    )
    length = _element(0x0000, b"UL", len(elements).to_bytes(4, "little"))
    return b"\0" * 128 + b"DICM" + length + elements


def _uid(value: str) -> bytes:
    encoded = value.encode("ascii", "replace")
    return encoded + b"\0" if len(encoded) % 2 else encoded


def _element(element: int, vr: bytes, value: bytes) -> bytes:
    tag = (2).to_bytes(2, "little") + element.to_bytes(2, "little")
    if vr in LONG_LENGTH_VRS:
        return tag + vr + b"\0\0" + len(value).to_bytes(4, "little") + value
    return tag + vr + len(value).to_bytes(2, "little") + value


LONG_LENGTH_VRS = frozenset(
    {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
)
UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_DATA = 0x7FE00010
TRANSFER_SYNTAX = 0x00020010
MAX_DEPTH = 64


class _TruncatedError(Exception):
    pass


def _looks_explicit(vr: bytes) -> bool:
    return len(vr) == 2 and all(0x41 <= c <= 0x5A for c in vr)


def read_file_meta(data: bytes) -> tuple[int, str]:
    """Where the data set starts in the file ``data`` (after the preamble, ``DICM`` and the
    group 2 elements), and the transfer syntax the file meta names (implicit VR little endian
    when it names none)."""
    position = 132 if data[128:132] == b"DICM" else 0
    syntax: str = ImplicitVRLittleEndian
    while position + 8 <= len(data) and data[position : position + 2] == b"\x02\x00":
        tag = int.from_bytes(data[position + 2 : position + 4], "little")
        vr = data[position + 4 : position + 6]
        if vr in LONG_LENGTH_VRS:
            length = int.from_bytes(data[position + 8 : position + 12], "little")
            header = 12
        else:
            length, header = int.from_bytes(data[position + 6 : position + 8], "little"), 8
        if (0x0002 << 16 | tag) == TRANSFER_SYNTAX:
            value = data[position + header : position + header + length]
            syntax = value.decode("ascii", "replace").rstrip("\0 ").strip()
        position += header + length
    if position > len(data):
        raise _TruncatedError(f"file meta information runs past the end ({len(data)} bytes)")
    return position, syntax


class _Walker:
    """Walks a data set's elements by tag and length; keeps the identifiers' values."""

    def __init__(self, data: bytes | memoryview, explicit: bool, little: bool) -> None:
        self.data = data
        self.explicit = explicit
        self.order: Literal["little", "big"] = "little" if little else "big"
        self.found: dict[int, str] = {}
        self._wanted = frozenset(IDENTIFIERS.values())

    def _int(self, start: int, size: int) -> int:
        if start + size > len(self.data):
            raise _TruncatedError(f"element header at byte {start} runs past the end")
        return int.from_bytes(self.data[start : start + size], self.order)

    def _tag(self, position: int) -> int:
        return (self._int(position, 2) << 16) | self._int(position + 2, 2)

    def elements(self, position: int, end: int, depth: int) -> int:
        """Walk elements from ``position`` to ``end``, or to an item delimiter when ``end`` is
        -1; returns the position after them."""
        if depth > MAX_DEPTH:
            raise _TruncatedError(f"sequences nested deeper than {MAX_DEPTH} levels")
        size = len(self.data)
        while end < 0 or position < end:
            tag = self._tag(position)
            if tag == ITEM_END:
                if end >= 0:
                    raise _TruncatedError(f"item delimiter outside an item at byte {position}")
                return position + 8
            vr = b""
            if self.explicit and tag >> 16 != 0xFFFE:
                vr = bytes(self.data[position + 4 : position + 6])
                if vr in LONG_LENGTH_VRS:
                    length, header = self._int(position + 8, 4), 12
                else:
                    length, header = self._int(position + 6, 2), 8
            else:
                length, header = self._int(position + 4, 4), 8
            position += header
            if length == UNDEFINED:
                position = self._undefined(tag, vr, position, depth)
                continue
            limit = end if end >= 0 else size
            if position + length > limit:
                raise _TruncatedError(
                    f"element ({tag >> 16:04X},{tag & 0xFFFF:04X}) needs {length} bytes, "
                    f"{limit - position} remain"
                )
            if depth == 0 and tag in self._wanted and length <= MAX_IDENTIFIER_BYTES:
                value = bytes(self.data[position : position + length])
                self.found[tag] = value.decode("ascii", "replace").rstrip("\0 ").strip()
            position += length
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


SAFE_UID = re.compile(r"[0-9]+(\.[0-9]+)*")


def file_name(instance: Instance, data: bytes) -> str:
    """The spool file name of an instance: its SOP Instance UID where that is a well-formed
    UID (digits and dots, 64 characters at most), else the SHA-256 of the bytes: no other value
    from a sender ever becomes part of a path."""
    uid = instance.sop_instance_uid
    if len(uid) <= 64 and SAFE_UID.fullmatch(uid):
        return f"{uid}{SUFFIX}"
    return f"{hashlib.sha256(data).hexdigest()}{SUFFIX}"


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
        sync_folder(self.folder)

    def group_folder(self, group_id: str) -> Path:
        return self.groups / group_id

    def create_group(self, group_id: str) -> Path:
        folder = self.group_folder(group_id)
        folder.mkdir(exist_ok=True)
        sync_folder(self.groups)
        return folder

    def files(self, group_id: str) -> list[Path]:
        """The instance files of a group, by name."""
        folder = self.group_folder(group_id)
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if p.suffix == SUFFIX)

    def store(self, group_id: str, name: str, data: bytes) -> tuple[Path, bool]:
        """Write ``data`` as ``name`` in the group's folder, durably: a temporary file written,
        flushed and synced, linked into place (never over another file), the folder synced.

        Returns the path and whether the same bytes were there already (then nothing is
        written). A different file of that name is kept: ``data`` goes beside it, its name
        suffixed with its SHA-256. ``InstanceRefusedError`` when it cannot be written (out of
        resources when the disk is full)."""
        folder = self.group_folder(group_id)
        target = folder / name
        if _same_bytes(target, data):
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
            try:
                os.link(temporary, target)
            except FileExistsError:  # another association, or other bytes under this UID
                if _same_bytes(target, data):
                    temporary.unlink()
                    return target, True
                digest = hashlib.sha256(data).hexdigest()[:16]
                target = folder / f"{Path(name).stem}-{digest}{SUFFIX}"
                if _same_bytes(target, data):
                    temporary.unlink()
                    return target, True
                os.link(temporary, target)
            temporary.unlink()
            sync_folder(folder)
        except OSError as error:
            temporary.unlink(missing_ok=True)
            status = (
                OUT_OF_RESOURCES
                if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
                else PROCESSING_FAILURE
            )
            message = f"cannot write to the spool: {error.strerror}"
            raise InstanceRefusedError(status, message) from None
        return target, False


def _same_bytes(path: Path, data: bytes) -> bool:
    """Whether ``path`` is a file holding exactly ``data``."""
    try:
        if path.stat().st_size != len(data):
            return False
        return path.read_bytes() == data
    except OSError:
        return False
