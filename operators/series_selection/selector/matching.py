"""Conditions, one kind per kind of expected value, and the results that explain them.

Every condition is a frozen record built once from the rules (regular expressions are compiled
then) and tested against the ``Facts`` of a series. Testing returns a ``Result``: passed or not,
the value that was seen and why; ``--explain`` prints exactly these.

An attribute that differs between the instances of a series is tested on every distinct value:
the condition passes only when it passes for all of them.

Choosing needs only ``holds`` (pass or fail, stopping at the first failure); the full ``Result``
tree that explains a verdict is built by ``evaluate`` when it is asked for. Both are pure functions
of the values seen, so each condition remembers its answers: ten thousand series with the same
Modality cost one test, not ten thousand.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from series_selection.common.orientation import plane_and_tilt

Values = tuple[Any, ...]
"""The values of one attribute in one dataset; empty when the attribute is absent or empty."""

ORIENTATION_KEYWORD = "ImageOrientationPatient"

COMPARISONS: Mapping[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "!=": operator.ne,
    "==": operator.eq,
}


@dataclass(frozen=True, slots=True)
class Facts:
    """What conditions see of one series, looked up once.

    ``values`` maps each keyword the rules use to its distinct values: one entry when the
    attribute is constant over the series (series or study level), one per distinct instance
    value otherwise. ``volume_orientations`` are the planes the parser gave the series' volumes.
    """

    values: Mapping[str, tuple[Values, ...]]
    volume_orientations: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Result:
    """How one condition fared on one series: what is shown by ``--explain``."""

    path: str
    condition: str
    passed: bool
    actual: Any
    why: str
    children: tuple[Result, ...] = ()


class Condition(Protocol):
    def holds(self, facts: Facts) -> bool: ...

    def evaluate(self, facts: Facts) -> Result: ...


def shown(values: Values) -> Any:
    """A value list as a user reads it: ``None`` when missing, a scalar when single."""
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def actual(distinct: tuple[Values, ...]) -> Any:
    """What Explain shows of an attribute: its value(s), or each instance's when they differ."""
    if len(distinct) == 1:
        return shown(distinct[0])
    return {"per_instance": [shown(v) for v in distinct]}


def as_number(value: Any) -> float | None:
    """``value`` as a number when it is one (or numeric text), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:  # an integer beyond the float range
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def as_written(value: Any) -> str:
    r"""A value of the rules as its author wrote it: text quoted but not escaped (``'\\bT1\\b'``
    shows as ``'\bT1\b'``), lists in brackets, ``null`` for None."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(as_written(v) for v in value) + "]"
    return repr(value)


def number_text(value: float) -> str:
    """A number as DICOM writes it: ``3`` rather than ``3.0``."""
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if value.is_integer() else repr(float(value))


def plane_of(iop: Values) -> tuple[str, float] | None:
    """The plane of ImageOrientationPatient direction cosines and its tilt in degrees from it;
    ``None`` when the values are not two non-parallel direction cosines."""
    numbers = [as_number(v) for v in iop]
    if len(numbers) != 6 or any(n is None for n in numbers):
        return None
    try:
        return plane_and_tilt([float(n) for n in numbers if n is not None])
    except ValueError:
        return None


@dataclass(frozen=True)
class Leaf:
    """A condition on one attribute; subclasses say how one value list is tested."""

    path: str
    keyword: str
    expected: Any
    _results: dict[Any, Result] = field(default_factory=dict, init=False, compare=False, repr=False)

    @property
    def condition(self) -> str:
        return f"{self.keyword}: {as_written(self.expected)}"

    def test(self, values: Values) -> tuple[bool, str]:
        raise NotImplementedError

    def holds(self, facts: Facts) -> bool:
        return self.evaluate(facts).passed

    def evaluate(self, facts: Facts) -> Result:
        distinct = facts.values[self.keyword]
        result = self._results.get(distinct)
        if result is None:
            result = self._results[distinct] = self.judge(facts)
        return result

    def judge(self, facts: Facts) -> Result:
        distinct = facts.values[self.keyword]
        if len(distinct) == 1:
            passed, why = self.test(distinct[0])
            return Result(self.path, self.condition, passed, shown(distinct[0]), why)
        seen = actual(distinct)
        for values in distinct:
            passed, why = self.test(values)
            if not passed:
                return Result(self.path, self.condition, False, seen, f"an instance fails: {why}")
        return Result(
            self.path, self.condition, True, seen, f"all {len(distinct)} instance values pass"
        )


