"""The header JSON is pydicom's DICOM JSON Model, element for element: on real scanner files,
on the samples, and on generated raw values for every VR the parser decodes itself."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom import dcmread
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from series_selection.parser.dicom_json import (
    BULK_DATA_THRESHOLD,
    dataset_to_json,
    lift_functional_groups,
)
from series_selection.parser.raw_json import OTHER_VRS, STRING_VRS, plain_element_json
from series_selection.parser.scan import list_files

REPO = Path(__file__).resolve().parent.parent
NUMBER_VRS = ("US", "SS", "UL", "SL", "UV", "SV", "FL", "FD")
TAG_OF_VR = {
    "AE": "RetrieveAETitle", "AS": "PatientAge", "CS": "ImageType", "DA": "StudyDate",
    "DT": "AcquisitionDateTime", "TM": "StudyTime", "UI": "SOPInstanceUID",
    "SH": "StationName", "LO": "SeriesDescription", "UC": "StrainAdditionalInformation",
    "ST": "InstitutionAddress", "LT": "ImageComments", "UT": "PixelDataProviderURL",
    "UR": "RetrieveURL", "DS": "PixelSpacing", "IS": "InstanceNumber", "US": "Rows",
    "SS": "TagAngleSecondAxis", "UL": "SimpleFrameList", "SL": "ReferencePixelX0",
    "UV": "SelectorUVValue", "SV": "SelectorSVValue", "FL": "RecommendedDisplayFrameRateInFloat",
    "FD": "RealWorldValueLUTData", "OB": "ICCProfile", "OD": "DoubleFloatPixelData",
    "OF": "FloatPixelData", "OL": "LongPrimitivePointIndexList", "OV": "SelectorOVValue",
    "OW": "TrianglePointIndexList",
}  # fmt: skip
"""A standard attribute of each VR, so implicit-VR elements resolve to it."""
TEXT_BYTES = b" \\\x00.+-eE0123456789ABCxyz^=/:\r\n\x1b\xe9"
"""Characters that change how string values decode: padding, separators, digits and
exponent marks, control and non-ASCII bytes."""


def reference_json(dataset: Dataset, tag: int, path: str) -> dict[str, Any] | None:
    """pydicom's own JSON for one element, or ``None`` when pydicom cannot encode it."""
    try:
        encoded = dataset[tag].to_json_dict(lambda e: f"{quote(path)}#{e.tag:08X}", 1024)
        json.dumps(encoded, allow_nan=False)
    except Exception:
        return None
    return encoded


def header_files() -> list[tuple[Path, str]]:
    roots = [REPO / "samples", REPO.parent / "shared" / "data"]
    return [
        (root, relative)
        for root in roots
        if root.is_dir()
        for relative, problem in list_files(root)
        if problem is None
    ]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.slow
def test_real_headers_encode_as_pydicom_encodes_them() -> None:
    compared = 0
    for root, relative in header_files():
        try:
            reference = dcmread(root / relative, stop_before_pixels=True)
            dataset = dcmread(root / relative, stop_before_pixels=True, defer_size=1024)
        except Exception:
            continue  # not DICOM: the scan says so
        lift_functional_groups(reference)
        ours = dataset_to_json(dataset, relative)
        for tag in reference.keys():  # noqa: SIM118 - iterating a Dataset yields elements
            expected = reference_json(reference, tag, relative)
            if expected is not None:
                assert ours[f"{tag:08X}"] == expected, (relative, f"{tag:08X}")
                compared += 1
    assert compared > 1000


def raw_element(vr: str, value: bytes, implicit: bool, little_endian: bool) -> RawDataElement:
    return RawDataElement(
        Tag(TAG_OF_VR[vr]), None if implicit else vr, len(value), value, 0, implicit, little_endian
    )


@st.composite
def raw_values(draw: st.DrawFn) -> tuple[str, bytes, bool, bool]:
    vr = draw(st.sampled_from(sorted(STRING_VRS) + list(NUMBER_VRS) + sorted(OTHER_VRS)))
    if vr in STRING_VRS:
        value = draw(st.lists(st.sampled_from(list(TEXT_BYTES)), max_size=40).map(bytes))
    else:
        value = draw(st.binary(max_size=BULK_DATA_THRESHOLD))
    return vr, value, draw(st.booleans()), draw(st.booleans())


@pytest.mark.slow
@given(raw_values())
@settings(max_examples=3000, deadline=None)
def test_plain_values_encode_as_pydicom_encodes_them(
    example: tuple[str, bytes, bool, bool],
) -> None:
    """Where the parser decodes a value itself, it gets exactly pydicom's JSON; where pydicom
    cannot encode it, the parser leaves it to the general path."""
    vr, value, implicit, little_endian = example
    raw = raw_element(vr, value, implicit, little_endian)
    ours = plain_element_json(raw, "f")
    dataset = Dataset()
    dataset[raw.tag] = raw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = reference_json(dataset, raw.tag, "f")
    if ours is not None:
        assert ours == expected


def test_common_values_take_the_direct_path() -> None:
    """The direct path is taken for the values headers are made of, not only in theory."""
    values = {
        "CS": b"ORIGINAL\\PRIMARY\\AXIAL ",
        "DS": b"0.703125\\0.703125",
        "IS": b"12",
        "UI": b"1.2.840.10008.5.1.4.1.1.2\x00",
        "LO": b"Body 1.0 ",
        "US": b"\x00\x02",
        "FD": b"\x00" * 8,
        "OB": b"\x00\x01",
    }
    for vr, value in values.items():
        assert plain_element_json(raw_element(vr, value, False, True), "f") is not None, vr
