"""Selection rules: where they come from, and turning their text into checked conditions.

Rules are read with a safe YAML loader (JSON is read as JSON), validated against
``schemas/rules.schema.json``, then checked for meaning: every key must be a DICOM keyword that
can be matched, every regular expression must compile, every operator must exist. Problems are
a ``RulesError`` naming the selection and the JSON path of the bad value.

Regular expressions run on RE2 (linear time) whenever RE2 accepts them; the Python syntax RE2
lacks (look-around, back-references: MONAI Deploy's rules are written for Python's ``re``) runs
on the ``regex`` package under a time limit per value and in all (``PatternBudget``). A pattern
that runs out of time ends the run with a ``RulesError`` naming the selection and the pattern.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import re2

from series_selection.common.dictionary import keyword_entries, keyword_vr
from series_selection.common.errors import RulesError
from series_selection.common.files import RefusedFileError, read_small_text
from series_selection.common.jsonio import schema_errors
from series_selection.common.models import RULES_BASE64_ENV
from series_selection.common.orientation import OBLIQUE, PLANES
from series_selection.selector.matching import (
    COMPARISONS,
    ORIENTATION_KEYWORD,
    AllOf,
    AnyOf,
    Condition,
    Members,
    Missing,
    Not,
    Number,
    Orientation,
    Text,
    as_written,
    leaves,
    member_text,
)

DEFAULT_RULES = "default.yaml"
COMBINATORS = ("any", "all", "not")
DERIVED_ORDER_KEYS = {
    "instance_count": "number of DICOM instances in the series",
    "voxel_count": "voxels in the series' largest volume",
    "slice_spacing": "distance between slices of the series' first volume, in mm",
}
UNMATCHABLE_VRS = frozenset({"SQ", "OB", "OD", "OF", "OL", "OV", "OW", "UN"})
MAX_RULES_BYTES = 1 << 20
"""Rules take a few kilobytes: a rules file over 1 MiB is refused, and no more is read."""
MAX_RULES_DEPTH = 64
"""How deep lists and mappings may nest (real rules: under ten levels)."""
MAX_RULES_VALUES = 100_000
"""Values (numbers, texts, lists, mappings) a rules document may hold, each use of a YAML alias
counted again: a few aliases nested in each other would otherwise stand for billions."""


@dataclass(frozen=True)
class OrderKey:
    """One sort key: a DICOM keyword or a derived name, and its direction."""

    name: str
    descending: bool = False

    def __str__(self) -> str:
        return f"{self.name} {'descending' if self.descending else 'ascending'}"


@dataclass(frozen=True)
class Selection:
    """One named selection: its conditions and what to do with the series that match."""

    name: str
    conditions: AllOf
    all_matched: bool = False
    order_by: tuple[OrderKey, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class Rules:
    """Checked rules and where they came from (for messages)."""

    source: str
    selections: tuple[Selection, ...]
    blank: bool = False
    """The rules text was blank (or only comments): every image series is chosen."""

    @property
    def keywords(self) -> frozenset[str]:
        """Every DICOM keyword the conditions or sort keys use."""
        used = {k.name for s in self.selections for k in s.order_by} - DERIVED_ORDER_KEYS.keys()
        for selection in self.selections:
            used.update(leaf.keyword for leaf in leaves(selection.conditions))
        return frozenset(used)


PATTERN_SECONDS = 0.1
"""Time one Python-syntax pattern may take on one value (RE2 patterns need no limit)."""
PATTERNS_TOTAL_SECONDS = 2.0
"""Time all Python-syntax patterns of a run may take together."""


class PatternBudget:
    """The time left to the Python-syntax patterns of one set of rules, shared by all of them."""

    def __init__(self, total: float = PATTERNS_TOTAL_SECONDS, each: float = PATTERN_SECONDS):
        self.total = total
        self.each = each
        self.spent = 0.0


class BoundedPattern:
    """A pattern RE2 refuses, run by the ``regex`` package (Python ``re`` syntax) with a time
    limit. It takes UTF-8 bytes, as the RE2 patterns do, so ``Text`` uses both alike.

    Running out of time, on one value or in all, is a ``RulesError`` (exit code 2) naming the
    selection and the pattern: a condition that silently failed would choose another series."""

    def __init__(self, pattern: str, owner: str, budget: PatternBudget) -> None:
        self.pattern = pattern
        self.owner = owner
        self.budget = budget
        import regex  # only for the patterns RE2 refuses (its import takes some 10 ms)

        self._compiled = regex.compile(pattern, regex.IGNORECASE | regex.VERSION0)

    def search(self, text: bytes) -> bool:
        return self._run(self._compiled.search, text)

    def fullmatch(self, text: bytes) -> bool:
        return self._run(self._compiled.fullmatch, text)

    def _run(self, method: Any, text: bytes) -> bool:
        budget = self.budget
        left = budget.total - budget.spent
        started = time.perf_counter()
        try:
            if left <= 0:
                raise TimeoutError
            found = method(text.decode("utf-8", "surrogateescape"), timeout=min(budget.each, left))
        except TimeoutError:
            raise RulesError(self._too_slow(left)) from None
        finally:
            budget.spent += time.perf_counter() - started
        return found is not None

    def _too_slow(self, left: float) -> str:
        if left < self.budget.each:
            limit = f"the {self.budget.total:g} s all Python-syntax patterns may take together"
        else:
            limit = f"the {self.budget.each:g} s it may take on one value"
        return (
            f"{self.owner}: regular expression {as_written(self.pattern)} ran out of time "
            f"({limit}); "
            "it needs Python syntax (look-around or back-references), which runs under a time "
            "limit: simplify it, or write it without look-around so that RE2 runs it"
        )


EVERY_IMAGE_SERIES = Selection(
    name="all image series", conditions=AllOf("$.selections[0].conditions", ()), all_matched=True
)
"""What blank rules choose, as MONAI Deploy does with no rules (and as ``default.yaml`` does)."""
TOP_LEVEL_KEYS = ("description", "selections")
SELECTION_KEYS = ("name", "description", "conditions", "all_matched", "order_by", "required")


class _BadRuleError(ValueError):
    """A bad value at ``path`` inside one selection; it becomes a ``RulesError`` naming the path."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def read_rules_text(
    rules_file: str | None, environ: Mapping[str, str], default_folder: Path | None = None
) -> tuple[str, str]:
    """The rules text and a name for its source, in order of precedence.

    ``NVIDIA_CLARA_SELECTION_RULES_BASE64``, then ``rules_file`` (the ``--rules`` flag or
    ``NVIDIA_CLARA_SELECTION_RULES_FILE``), then the default rules shipped in ``rules/``.
    """
    encoded = environ.get(RULES_BASE64_ENV, "").strip()
    if encoded:
        try:
            text = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as error:
            raise RulesError(f"{RULES_BASE64_ENV} is not base64 of UTF-8 text: {error}") from error
        return text, RULES_BASE64_ENV
    if rules_file:
        path = Path(rules_file)
        return _read_rules_file(path), str(path)
    shipped = resources.files("series_selection.selector").joinpath(f"rules/{DEFAULT_RULES}")
    return shipped.read_text(encoding="utf-8"), f"default rules ({DEFAULT_RULES})"


