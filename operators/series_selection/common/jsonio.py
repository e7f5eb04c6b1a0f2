"""JSON files that are validated against the schemas in ``schemas/`` and written atomically."""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

import jsonschema_rs
import orjson
import re2

from series_selection.common.errors import InputError, OutputError


@cache
def load_schema(name: str, part: str = "") -> dict[str, Any]:
    """Return the JSON Schema ``schemas/<name>.schema.json``, or the subschema at the JSON
    pointer ``part`` (such as ``/properties/studies/items``) with the document's ``$defs``."""
    text = (
        resources.files("series_selection.common")
        .joinpath(f"schemas/{name}.schema.json")
        .read_text()
    )
    schema: dict[str, Any] = json.loads(text)
    if not part:
        return schema
    node = schema
    for step in part.strip("/").split("/"):
        node = node[step]
    return {"$schema": schema["$schema"], **node, "$defs": schema.get("$defs", {})}


@cache
def _validator(name: str, part: str) -> jsonschema_rs.Validator:
    """The schema compiled by jsonschema-rs (a Rust implementation of every draft, over ten
    times faster than the Python validators on large documents)."""
    return jsonschema_rs.validator_for(load_schema(name, part))


def schema_errors(data: Any, schema_name: str, part: str = "") -> list[str]:
    """Every way ``data`` breaks the schema (or its ``part``, see ``load_schema``), as
    ``path: message`` lines (empty when valid).

    Valid data is recognised by the compiled validator; jsonschema then words the problems of
    data that is not (and judges the rare data the compiled validator cannot read)."""
    try:
        if _validator(schema_name, part).is_valid(data):
            return []
    except ValueError:  # a value it cannot take, such as a str subclass as a key
        pass
    import jsonschema  # only for data it did not pass: the import takes a while

    validator = jsonschema.Draft202012Validator(load_schema(schema_name, part))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    return [f"{_json_path(e.absolute_path)}: {e.message}" for e in errors]


