"""Applying selections: which series match, in which order, and which are chosen."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from series_selection.common.dictionary import tag_key
from series_selection.common.errors import SelectionError
from series_selection.common.models import element_values, value_text
from series_selection.selector.inputs import Candidate
from series_selection.selector.matching import AllOf, Result, ValueCodes, as_number
from series_selection.selector.rules import DERIVED_ORDER_KEYS, OrderKey, Rules, Selection

DEFAULT_ORDER = (
    "study by study: volumes before single slices, single slices before localizers, then the "
    "most slices, then SeriesNumber"
)
"""How matching series are ordered after the rules' own ``order_by`` (docs/selector.md)."""


@dataclass(frozen=True)
class Verdict:
    """One series under one selection: whether it matched, its rank, whether it was chosen.

    ``rank`` is the series' place (from 1) among the matching image series in the selection's
    order; ``None`` when it did not match or has no volume.
    """

    candidate: Candidate
    conditions: AllOf
    rank: int | None
    chosen: bool

    @property
    def matched(self) -> bool:
        return self.conditions.holds(self.candidate.facts)

    @property
    def has_volume(self) -> bool:
        return bool(self.candidate.volumes)

    @cached_property
    def result(self) -> Result:
        """Every condition, tested: what explains the verdict."""
        return self.conditions.evaluate(self.candidate.facts)


@dataclass(frozen=True)
class DefaultChoice:
    """A study where several series matched and the default order, not the rules, chose."""

    study_uid: str
    matched: int
    chosen: Candidate

    def __str__(self) -> str:
        return (
            f"{self.matched} series matched in study {self.study_uid}; chose "
            f"{self.chosen.label} by the default order ({DEFAULT_ORDER}); "
            "add order_by to decide"
        )


@dataclass(frozen=True)
class Outcome:
    """A selection's matching image series, best first, the ones chosen, and the studies where
    the default order chose. Series are named by their place in ``series``, every series in the
    fixed order; ``ranked``, ``chosen`` and ``others`` (the rest, in that order) give them."""

    selection: Selection
    series: tuple[Candidate, ...]
    ranked_at: tuple[int, ...]
    chosen_at: tuple[int, ...]
    by_default: tuple[DefaultChoice, ...] = ()

    @cached_property
    def others_at(self) -> tuple[int, ...]:
        placed = set(self.ranked_at)
        return tuple([index for index in range(len(self.series)) if index not in placed])

    @cached_property
    def ranked(self) -> tuple[Candidate, ...]:
        return tuple(map(self.series.__getitem__, self.ranked_at))

    @cached_property
    def chosen(self) -> tuple[Candidate, ...]:
        return tuple(map(self.series.__getitem__, self.chosen_at))

    @cached_property
    def others(self) -> tuple[Candidate, ...]:
        return tuple(map(self.series.__getitem__, self.others_at))

    def verdicts(self) -> tuple[Verdict, ...]:
        """Every series: ranked matches first, then the others in series order."""
        conditions = self.selection.conditions
        chosen = set(self.chosen_at)
        ranked = (
            Verdict(self.series[index], conditions, rank, index in chosen)
            for rank, index in enumerate(self.ranked_at, start=1)
        )
        others = (Verdict(c, conditions, None, False) for c in self.others)
        return (*ranked, *others)


@dataclass(frozen=True)
class Selected:
    """Every selection's outcome, in rule order, and what they were worked out on: the series in
    the fixed order (by study, then SeriesNumber) and the codes of their values."""

    series: tuple[Candidate, ...]
    codes: ValueCodes
    outcomes: tuple[Outcome, ...]


def select(rules: Rules, candidates: Sequence[Candidate]) -> Selected:
    """Apply every selection, in rule order, to every candidate."""
    ordered = _SeriesInOrder(candidates, sorted(rules.keywords))
    outcomes = tuple(ordered.apply(selection) for selection in rules.selections)
    return Selected(ordered.series, ordered.codes, outcomes)


class _SeriesInOrder:
    """The candidates in the fixed order, with their study numbers and the codes of their
    values, and what the selections work out once and share: default ranks, sort columns."""

    def __init__(self, candidates: Sequence[Candidate], keywords: Sequence[str]) -> None:
        self.series, self.studies = _fixed_order(candidates)
        self.codes = ValueCodes([c.facts for c in self.series], keywords)
        self.columns = _SortColumns(self.series, self.codes)
        self._with_volume = [bool(c.volumes) for c in self.series]
        self._ranks: list[tuple[int, int] | None] = [None] * len(self.series)

    def apply(self, selection: Selection) -> Outcome:
        """The series that ``selection`` matches, ranked, and those it chooses."""
        series, studies, ranks = self.series, self.studies, self._ranks
        matching = [i for i in self.codes.passing(selection.conditions) if self._with_volume[i]]
        for index in matching:
            if ranks[index] is None:
                ranks[index] = default_rank(series[index])
        by_study_and_rank = sorted(matching, key=lambda i: (studies[i], ranks[i]))
        ranked = _ordered(by_study_and_rank, selection.order_by, self.columns)
        by_default: list[DefaultChoice] = []
        if selection.all_matched:
            chosen = ranked
        else:
            of_study: dict[int, list[int]] = {}
            for index in ranked:
                of_study.setdefault(studies[index], []).append(index)
            chosen = [matches[0] for matches in of_study.values()]
            by_default = [
                DefaultChoice(series[best].study.uid, len(rest) + 1, series[best])
                for best, *rest in of_study.values()
                if rest and _tied(best, rest[0], selection.order_by, self.columns)
            ]
        return Outcome(selection, series, tuple(ranked), tuple(chosen), tuple(by_default))


