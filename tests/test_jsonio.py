"""The JSON files' layout: any value reads back unchanged, shallow values take one line."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID

from series_selection.common.jsonio import json_text, schema_errors

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(VALUES, st.integers(min_value=0, max_value=6))
def test_every_value_reads_back_unchanged(value: Any, indent: int) -> None:
    text = json_text(value, indent)
    assert json.loads(text) == value
    assert "\n" not in text or text.endswith(("\n" + " " * indent + "}", "\n" + " " * indent + "]"))


def test_shallow_values_take_one_line_and_deeper_ones_a_line_per_member() -> None:
    element = {"vr": "DS", "Value": [0.5, 0.5]}
    assert json_text(element) == '{"vr": "DS", "Value": [0.5, 0.5]}'
    assert json_text([[1, 0], [0, 1]]) == "[[1, 0], [0, 1]]"
    assert json_text({"00280030": element, "path": "a/b"}, 2) == (
        '{\n   "00280030": {"vr": "DS", "Value": [0.5, 0.5]},\n   "path": "a/b"\n  }'
    )
    assert json_text({"name": "é", "series": []}) == '{"name": "é", "series": []}'


def test_values_json_cannot_hold_are_refused() -> None:
    with pytest.raises(ValueError, match="Out of range float"):
        json_text({"vr": "DS", "Value": [math.nan]})


def test_str_subclasses_are_validated_too() -> None:
    """pydicom's UID is a str subclass; as a key the compiled validator cannot read it."""
    element = {"vr": "UI", "Value": ["1.2.3"]}
    assert schema_errors({UID("00080018"): element}, "dicom-metadata", "/$defs/dataset") == []
    assert schema_errors({UID("1.2.3"): element}, "dicom-metadata", "/$defs/dataset") != []


@pytest.mark.parametrize(
    "text",
    [
        '{"a": [1, 2.5, -0.0, 1e-7, "x\\u00e9", null, true]}',
        '{"n": 123456789012345678901234567890}',  # beyond 64 bits: exact, as json reads it
        '{"n": -9223372036854775809, "m": 18446744073709551616}',
        '{"s": "lone \\udc80 surrogate"}',
        '{"a": 1, "a": 2}',
        '{"s": "a:1234567890123456789012 in text"}',
    ],
)
def test_decoding_gives_what_json_gives(text: str) -> None:
    """orjson decodes where it gives the same result; ``json`` decodes the rest."""
    from series_selection.common.jsonio import _decode

    decoded = _decode(text.encode("utf-8"))
    assert decoded == json.loads(text)
    assert repr(decoded) == repr(json.loads(text))


@pytest.mark.parametrize("text", ["[1e400]", "[NaN]", "[-Infinity]", '{"a": 1,}', "\ufeff[1]"])
def test_decoding_refuses_what_it_refused_before(text: str) -> None:
    from series_selection.common.jsonio import _decode

    with pytest.raises(ValueError):
        _decode(text.encode("utf-8"))


@given(VALUES)
def test_decoding_any_written_value_gives_what_json_gives(value: Any) -> None:
    from series_selection.common.jsonio import _decode

    text = json_text(value)
    assert repr(_decode(text.encode("utf-8", "surrogatepass"))) == repr(json.loads(text))