def _json_path(parts: Any) -> str:
    path = "$"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A file to write ``path`` through: readers see the old file or the complete new one, never
    half of it. The new file replaces the old when the block ends without an exception."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide it from other users
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp_name).replace(path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to ``path`` so that readers see the old file or the new one, never half."""
    with atomic_file(path) as handle:
        handle.write(payload)


def check_output(data: Any, path: Path, schema_name: str, part: str = "") -> None:
    """Raise an ``OutputError`` unless ``data``, to be written to ``path``, matches its schema
    (or the schema's ``part``, see ``load_schema``)."""
    problems = schema_errors(data, schema_name, part)
    if problems:
        raise OutputError(
            f"refusing to write {path.name}: it does not match schema {schema_name!r}: "
            + "; ".join(problems[:5])
        )


def write_json(path: Path, data: Any, schema_name: str, *, compact: bool = False) -> None:
    """Validate ``data`` against its schema, then write it atomically, formatted by
    ``json_write`` (``compact``: by ``compact_bytes``, for a file only programs read)."""
    check_output(data, path, schema_name)
    if compact:
        payload = compact_bytes(data)
        _write_atomically(path, lambda write: write(payload))
    else:
        write_formatted(path, data)


def compact_bytes(data: Any) -> bytes:
    """``data`` as JSON on one line, without spaces, in UTF-8.

    The text is orjson's (ten times as fast as json's on the selector's explanation; the same
    text but for exponents, ``1e-05`` as ``0.00001``) wherever orjson takes the data, else
    json's. Floats must be finite, as they are where they were read from JSON: orjson writes
    NaN as null."""
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError:  # a lone surrogate, an integer beyond 64 bits, a number key
        return json_bytes(_compact(data))


def write_formatted(path: Path, data: Any, *, reuse: bool = False) -> None:
    """Write ``data`` atomically, formatted by ``json_write`` (see it for ``reuse``): the items
    of a ``LazyArray`` are made, formatted and written one after the other, never held whole.
    The caller has checked ``data`` against its schema, or checks each item as it makes it."""

    def format_data(write: Callable[[bytes], object]) -> None:
        json_write(data, lambda text: write(json_bytes(text)), reuse=reuse)
        write(b"\n")

    _write_atomically(path, format_data)


def _write_atomically(path: Path, produce: Callable[[Callable[[bytes], object]], object]) -> None:
    """Write the bytes ``produce`` hands its argument, in pieces, to ``path`` atomically;
    ``OSError`` becomes an ``OutputError``."""
    try:
        with atomic_file(path) as handle:
            produce(handle.write)
    except OSError as error:
        raise OutputError(f"cannot write {path}: {error.strerror or error}") from error


class LazyArray:
    """A JSON array whose items are made while its text is written (by ``json_write``), so that
    a document larger than memory is never held whole: the items are read once, in order.

    The layout needs to know whether an array has an item that is an object or array; to find
    out, the formatter reads items ahead, up to the first such item, and keeps them until their
    turn: an array of objects is read one item ahead."""

    __slots__ = ("_ahead", "_items")

    def __init__(self, items: Iterable[Any]) -> None:
        self._items = iter(items)
        self._ahead: deque[Any] = deque()

    def __iter__(self) -> Iterator[Any]:
        return chain(self._read_ahead(), self._items)

    def _read_ahead(self) -> Iterator[Any]:
        ahead = self._ahead
        while ahead:
            yield ahead.popleft()

    def any(self, test: Callable[[Any], bool]) -> bool:
        """Whether an item passes ``test``, reading items ahead until one does."""
        if any(test(item) for item in self._ahead):
            return True
        for item in self._items:
            self._ahead.append(item)
            if test(item):
                return True
        return False

    def items_read(self) -> list[Any]:
        """Every item, once ``any`` has read them all."""
        self._ahead.extend(self._items)
        return list(self._ahead)


def _lazy_as_list(value: Any) -> list[Any]:
    if isinstance(value, LazyArray):
        return value.items_read()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_lazy_as_list).encode
_text = json.encoder.encode_basestring
"""A text as ``_encode`` writes it, without its type checks."""
_compact = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode
_UNDECODED_BYTE = re.compile("[\udc80-\udcff]")
_CONTAINER = (dict, list, LazyArray)


def json_bytes(text: str) -> bytes:
    """JSON text as UTF-8. A byte of a file name that is not UTF-8 (which Python reads as a
    lone surrogate, PEP 383) is written as the four characters ``\\xHH``, as Python's
    ``backslashreplace`` shows it."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        shown = _UNDECODED_BYTE.sub(lambda byte: f"\\\\x{ord(byte[0]) - 0xDC00:02x}", text)
        return shown.encode("utf-8", "backslashreplace")


def json_text(data: Any, indent: int = 0, *, reuse: bool = False) -> str:
    """``data`` as the JSON files are formatted (see ``json_write``), as one text."""
    pieces: list[str] = []
    json_write(data, pieces.append, indent, reuse=reuse)
    return "".join(pieces)


def json_write(
    data: Any, write: Callable[[str], object], indent: int = 0, *, reuse: bool = False
) -> None:
    """Hand ``data``, as the JSON files are formatted, to ``write`` in pieces, its lines after
    the first indented by ``indent`` spaces so it can be placed inside an enclosing document.
    The one definition of the layout of every JSON file.

    Values at most two levels deep (a DICOM element, a shape, a direction matrix) take one
    line; deeper objects and arrays list one member per line, one space further in. An array
    may be a ``LazyArray``: the text made so far is handed on after each of its items, so a
    document made as it is written is held one item at a time.

    ``reuse``: an object that appears several times in ``data`` (the same ``dict``, as a
    series chosen by several selections) is formatted once. Only for data held whole: it keeps
    the text of every object of ``data`` that takes several lines.
    """
    pieces: list[str] = []

    def flush() -> None:
        write("".join(pieces))
        pieces.clear()

    _put(data, indent, pieces, flush, {} if reuse else None)
    write("".join(pieces))


_PIECES_PER_WRITE = 4096
"""Pieces of text joined into one ``write`` (some 100 kB of a DICOM dataset)."""


def _put(
    data: Any,
    indent: int,
    pieces: list[str],
    flush: Callable[[], None],
    made: dict[tuple[int, int], str] | None,
) -> None:
    """Append the pieces of ``data``'s text to ``pieces``, handed on (``flush``) between the
    items of a ``LazyArray`` once they are many; with ``made``, take or keep the text of an
    object by its identity."""
    if made is not None and isinstance(data, dict):
        key = (id(data), indent)
        text = made.get(key)
        if text is None:
            if _one_line(data):
                pieces.append(_encode(data))
                return
            start = len(pieces)
            _put_lines(data, indent, pieces, flush, made)
            text = made[key] = "".join(pieces[start:])
            del pieces[start:]
        pieces.append(text)
    elif isinstance(data, str):
        pieces.append(_text(data))
    elif not isinstance(data, _CONTAINER):
        pieces.append(_scalar(data))
    elif _one_line(data):
        pieces.append(_encode(data))
    elif made is not None and isinstance(data, LazyArray):
        raise TypeError("reuse is for data held whole, not a LazyArray")
    else:
        _put_lines(data, indent, pieces, flush, made)


def _put_lines(
    data: Any,
    indent: int,
    pieces: list[str],
    flush: Callable[[], None],
    made: dict[tuple[int, int], str] | None,
) -> None:
    """An object or array that does not fit one line: a member per line."""
    inner = "\n" + " " * (indent + 1)
    separator = inner
    append = pieces.append
    if isinstance(data, dict):
        append("{")
        for key, value in data.items():
            append(separator + (_text(key) if isinstance(key, str) else _encode(key)) + ": ")
            if isinstance(value, str):
                append(_text(value))
            elif isinstance(value, _CONTAINER):
                _put(value, indent + 1, pieces, flush, made)
            else:
                append(_scalar(value))
            separator = "," + inner
        append("\n" + " " * indent + "}")
        return
    lazy = isinstance(data, LazyArray)
    append("[")
    for item in data:
        append(separator)
        _put(item, indent + 1, pieces, flush, made)
        separator = "," + inner
        if lazy and len(pieces) >= _PIECES_PER_WRITE:
            flush()
    append("\n" + " " * indent + "]")


_CONSTANTS = {None: "null", True: "true", False: "false"}


def _scalar(value: Any) -> str:
    """A value that is no object or array, as ``_encode`` writes it (quicker for a number)."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    if value is None or kind is bool:
        return _CONSTANTS[value]
    return _encode(value)  # text, subclasses, and the errors of values JSON has not


def _one_line(value: Any) -> bool:
    """A scalar, or an object or array whose members are scalars or arrays and objects of
    scalars."""
    if isinstance(value, dict):
        members: Iterable[Any] = value.values()
    elif isinstance(value, list):
        members = value
    elif isinstance(value, LazyArray):
        return not value.any(lambda item: not _flat(item))
    else:
        return True
    return all(map(_flat, members))


def _flat(value: Any) -> bool:
    """A scalar, or an object or array of scalars."""
    if isinstance(value, dict):
        value = value.values()
    elif not isinstance(value, list):
        if isinstance(value, LazyArray):
            return not value.any(_is_container)
        return True
    return not any(map(_is_container, value))


def _is_container(value: Any) -> bool:
    return isinstance(value, _CONTAINER)


def read_json(path: Path, schema_name: str) -> Any:
    """Load a JSON file and check it against its schema; problems become an ``InputError``.

    Numbers must be finite: ``NaN``, ``Infinity`` and numbers beyond the float range are refused
    (no output could hold them), as are integers of more digits than Python converts."""
    try:
        data = _decode(path.read_bytes())
    except FileNotFoundError as error:
        raise InputError(f"{path} does not exist") from error
    except RecursionError:
        raise InputError(f"{path} is nested too deeply to read") from None
    except (OSError, ValueError) as error:  # ValueError: also bad UTF-8 and bad numbers
        raise InputError(f"{path} is not readable JSON: {error}") from error
    problems = schema_errors(data, schema_name)
    if problems:
        raise InputError(
            f"{path} does not match schema {schema_name!r}: " + "; ".join(problems[:5])
        )
    return data


def _long_integer_pattern() -> Any:
    options = re2.Options()
    options.never_capture = True
    return re2.compile(rb"(?:\A|[\[,:])\s*-?\d{19}", options)


_LONG_INTEGER = _long_integer_pattern()
"""A number of 19 digits or more, as the whole document or after ``[``, ``,`` or ``:`` (never
inside a string, which starts with a quote): orjson would read an integer beyond 64 bits as a
float. RE2 scans the 12 MB of the benchmark's metadata in 0.025 s of CPU, Python's ``re`` in
0.2 s."""


def _decode(data: bytes) -> Any:
    """The JSON document in ``data``, as ``json.loads`` with ``_finite`` and ``_no_constant``
    reads it, decoded by orjson (0.30 s of CPU, plus 0.025 s for the check below, where ``json``
    takes 0.43 s, on the 12 MB ``dicom-metadata.json`` of the selector benchmark) whenever that
    gives the same result: orjson refuses NaN, infinities, numbers beyond the float range and
    lone surrogates, and reads integers beyond 64 bits as floats; those documents (and any it
    refuses) are decoded by ``json``, which accepts or refuses them as before."""
    if _LONG_INTEGER.search(data) is None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data.decode("utf-8"), parse_float=_finite, parse_constant=_no_constant)


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"number {text[:30]} is beyond the float range")
    return number


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")
