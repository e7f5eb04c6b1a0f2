"""DICOM JSON straight from an element's raw bytes, for the plain values most headers hold.

pydicom builds a value object per element (``DSfloat``, ``UID``, ``MultiValue`` ...) and then
turns it into JSON; for ASCII strings, numbers and short binary values this module gives the
same JSON from the bytes directly, several times faster. Anything else (person names, tags,
sequences, text that is not plain ASCII, malformed numbers, VRs that need a lookup beyond the
standard dictionary) gets ``None``: the caller then goes through pydicom.
"""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Callable
from functools import cache
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.tag import BaseTag

INLINE_BINARY_LIMIT = 768
"""Binary values up to this many bytes are inlined (pydicom's rule for a 1024-byte threshold:
their base64 text stays within it); longer ones become BulkDataURIs."""
OTHER_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW"})
"""The O* VRs: bytes kept as they are (UN, whose VR may be known after all, is left out)."""
NUMBER_FORMATS = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "UV": "Q", "SV": "q"}
FLOAT_FORMATS = {"FL": "f", "FD": "d"}
DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")
INTEGER = re.compile(r"\s*[+-]?\d+\s*")
SHIFTS = (b"\x1b", b"\x0e", b"\x0f")
"""Escape, shift-out, shift-in: bytes that switch character sets in ISO 2022 encodings."""

Strings = Callable[[str], list[Any] | None]


def plain_element_json(raw: RawDataElement, uri_path: str) -> dict[str, Any] | None:
    """The JSON of an element read but not yet converted, or ``None`` when it is not plain."""
    vr = raw.VR if raw.VR is not None else _dictionary_vr(raw.tag)
    value = raw.value
    if vr is None or value is None or vr in ("SQ", "UN"):
        return None
    if not value:
        return {"vr": vr}
    if vr in OTHER_VRS:
        if len(value) > INLINE_BINARY_LIMIT:
            return {"vr": vr, "BulkDataURI": f"{uri_path}#{raw.tag:08X}"}
        return {"vr": vr, "InlineBinary": base64.b64encode(value).decode("ascii")}
    if vr in NUMBER_FORMATS or vr in FLOAT_FORMATS:
        numbers = _numbers(vr, value, raw.is_little_endian)
        return None if numbers is None else {"vr": vr, "Value": numbers}
    strings = STRING_VRS.get(vr)
    if strings is None or not value.isascii() or any(shift in value for shift in SHIFTS):
        return None
    values = strings(value.decode("ascii"))
    if values is None:
        return None
    return {"vr": vr} if values == [""] else {"vr": vr, "Value": values}


@cache
def _dictionary_vr(tag: BaseTag) -> str | None:
    """The VR of an implicit-VR element when the standard dictionary gives exactly one."""
    if tag.is_private:
        return None
    try:
        vr = dictionary_VR(tag)
    except KeyError:
        return None
    return None if " or " in vr else vr


def _numbers(vr: str, value: bytes, little_endian: bool) -> list[Any] | None:
    """Binary numbers; ``None`` when the length is not a whole number of them, or a float is
    not finite."""
    code = NUMBER_FORMATS.get(vr) or FLOAT_FORMATS[vr]
    size = struct.calcsize(code)
    if len(value) % size:
        return None
    order = "<" if little_endian else ">"
    numbers = list(struct.unpack(f"{order}{len(value) // size}{code}", value))
    finite = vr in NUMBER_FORMATS or all(math.isfinite(n) for n in numbers)
    return numbers if finite else None


def _split(text: str) -> list[Any]:
    return text.rstrip(" \x00").split("\\")


def _stripped_each(text: str) -> list[Any]:
    return [part.strip() for part in text.split("\\")]


def _uids(text: str) -> list[Any]:
    return [part.strip() for part in _split(text)]


def _trailing_stripped_each(text: str) -> list[Any]:
    return [part.rstrip("\x00 ") for part in text.split("\\")]


def _single(text: str) -> list[Any]:
    return [text.rstrip("\x00 ")]


def _url(text: str) -> list[Any]:
    return [text.rstrip()]


def _decimals(text: str) -> list[Any] | None:
    parts = _split(text.strip())
    if parts == [""]:
        return parts
    if not all(DECIMAL.fullmatch(part) for part in parts):
        return None
    numbers = [float(part) for part in parts]
    return numbers if all(math.isfinite(n) for n in numbers) else None


def _integers(text: str) -> list[Any] | None:
    parts = _split(text)
    if parts == [""]:
        return parts
    return [int(part) for part in parts] if all(INTEGER.fullmatch(p) for p in parts) else None


STRING_VRS: dict[str, Strings] = {
    "AE": _stripped_each,
    "AS": _split,
    "CS": _split,
    "DA": _split,
    "DT": _split,
    "TM": _split,
    "UI": _uids,
    "SH": _trailing_stripped_each,
    "LO": _trailing_stripped_each,
    "UC": _trailing_stripped_each,
    "ST": _single,
    "LT": _single,
    "UT": _single,
    "UR": _url,
    "DS": _decimals,
    "IS": _integers,
}
"""How each string VR's text becomes JSON values, following pydicom's converters."""