def _read_rules_file(path: Path) -> str:
    """The text of a rules file (``common.files.read_small_text``, at most ``MAX_RULES_BYTES``)."""
    try:
        return read_small_text(path, MAX_RULES_BYTES)
    except RefusedFileError as error:
        raise RulesError(f"rules file {path} {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise RulesError(f"cannot read rules file {path}: {reason}") from error


def parse_rules(text: str, source: str) -> Rules:
    """Checked ``Rules`` from YAML or JSON text; ``RulesError`` tells what is wrong and where."""
    document = _load_document(text, source)
    if document is None:  # blank, or only comments: every image series, as in MONAI Deploy
        return Rules(source=source, selections=(EVERY_IMAGE_SERIES,), blank=True)
    _check_keys(document, source)
    problems = schema_errors(document, "rules")
    if problems:
        raise RulesError(f"{source}: {_locate(document, problems[0])}")
    selections = []
    budget = PatternBudget()
    for index, entry in enumerate(document["selections"]):
        name = entry.get("name") or f"selection {index + 1}"
        base = f"$.selections[{index}]"
        owner = f"{source}: selection {_label(entry, index)}"
        try:
            selections.append(
                Selection(
                    name=name,
                    conditions=_conditions(
                        entry["conditions"], f"{base}.conditions", _Owner(owner, budget)
                    ),
                    all_matched=entry.get("all_matched", False),
                    order_by=tuple(
                        _order_key(key, f"{base}.order_by[{i}]")
                        for i, key in enumerate(entry.get("order_by", ()))
                    ),
                    required=entry.get("required", False),
                )
            )
        except _BadRuleError as problem:
            raise RulesError(
                f"{source}: selection {_label(entry, index)} at {problem.path}: {problem.message}"
            ) from None
    return Rules(source=source, selections=tuple(selections))


def load_rules(rules_file: str | None, environ: Mapping[str, str]) -> Rules:
    """Read and check the rules from the environment, ``rules_file`` or the shipped default."""
    return parse_rules(*read_rules_text(rules_file, environ))


def _load_document(text: str, source: str) -> Any:
    """The JSON or YAML document, checked to be plain data of a sane size (see ``_size``)."""
    kind = "JSON" if text.lstrip().startswith("{") else "YAML"
    try:
        document = json.loads(text) if kind == "JSON" else _load_yaml(text)
    except RecursionError:
        raise RulesError(f"{source}: nested deeper than {MAX_RULES_DEPTH} levels") from None
    except json.JSONDecodeError as error:
        raise RulesError(
            f"{source} is not valid JSON: line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None
    except ValueError as error:  # also a number of more digits than Python converts
        reason = " ".join(str(error).split())
        raise RulesError(f"{source} is not valid {kind}: {reason}") from None
    _size(document, source, 0, {})
    return document


def _load_yaml(text: str) -> Any:
    import yaml  # only YAML rules need it (about 10 ms to import)

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        what = " ".join(p for p in (error.context, error.problem) if p)
        raise ValueError(where + what) from error
    except yaml.YAMLError as error:
        raise ValueError(str(error)) from error


def _check_keys(document: Any, source: str) -> None:
    """``RulesError`` for a key the rules format does not have at the top or in a selection,
    naming the key it most resembles (``all_match`` -> ``all_matched``)."""
    if not isinstance(document, dict):
        return
    places: list[tuple[str, str, Any, Sequence[str]]] = [("", "$", document, TOP_LEVEL_KEYS)]
    selections = document.get("selections")
    if isinstance(selections, list):
        places += [
            (f"selection {_label(entry, i)} at ", f"$.selections[{i}]", entry, SELECTION_KEYS)
            for i, entry in enumerate(selections)
        ]
    for label, path, mapping, known in places:
        if not isinstance(mapping, dict):
            continue
        for key in mapping:
            if key in known:
                continue
            close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; use {', '.join(known)}"
            raise RulesError(f"{source}: {label}{path}: unknown key {key!r}{hint}")


def _size(node: Any, source: str, depth: int, seen: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """How many values ``node`` holds and how deep they nest, a shared value (a YAML alias)
    counted each time it is used; ``seen`` remembers both for each list and mapping.

    ``RulesError`` when the values pass ``MAX_RULES_VALUES``, when they nest deeper than
    ``MAX_RULES_DEPTH`` (as an alias inside its own anchor does), or for a number that is not
    finite or beyond the float range."""
    if depth > MAX_RULES_DEPTH:
        raise RulesError(f"{source}: nested deeper than {MAX_RULES_DEPTH} levels")
    if isinstance(node, int | float) and not isinstance(node, bool):
        try:
            finite = math.isfinite(node)
        except OverflowError:
            finite = False
        if not finite:
            raise RulesError(f"{source}: a number is out of range (not finite, or over 1e308)")
    if not isinstance(node, dict | list):
        return 1, 0
    if id(node) not in seen:
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        sizes = [_size(child, source, depth + 1, seen) for child in children]
        seen[id(node)] = (1 + sum(n for n, _ in sizes), 1 + max((h for _, h in sizes), default=0))
    count, height = seen[id(node)]
    if depth + height > MAX_RULES_DEPTH:
        raise RulesError(f"{source}: nested deeper than {MAX_RULES_DEPTH} levels")
    if count > MAX_RULES_VALUES:
        raise RulesError(
            f"{source}: more than {MAX_RULES_VALUES} values (each use of a YAML alias counts)"
        )
    return count, height


def _locate(document: Any, problem: str) -> str:
    """Prefix a schema problem with the name of the selection it is in."""
    found = re.match(r"\$\.selections\[(\d+)\]", problem)
    if found is None:
        return problem
    index = int(found.group(1))
    return f"selection {_label(document['selections'][index], index)} at {problem}"


def _label(entry: Any, index: int) -> str:
    """How messages name a selection: its name, else its number (from 1)."""
    name = entry.get("name") if isinstance(entry, dict) else None
    return repr(name) if isinstance(name, str) and name else f"{index + 1}"


@dataclass(frozen=True)
class _Owner:
    """Whose conditions are being built: how messages name the selection, and the time budget of
    the rules' Python-syntax patterns."""

    label: str
    budget: PatternBudget


def _conditions(mapping: Mapping[str, Any], path: str, owner: _Owner) -> AllOf:
    children: list[Condition] = []
    for key, value in mapping.items():
        where = f"{path}.{key}"
        if key == "not":
            children.append(Not(where, (_conditions(value, where, owner),)))
        elif key in ("any", "all"):
            groups = tuple(
                _conditions(group, f"{where}[{i}]", owner) for i, group in enumerate(value)
            )
            children.append(AnyOf(where, groups) if key == "any" else AllOf(where, groups))
        else:
            children.append(_leaf(key, value, where, owner))
    return AllOf(path, tuple(children))


def _leaf(keyword: str, value: Any, path: str, owner: _Owner) -> Condition:
    _check_keyword(keyword, path)
    if value is None:
        return Missing(path, keyword, value)
    if keyword == ORIENTATION_KEYWORD and isinstance(value, str):
        plane = value.upper()
        if plane not in (*PLANES, OBLIQUE):
            raise _BadRuleError(
                path, f"unknown orientation {value!r}: use Axial, Coronal, Sagittal or Oblique"
            )
        return Orientation(path, keyword, value, plane)
    if isinstance(value, str) and value.startswith("!"):
        return _list_condition(keyword, [value], path)  # "!X" alone: X is not one of the values
    if isinstance(value, str):
        return Text(path, keyword, value, _regex(value, path, owner))
    if isinstance(value, int | float):
        return Number(path, keyword, value, "==", float(value))
    return _list_condition(keyword, value, path)


def _list_condition(keyword: str, value: Sequence[Any], path: str) -> Condition:
    numbers = [isinstance(v, int | float) for v in value]
    if len(value) == 2 and numbers[0] and not numbers[1]:
        relation = value[1].strip()
        if relation not in COMPARISONS:
            raise _BadRuleError(
                f"{path}[1]",
                f"unknown operator {value[1]!r}: use one of {', '.join(COMPARISONS)}",
            )
        return Number(path, keyword, value, relation, float(value[0]))
    if all(numbers):
        if len(value) != 2:
            raise _BadRuleError(
                path,
                "a list of numbers is a range [low, high]; for one of several values use any:",
            )
        low, high = (float(v) for v in value)
        if low > high:
            raise _BadRuleError(path, f"empty range: low {value[0]} is above high {value[1]}")
        return Number(path, keyword, value, "range", low, high)
    present = {member_text(v) for v in value if not (isinstance(v, str) and v.startswith("!"))}
    absent = {member_text(v[1:]) for v in value if isinstance(v, str) and v.startswith("!")}
    if present & absent:
        both = ", ".join(sorted(v.upper() for v in present & absent))
        raise _BadRuleError(path, f"{both} is both required and excluded")
    return Members(path, keyword, value, frozenset(present), frozenset(absent))


def _check_keyword(keyword: str, path: str) -> None:
    vr = keyword_vr(keyword)
    if vr is None:
        close = difflib.get_close_matches(keyword, keyword_entries(), n=1, cutoff=0.8)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _BadRuleError(path, f"unknown DICOM keyword {keyword!r}{hint}")
    if vr in UNMATCHABLE_VRS:
        raise _BadRuleError(path, f"{keyword} has VR {vr}, which cannot be matched")


def _regex(pattern: str, path: str, owner: _Owner) -> Any:
    """RE2 (linear time) when it accepts the pattern; else, for the Python syntax it lacks
    (look-around, back-references), a ``BoundedPattern``; else a ``_BadRuleError``."""
    options = re2.Options()
    options.case_sensitive = False
    options.log_errors = False
    options.never_capture = True
    try:
        return re2.compile(pattern.encode("utf-8"), options)
    except re2.error as error:
        reason = error.args[0].decode() if isinstance(error.args[0], bytes) else error.args[0]
    import regex  # as BoundedPattern does

    try:
        return BoundedPattern(pattern, f"{owner.label} at {path}", owner.budget)
    except (regex.error, OverflowError, RecursionError) as error:
        if isinstance(error, regex.error) and "invalid perl operator" in reason:
            reason = str(error)  # RE2's reason names a construct it lacks, not the mistake
        raise _BadRuleError(
            path, f"invalid regular expression {as_written(pattern)}: {reason}"
        ) from None


def pattern_engine(condition: Any) -> str:
    """Which engine runs a ``Text`` condition's pattern: ``RE2`` or ``Python (time-limited)``."""
    return "Python (time-limited)" if isinstance(condition, BoundedPattern) else "RE2"


def _order_key(text: str, path: str) -> OrderKey:
    name, *direction = text.split()
    if name not in DERIVED_ORDER_KEYS:
        try:
            _check_keyword(name, path)
        except _BadRuleError as problem:
            derived = ", ".join(DERIVED_ORDER_KEYS)
            raise _BadRuleError(path, f"{problem.message}; derived keys are {derived}") from None
    return OrderKey(name, descending=direction == ["descending"])