@dataclass(frozen=True)
class Text(Leaf):
    """Text: equal ignoring case, else the regular expression (case-insensitive) matches.

    ``regex`` is an RE2 pattern compiled from UTF-8 bytes (RE2 runs in linear time; bytes spare
    its Python wrapper the work of mapping match offsets back to characters), or, for the Python
    syntax RE2 lacks, a ``rules.BoundedPattern`` taking the same bytes under a time limit.

    It is searched anywhere in text values and must match the whole of a number's text; text
    that reads as a number also equals a numerically equal value (``"3"`` equals ``3.0``).
    """

    regex: Any = field(compare=False, repr=False)

    def test(self, values: Values) -> tuple[bool, str]:
        if not values:
            return False, "attribute is missing"
        folded = self.expected.casefold()
        number = as_number(self.expected)
        for value in values:
            if isinstance(value, int | float) and not isinstance(value, bool):
                if number is not None and as_number(value) == number:
                    return True, "equal"
                if self.regex.fullmatch(number_text(value).encode()):
                    return True, "regular expression matches the number"
            else:
                text = str(value)
                if text.casefold() == folded:
                    return True, "equal (ignoring case)"
                if self.regex.search(text.encode()):
                    return True, "regular expression found"
        return False, "not equal, and the regular expression does not match"


@dataclass(frozen=True)
class Number(Leaf):
    """Every value is a number that compares to ``bound`` with ``relation``, or lies in a range."""

    relation: str
    bound: float
    upper: float | None = None

    def test(self, values: Values) -> tuple[bool, str]:
        if not values:
            return False, "attribute is missing"
        for value in values:
            number = as_number(value)
            if number is None:
                return False, f"{value!r} is not a number"
            if not self._holds(number):
                return False, f"{number_text(number)} is not {self._wanted}"
        return True, f"{self._wanted}"

    def _holds(self, number: float) -> bool:
        if self.upper is not None:
            return self.bound <= number <= self.upper
        return COMPARISONS[self.relation](number, self.bound)

    @property
    def _wanted(self) -> str:
        if self.upper is not None:
            return f"in [{number_text(self.bound)}, {number_text(self.upper)}]"
        return f"{self.relation} {number_text(self.bound)}"


@dataclass(frozen=True)
class Members(Leaf):
    """Every ``present`` text is one of the values and no ``absent`` one is (whole, any case)."""

    present: frozenset[str]
    absent: frozenset[str]

    def test(self, values: Values) -> tuple[bool, str]:
        if not values:
            return False, "attribute is missing"
        have = {member_text(v) for v in values}
        lacking = sorted(self.present - have)
        if lacking:
            return False, f"lacks {', '.join(v.upper() for v in lacking)}"
        forbidden = sorted(self.absent & have)
        if forbidden:
            return False, f"has excluded {', '.join(v.upper() for v in forbidden)}"
        return True, "has every listed value" + (" and none excluded" if self.absent else "")


def member_text(value: Any) -> str:
    """How a value compares in a list condition: its text, ignoring case."""
    number = value if isinstance(value, int | float) and not isinstance(value, bool) else None
    return number_text(number) if number is not None else str(value).casefold()


@dataclass(frozen=True)
class Missing(Leaf):
    """``null``: the attribute is absent or has no value."""

    def test(self, values: Values) -> tuple[bool, str]:
        return (True, "attribute is missing") if not values else (False, "attribute is present")


@dataclass(frozen=True)
class Orientation(Leaf):
    """The slice plane computed from ImageOrientationPatient (else the volume's) is ``plane``."""

    plane: str

    def test(self, values: Values) -> tuple[bool, str]:
        raise NotImplementedError("orientation is tested on the whole series")

    def evaluate(self, facts: Facts) -> Result:
        key = (facts.values[self.keyword], facts.volume_orientations)
        result = self._results.get(key)
        if result is None:
            result = self._results[key] = self.judge(facts)
        return result

    def judge(self, facts: Facts) -> Result:
        """Pass when every plane seen is ``plane``; the planes seen are the actual value."""
        distinct = facts.values[self.keyword]
        if distinct == ((),):
            if not facts.volume_orientations:
                return Result(self.path, self.condition, False, None, "attribute is missing")
            planes = sorted(p.title() for p in facts.volume_orientations)
            why = f"the parser's volume orientation, {'/'.join(planes)} (no {self.keyword})"
        else:
            found = [plane_of(values) for values in distinct]
            if any(f is None for f in found):
                bad = next(v for v, f in zip(distinct, found, strict=True) if f is None)
                why = (
                    "missing on some instances"
                    if not bad
                    else f"{shown(bad)!r} is not two non-parallel direction cosines"
                )
                return Result(self.path, self.condition, False, shown(bad), why)
            planes = sorted({f[0].title() for f in found if f is not None})
            tilt = max(f[1] for f in found if f is not None)
            why = f"{'/'.join(planes)}: slice normal {tilt:.1f} deg from the nearest axis"
        passed = planes == [self.plane.title()]
        actual = planes[0] if len(planes) == 1 else {"per_instance": planes}
        return Result(self.path, self.condition, passed, actual, why)