def _fixed_order(candidates: Sequence[Candidate]) -> tuple[tuple[Candidate, ...], list[int]]:
    """The candidates in the order without sort keys (by ``study_order``, then
    ``series_order``), and each one's study numbered in that order (the studies are sorted
    first: a series then compares by a number, not by texts)."""
    of_study: dict[int, tuple[str, str, str]] = {}  # a study's order, worked out once
    study_orders = [
        of_study.get(id(c.study)) or of_study.setdefault(id(c.study), c.study_order)
        for c in candidates
    ]
    numbered = {order: n for n, order in enumerate(sorted(set(study_orders)))}
    keys = [(numbered[s], c.series_order) for s, c in zip(study_orders, candidates, strict=True)]
    order = sorted(range(len(candidates)), key=keys.__getitem__)
    return tuple([candidates[i] for i in order]), [keys[i][0] for i in order]


def check_required(outcomes: Sequence[Outcome]) -> None:
    """``SelectionError`` naming every required selection that chose nothing."""
    empty = [o.selection.name for o in outcomes if o.selection.required and not o.chosen]
    if empty:
        names = ", ".join(repr(name) for name in empty)
        raise SelectionError(
            f"required selection {names} matched no image series (run with --explain to see why)"
        )


def default_rank(candidate: Candidate) -> tuple[int, int]:
    """Where the default order places a series: (0 a volume, 1 a single slice, 2 a localizer;
    then more slices first). A localizer is a series whose ImageType says LOCALIZER, or whose
    volumes lie in more than one orientation (the three planes of a scout)."""
    volumes = candidate.volumes
    slices = max((v.shape[2] for v in volumes), default=0)
    if _says_localizer(candidate) or len({v.orientation for v in volumes}) > 1:
        kind = 2
    else:
        kind = 0 if slices > 1 else 1
    return kind, -slices


def _says_localizer(candidate: Candidate) -> bool:
    """Whether the series' ImageType, or any of its instances', holds LOCALIZER."""
    series = candidate.series
    tag = tag_key("ImageType")
    for attributes in (series.attributes, *(i.attributes for i in series.instances)):
        element = attributes.get(tag)
        values = element_values(element) if element else ()
        if any(value_text(value).upper() == "LOCALIZER" for value in values):
            return True
    return False


class _SortColumns:
    """Each sort key's comparable value (see ``_comparable``) for every series, in the fixed
    order, worked out when a selection first sorts by it: selections share their keys."""

    def __init__(self, series: Sequence[Candidate], codes: ValueCodes) -> None:
        self._series = series
        self._codes = codes
        self._columns: dict[str, list[Any]] = {}

    def __getitem__(self, name: str) -> list[Any]:
        """Per series, ``_comparable``'s value: a tuple, or ``None``."""
        column = self._columns.get(name)
        if column is None:
            if name in DERIVED_ORDER_KEYS:
                column = [_comparable(_derived(c, name)) for c in self._series]
            else:  # a keyword: its first value, worked out once per distinct value
                distinct = self._codes.distinct[name]
                of_code = [_comparable(values[0][0] if values[0] else None) for values in distinct]
                column = list(map(of_code.__getitem__, self._codes.codes[name]))
            self._columns[name] = column
        return column


def _derived(candidate: Candidate, name: str) -> Any:
    """The value of a sort key that is no DICOM keyword (``DERIVED_ORDER_KEYS``)."""
    if name == "instance_count":
        return len(candidate.series.instances)
    if name == "voxel_count":
        return max((math.prod(v.shape) for v in candidate.volumes), default=None)
    return candidate.volumes[0].spacing[2] if candidate.volumes else None  # slice_spacing


def _comparable(value: Any) -> tuple[int, Any] | None:
    """A sort key's value as it compares: numbers before text; ``None`` when there is none."""
    if value is None:
        return None
    number = as_number(value)
    return (0, number) if number is not None else (1, str(value).casefold())


def _tied(first: int, second: int, keys: Sequence[OrderKey], columns: _SortColumns) -> bool:
    """Whether the rules' ``order_by`` leaves the series at ``first`` and ``second`` equal."""
    return all(columns[k.name][first] == columns[k.name][second] for k in keys)


def _ordered(
    positions: Sequence[int], keys: Sequence[OrderKey], columns: _SortColumns
) -> list[int]:
    """``positions`` sorted by ``keys`` (first key first); series lacking a key's value go
    last."""
    ordered = list(positions)
    for key in reversed(keys):
        column = columns[key.name]
        present = [i for i in ordered if column[i] is not None]
        present.sort(key=column.__getitem__, reverse=key.descending)
        ordered = present + [i for i in ordered if column[i] is None]
    return ordered
