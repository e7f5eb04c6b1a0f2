"""The JSON files' layout: any value reads back unchanged, shallow values take one line, and
the streamed text is the text of the same value held whole."""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydicom.uid import UID

from series_selection.common.jsonio import (
    LazyArray,
    compact_bytes,
    json_text,
    json_write,
    schema_errors,
    write_formatted,
)

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.sampled_from(
        ["", "é", "\u00fc\u4e2d\U0001f600", 'quote " and \\ backslash', "line\nbreak"]
    )
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


def reference_text(data: Any, indent: int = 0) -> str:
    """The layout as the files have always had it, written out plainly: the witness the
    streaming formatter is held to."""
    encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode

    def flat(value: Any) -> bool:
        items = value.values() if isinstance(value, dict) else value
        if not isinstance(value, dict | list):
            return True
        return not any(isinstance(item, dict | list) for item in items)

    items = data.values() if isinstance(data, dict) else data
    if not isinstance(data, dict | list) or all(flat(item) for item in items):
        return encode(data)
    inner = "\n" + " " * (indent + 1)
    if isinstance(data, dict):
        members = [f"{inner}{encode(k)}: {reference_text(v, indent + 1)}" for k, v in data.items()]
        return "{" + ",".join(members) + "\n" + " " * indent + "}"
    listed = [inner + reference_text(item, indent + 1) for item in data]
    return "[" + ",".join(listed) + "\n" + " " * indent + "]"


def lazily(value: Any, made: list[int]) -> Any:
    """``value`` with every array a ``LazyArray`` whose items are made as they are read
    (``made`` counts them)."""

    def items(array: list[Any]) -> Any:
        for item in array:
            made.append(1)
            yield lazily(item, made)

    if isinstance(value, dict):
        return {key: lazily(member, made) for key, member in value.items()}
    if isinstance(value, list):
        return LazyArray(items(value))
    return value


def count_items(value: Any) -> int:
    if isinstance(value, dict):
        return sum(count_items(member) for member in value.values())
    if isinstance(value, list):
        return len(value) + sum(count_items(item) for item in value)
    return 0


@given(VALUES, st.integers(min_value=0, max_value=6))
def test_every_value_reads_back_unchanged(value: Any, indent: int) -> None:
    text = json_text(value, indent)
    assert json.loads(text) == value
    assert "\n" not in text or text.endswith(("\n" + " " * indent + "}", "\n" + " " * indent + "]"))


@given(VALUES, st.integers(min_value=0, max_value=6))
def test_streamed_text_is_the_text_of_the_value_held_whole(value: Any, indent: int) -> None:
    expected = reference_text(value, indent)
    assert json_text(value, indent) == expected
    assert json_text(value, indent, reuse=True) == expected
    made: list[int] = []
    pieces: list[str] = []
    json_write(lazily(value, made), pieces.append, indent)
    assert "".join(pieces) == expected
    assert len(made) == count_items(value)


@given(VALUES)
def test_a_value_repeated_in_a_document_is_formatted_alike_each_time(value: Any) -> None:
    document = {"first": [value, {"again": value}], "second": {"again": [value]}}
    assert json_text(document, reuse=True) == reference_text(document)


def test_empty_arrays_and_objects_stream_as_they_format_whole() -> None:
    assert json_text({"studies": LazyArray([])}) == '{"studies": []}'
    assert json_text(LazyArray(iter([]))) == "[]"
    assert json_text({"a": LazyArray([{}, []])}) == reference_text({"a": [{}, []]})
    nested = {"studies": LazyArray([{"series": LazyArray([])}])}
    assert json_text(nested) == reference_text({"studies": [{"series": []}]})


def test_a_lazy_array_is_written_as_its_items_are_made() -> None:
    count = 10_000
    written: list[str] = []
    paths_written = [0]

    def write(text: str) -> None:
        written.append(text)
        paths_written[0] += text.count('"path"')

    def instances() -> Any:
        for number in range(count):
            # all but the item read ahead and those since the last write are written already
            assert paths_written[0] >= number - 1 - 4096
            yield {"attributes": {"00080018": {"vr": "UI", "Value": [str(number)]}}, "path": "p"}

    json_write({"instances": LazyArray(instances())}, write, 2)
    assert len(written) > 2
    whole = [
        {"attributes": {"00080018": {"vr": "UI", "Value": [str(n)]}}, "path": "p"}
        for n in range(count)
    ]
    assert "".join(written) == reference_text({"instances": whole}, 2)


def test_reuse_refuses_a_lazy_array() -> None:
    with pytest.raises(TypeError, match="held whole"):
        json_text([LazyArray([[[1]], [2]])], reuse=True)


def test_a_formatted_file_ends_with_a_newline(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    document = {"name": "\u00e9", "series": [{"a": [1, {"b": 2}]}]}
    write_formatted(target, {"name": "\u00e9", "series": LazyArray(document["series"])})
    assert target.read_text(encoding="utf-8") == reference_text(document) + "\n"


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
    for number in (math.nan, math.inf):  # as members of objects a line per member
        with pytest.raises(ValueError, match="Out of range float"):
            json_text({"deep": {"a": [1]}, "number": number})


class Level(enum.IntEnum):
    HIGH = 2


class Millimetres(float):
    def __repr__(self) -> str:
        return f"{float(self)} mm"


def test_number_subclasses_are_written_as_json_writes_them() -> None:
    for number in (Level.HIGH, Millimetres(0.5), True, None, 10**30, -0.0, 1e-7):
        document = {"deep": {"a": [1]}, "number": number}
        assert json_text(document) == reference_text(document)
        assert json_text(number) == json.dumps(number)


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


@given(VALUES)
def test_compact_text_reads_back_as_json_writes_it(value: Any) -> None:
    text = compact_bytes(value).decode()
    assert json.loads(text) == json.loads(json.dumps(value))
    assert "\n" not in text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ({"file": "scan\udcff.dcm"}, '{"file":"scan\\\\xff.dcm"}'),  # a byte that is not UTF-8
        ([2**70, -(2**64)], f"[{2**70},{-(2**64)}]"),
        ({1: "one"}, '{"1":"one"}'),
        ({"é": ["\u4e2d", 1.5, None, True]}, '{"é":["\u4e2d",1.5,null,true]}'),
    ],
)
def test_compact_text_is_jsons_for_what_orjson_refuses_and_for_text(value: Any, text: str) -> None:
    assert compact_bytes(value) == text.encode()
