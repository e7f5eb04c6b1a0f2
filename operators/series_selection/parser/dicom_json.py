"""Headers as DICOM JSON Model datasets (PS3.18 Annex F), with nothing silently dropped."""

from __future__ import annotations

import base64
import math
from typing import Any
from urllib.parse import quote

from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.hooks import hooks
from pydicom.tag import BaseTag

from series_selection.common.errors import DicomReadError, NestingError
from series_selection.parser.raw_json import plain_element_json
from series_selection.parser.reading import file_errors

BULK_DATA_THRESHOLD = 1024
"""Binary values longer than this many bytes are referenced by BulkDataURI, not inlined."""
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
MAX_SEQUENCE_DEPTH = 64
"""Sequences nested deeper make the header refused: no DICOM object nests nearly so deep, and
every level costs the JSON writers and readers of the metadata a level of recursion."""
TOO_DEEP = f"sequences nested more than {MAX_SEQUENCE_DEPTH} deep"

LIFTED_FROM_FUNCTIONAL_GROUPS = (
    ("PixelMeasuresSequence", ("PixelSpacing", "SliceThickness", "SpacingBetweenSlices")),
    ("PlaneOrientationSequence", ("ImageOrientationPatient",)),
    ("PixelValueTransformationSequence", ("RescaleSlope", "RescaleIntercept", "RescaleType")),
    ("FrameVOILUTSequence", ("WindowCenter", "WindowWidth")),
    ("MRImageFrameTypeSequence", ("FrameType",)),
    ("CTImageFrameTypeSequence", ("FrameType",)),
)
"""Functional-group values copied to the top level of enhanced multi-frame headers."""


def dataset_to_json(dataset: Dataset, relative_path: str) -> dict[str, Any]:
    """The DICOM JSON Model of ``dataset``; large binary values become BulkDataURIs.

    A value pydicom cannot encode is kept as its raw bytes (``InlineBinary``) rather than lost.
    """
    lift_functional_groups(dataset)
    return _encode(dataset, quote(relative_path, errors="surrogateescape"))


def _encode(dataset: Dataset, uri_path: str, depth: int = 0) -> dict[str, Any]:
    if depth > MAX_SEQUENCE_DEPTH:
        raise NestingError(TOO_DEEP)
    result: dict[str, Any] = {}
    for tag in dataset.keys():  # noqa: SIM118 - iterating a Dataset yields elements
        key = f"{tag:08X}"
        raw: Any = dataset.get_item(tag, keep_deferred=True)  # pydicom's stub omits deferral
        if isinstance(raw, RawDataElement):
            if raw.value is None:  # deferred: binary values are referenced, never read
                vr = _resolved_vr(raw, dataset)
                if vr in BINARY_VRS:
                    result[key] = {"vr": vr, "BulkDataURI": f"{uri_path}#{key}"}
                    continue
            else:
                plain = plain_element_json(raw, uri_path)
                if plain is not None:
                    result[key] = plain
                    continue
        result[key] = _element_json(dataset, tag, uri_path, depth)
    return result


def _element_json(dataset: Dataset, tag: BaseTag, uri_path: str, depth: int) -> dict[str, Any]:
    """An element as pydicom encodes it; sequence items go through ``_encode`` again."""

    def bulk_data_uri(element: DataElement) -> str:
        return f"{uri_path}#{element.tag:08X}"

    try:
        with file_errors(""):
            element = dataset[tag]
            if element.VR == "SQ":
                items = [_encode(item, uri_path, depth + 1) for item in element.value]
                return {"vr": "SQ", "Value": items}
            encoded = element.to_json_dict(bulk_data_uri, BULK_DATA_THRESHOLD)
    except DicomReadError:  # a value pydicom cannot decode is kept raw below
        encoded = None
    return encoded if encoded is not None and _finite(encoded) else _raw_json(dataset, tag)


def _resolved_vr(raw: RawDataElement, dataset: Dataset) -> str:
    """The VR pydicom would give an element, from the standard or private dictionary when
    the file does not say."""
    found: dict[str, Any] = {}
    try:
        with file_errors(""):
            hooks.raw_element_vr(raw, found, ds=dataset)
    except DicomReadError:  # an unknown tag in strict reading mode
        return "UN"
    return str(found.get("VR", "UN"))


def deferred_element(dataset: Dataset, tag: BaseTag) -> RawDataElement | None:
    """The element when its value was left unread (read with ``defer_size``), else ``None``."""
    raw: Any = dataset.get_item(tag, keep_deferred=True)  # pydicom's stub omits deferral
    return raw if isinstance(raw, RawDataElement) and raw.value is None else None


def _finite(value: Any) -> bool:
    """Whether JSON can hold ``value``: no NaN or infinity anywhere in it."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def _raw_json(dataset: Dataset, tag: BaseTag) -> dict[str, Any]:
    """An element JSON cannot hold (undecodable, or NaN / infinity), as its raw bytes."""
    raw = dataset.get_item(tag)
    value = raw.value if isinstance(raw, RawDataElement | DataElement) else None
    if isinstance(value, bytes) and value:
        return {"vr": "UN", "InlineBinary": base64.b64encode(value).decode("ascii")}
    return {"vr": "UN"}


def lift_functional_groups(dataset: Dataset) -> None:
    """Copy shared (or frame-invariant) functional-group values of a multi-frame header to its top.

    Classic headers are left alone. Values already at the top level are never overwritten.
    """
    shared = _first_item(dataset, "SharedFunctionalGroupsSequence")
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    if shared is None and not per_frame:
        return
    for macro, keywords in LIFTED_FROM_FUNCTIONAL_GROUPS:
        source = _first_item(shared, macro) if shared is not None else None
        if source is None and per_frame:
            source = _frame_invariant_item(per_frame, macro)
        if source is None:
            continue
        for keyword in keywords:
            if keyword in source and keyword not in dataset:
                setattr(dataset, keyword, source[keyword].value)


def _first_item(dataset: Dataset, keyword: str) -> Dataset | None:
    sequence = dataset.get(keyword)
    return sequence[0] if sequence else None


def _frame_invariant_item(per_frame: Any, macro: str) -> Dataset | None:
    items = [_first_item(frame, macro) for frame in per_frame]
    first = items[0]
    if first is None or any(item != first for item in items[1:]):
        return None
    return first
