"""Applying selections: which series match, in which order, and which are chosen."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from series_selection.common.dictionary import tag_key
from series_selection.common.errors import SelectionError
from series_selection.common.models import element_values
from series_selection.selector.inputs import Candidate
from series_selection.selector.matching import AllOf, Result, ValueCodes, as_number
from series_selection.selector.rules import OrderKey, Rules, Selection

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
    baseline, studies = _fixed_order(candidates)
    codes = ValueCodes([c.facts for c in baseline], sorted(rules.keywords))
    with_volume = [bool(c.volumes) for c in baseline]
    ranks: list[tuple[int, int] | None] = [None] * len(baseline)  # for the series that matched
    outcomes = tuple(
        _apply(selection, baseline, studies, codes, with_volume, ranks)
        for selection in rules.selections
    )
    return Selected(baseline, codes, outcomes)


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


def _apply(
    selection: Selection,
    baseline: tuple[Candidate, ...],
    studies: Sequence[int],
    codes: ValueCodes,
    with_volume: Sequence[bool],
    ranks: list[tuple[int, int] | None],
) -> Outcome:
    matching = [i for i in codes.passing(selection.conditions) if with_volume[i]]
    for index in matching:
        if ranks[index] is None:
            ranks[index] = default_rank(baseline[index])
    by_study_and_rank = sorted(matching, key=lambda i: (studies[i], ranks[i]))
    ranked = _ordered(by_study_and_rank, baseline, selection.order_by)
    by_default: list[DefaultChoice] = []
    if selection.all_matched:
        chosen = ranked
    else:
        of_study: dict[int, list[int]] = {}
        for index in ranked:
            of_study.setdefault(studies[index], []).append(index)
        chosen = [matches[0] for matches in of_study.values()]
        by_default = [
            DefaultChoice(baseline[best].study.uid, len(rest) + 1, baseline[best])
            for best, *rest in of_study.values()
            if rest and _tied(baseline[best], baseline[rest[0]], selection.order_by)
        ]
    return Outcome(selection, baseline, tuple(ranked), tuple(chosen), tuple(by_default))


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
        if element and any(str(value).upper() == "LOCALIZER" for value in element_values(element)):
            return True
    return False


def _tied(first: Candidate, second: Candidate, keys: Sequence[OrderKey]) -> bool:
    """Whether the rules' ``order_by`` leaves ``first`` and ``second`` equal."""
    return all(_sort_value(first, k.name) == _sort_value(second, k.name) for k in keys)


def _ordered(
    positions: Sequence[int], series: Sequence[Candidate], keys: Sequence[OrderKey]
) -> list[int]:
    """``positions`` of ``series`` sorted by ``keys`` (first key first); series lacking a key's
    value go last."""
    ordered = list(positions)
    for key in reversed(keys):
        valued = [(i, _sort_value(series[i], key.name)) for i in ordered]
        present = [(i, v) for i, v in valued if v is not None]
        present.sort(key=lambda pair: pair[1], reverse=key.descending)
        ordered = [i for i, _ in present] + [i for i, v in valued if v is None]
    return ordered


def _sort_value(candidate: Candidate, name: str) -> tuple[int, Any] | None:
    """A comparable value: numbers before text; ``None`` when the series has none."""
    value: Any
    if name == "instance_count":
        value = len(candidate.series.instances)
    elif name == "voxel_count":
        value = max((math.prod(v.shape) for v in candidate.volumes), default=None)
    elif name == "slice_spacing":
        value = candidate.volumes[0].spacing[2] if candidate.volumes else None
    else:
        first = candidate.facts.values[name][0]
        value = first[0] if first else None
    if value is None:
        return None
    number = as_number(value)
    return (0, number) if number is not None else (1, str(value).casefold())
