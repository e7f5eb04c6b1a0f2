"""The DICOM data dictionary by keyword: each keyword's tag and VR, from pydicom's own table.

The table is read from pydicom's ``_dicom_dict`` module file without importing pydicom, whose
import loads its pixel decoders and their libraries (0.3 s, where the table alone takes 5 ms):
the selector, which needs only the table, starts that much sooner. Where that file is not
found, the table comes from an ordinary import.
"""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any


@cache
def keyword_entries() -> dict[str, tuple[int, str]]:
    """Every keyword of the dictionary (repeating groups aside), with its tag and VR. (Entries
    without a keyword, which pydicom lists under ``""``, are left out.)"""
    table: dict[int, tuple[Any, ...]] = _table_module().DicomDictionary
    return {entry[4]: (tag, entry[0]) for tag, entry in table.items() if entry[4]}


def _table_module() -> ModuleType:
    found = importlib.util.find_spec("pydicom")  # finds the package without importing it
    folders = found.submodule_search_locations if found else None
    if folders:
        source = Path(next(iter(folders))) / "_dicom_dict.py"
        spec = importlib.util.spec_from_file_location("_pydicom_table", source)
        if source.is_file() and spec is not None and spec.loader is not None:
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    from pydicom import _dicom_dict

    return _dicom_dict


@cache
def tag_key(keyword: str) -> str:
    """The DICOM JSON key ("GGGGEEEE") of a keyword such as ``"Modality"``; ``KeyError`` for a
    word that is not a keyword."""
    entry = keyword_entries().get(keyword)
    if entry is None:
        raise KeyError(f"{keyword!r} is not a DICOM keyword")
    return f"{entry[0]:08X}"


def keyword_vr(keyword: str) -> str | None:
    """The VR the dictionary gives ``keyword`` (such as ``"CS"`` or ``"US or SS"``); ``None``
    for a word that is not a keyword."""
    entry = keyword_entries().get(keyword)
    return entry[1] if entry else None