@dataclass(frozen=True)
class Group:
    """Conditions nested in one: ``holds`` and ``combine`` say how theirs make its own."""

    path: str
    children: tuple[Condition, ...]

    def holds(self, facts: Facts) -> bool:
        raise NotImplementedError

    def evaluate(self, facts: Facts) -> Result:
        return self.combine(tuple([child.evaluate(facts) for child in self.children]))

    def combine(self, results: tuple[Result, ...]) -> Result:
        raise NotImplementedError


class AllOf(Group):
    """Every nested condition holds (a mapping of conditions, or ``all: [...]``)."""

    def holds(self, facts: Facts) -> bool:
        return all(child.holds(facts) for child in self.children)

    def combine(self, results: tuple[Result, ...]) -> Result:
        failed = sum(not r.passed for r in results)
        why = f"{failed} of {len(results)} conditions fail" if failed else "all conditions pass"
        return Result(self.path, "all of", not failed, None, why, results)


class AnyOf(Group):
    """At least one nested group of conditions holds (``any: [...]``)."""

    def holds(self, facts: Facts) -> bool:
        return any(child.holds(facts) for child in self.children)

    def combine(self, results: tuple[Result, ...]) -> Result:
        passing = [i for i, r in enumerate(results) if r.passed]
        why = f"alternative {passing[0] + 1} passes" if passing else "no alternative passes"
        return Result(self.path, "any of", bool(passing), None, why, results)


class Not(Group):
    """The one nested group of conditions does not hold (``not: {...}``)."""

    def holds(self, facts: Facts) -> bool:
        return not self.children[0].holds(facts)

    def combine(self, results: tuple[Result, ...]) -> Result:
        (nested,) = results
        if nested.passed:
            why = "negated conditions hold: " + "; ".join(c.condition for c in nested.children)
        else:
            why = "negated conditions fail"
        return Result(self.path, "not", not nested.passed, None, why, results)


def leaves(condition: Condition) -> list[Leaf]:
    """The conditions on one attribute each, nested in ``condition`` (or itself), in rule order."""
    if isinstance(condition, Group):
        return [leaf for child in condition.children for leaf in leaves(child)]
    assert isinstance(condition, Leaf)
    return [condition]


class ValueCodes:
    """The facts of many series as small numbers: each distinct value of each keyword, and each
    distinct set of volume planes, gets one. Series are grouped by these numbers rather than by
    their values (nested tuples), which would be hashed again for every selection."""

    def __init__(self, facts: Sequence[Facts], keywords: Sequence[str]) -> None:
        self.facts = facts
        self.codes: dict[str, list[int]] = {}
        self.distinct: dict[str, list[tuple[Values, ...]]] = {}
        self.first: dict[str, dict[int, int]] = {}
        """Per keyword, the first series with each code."""
        last = len(facts) - 1
        for keyword in keywords:
            code_of: dict[tuple[Values, ...], int] = {}
            column = [code_of.setdefault(f.values[keyword], len(code_of)) for f in facts]
            self.codes[keyword] = column
            self.distinct[keyword] = list(code_of)
            self.first[keyword] = dict(zip(reversed(column), range(last, -1, -1), strict=True))
        planes: dict[frozenset[str], int] = {}
        self.planes = [planes.setdefault(f.volume_orientations, len(planes)) for f in facts]

    def keys(self, condition: Condition) -> list[tuple[int, ...]]:
        """Per series, a key that is equal for series on which ``condition`` fares alike."""
        keywords = sorted({leaf.keyword for leaf in leaves(condition)})
        return list(zip(self.planes, *(self.codes[k] for k in keywords), strict=True))

    def passing(self, condition: Condition, series: Sequence[int] | None = None) -> list[int]:
        """The series (by index, in order) among ``series`` (by default all) on which
        ``condition`` holds. Each condition on one attribute is tested once per distinct value
        it meets, and only on the series that the conditions before it in an ``all`` passed."""
        indices = range(len(self.facts)) if series is None else series
        if isinstance(condition, AllOf):
            kept = list(indices)
            for child in condition.children:
                kept = self.passing(child, kept)
            return kept
        if isinstance(condition, AnyOf):
            found: set[int] = set()
            for child in condition.children:
                found.update(self.passing(child, [i for i in indices if i not in found]))
            return [i for i in indices if i in found]
        if isinstance(condition, Not):
            failing = set(self.passing(condition.children[0], indices))
            return [i for i in indices if i not in failing]
        assert isinstance(condition, Leaf)
        column = self.codes[condition.keyword]
        if isinstance(condition, Orientation):  # it also sees the planes of the volumes
            planes = self.planes
            keys = [(column[index], planes[index]) for index in indices]
            sample = dict(zip(reversed(keys), reversed(indices), strict=True))
            passed = {key for key, index in sample.items() if condition.holds(self.facts[index])}
            return [index for index, key in zip(indices, keys, strict=True) if key in passed]
        first = self.first[condition.keyword]
        seen = set(map(column.__getitem__, indices))
        holding = {code for code in seen if condition.holds(self.facts[first[code]])}
        return [index for index in indices if column[index] in holding]
