"""Why each series was or was not chosen: ``selection-explain.json`` and the ``--explain`` table.

The file would grow with series x selections, so it is kept compact: each series' values of the
keywords the rules use are listed once; per selection, the matching series in rank order, the
chosen ones, and the others grouped by the conditions they fail (JSON path and why; every other
condition passed). It is checked against ``schemas/selection-explain.schema.json`` before it
is written, as every JSON output is.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Any

from series_selection.common.jsonio import write_json
from series_selection.common.models import EXPLAIN_FILE, Study, json_value, value_text
from series_selection.selector.inputs import series_identity, text_or_none
from series_selection.selector.matching import (
    Condition,
    Facts,
    Group,
    Leaf,
    Not,
    Result,
    ValueCodes,
    actual,
    leaves,
)
from series_selection.selector.rules import Rules
from series_selection.selector.selection import Outcome, Selected, Verdict

SCHEMA = "selection-explain"
CELL_WIDTH = 26


def write_explain(selected: Selected, rules: Rules, output_dir: Path) -> Path:
    """Write ``selection-explain.json``: every selection, every series, every failed condition."""
    ordered, codes = selected.series, selected.codes
    number = {id(c): index for index, c in enumerate(ordered)}
    shown = {k: [actual(values) for values in codes.distinct[k]] for k in codes.codes}
    document = {
        "rules": rules.source,
        "series": [
            {
                **series_identity(candidate),
                "has_volume": bool(candidate.volumes),
                "values": {k: shown[k][codes.codes[k][index]] for k in shown},
            }
            for index, candidate in enumerate(ordered)
        ],
        "selections": [
            {
                "name": outcome.selection.name,
                "all_matched": outcome.selection.all_matched,
                "required": outcome.selection.required,
                "order_by": [str(key) for key in outcome.selection.order_by],
                "conditions": [
                    {"path": leaf.path, "condition": leaf.condition}
                    for leaf in leaves(outcome.selection.conditions)
                ],
                **_verdicts(outcome, number, codes),
            }
            for outcome in selected.outcomes
        ],
    }
    target = output_dir / EXPLAIN_FILE
    write_json(target, document, SCHEMA, compact=True)
    return target


def _verdicts(outcome: Outcome, number: dict[int, int], codes: ValueCodes) -> dict[str, Any]:
    """Ranked and chosen series, and the others grouped by the conditions they fail.

    Series with the same values of the selection's keywords fail alike, so the failures are
    worked out once per distinct set of values.
    """
    conditions = outcome.selection.conditions
    keys = codes.keys(conditions)
    alike: defaultdict[tuple[int, ...], list[int]] = defaultdict(list)
    for index in outcome.others_at:
        alike[keys[index]].append(index)
    failing: dict[tuple[tuple[str, str], ...], list[list[int]]] = {}
    for series in alike.values():
        facts = codes.facts[series[0]]
        failed = tuple((r.path, r.why) for r in failures(conditions, facts))
        failing.setdefault(failed, []).append(series)
    groups = {failed: _merged(lists) for failed, lists in failing.items()}
    without_volume = groups.pop((), [])
    return {
        "ranked": list(outcome.ranked_at),
        "chosen": list(outcome.chosen_at),
        "decided_by_default": [
            {
                "study": choice.study_uid,
                "matched": choice.matched,
                "chosen": number[id(choice.chosen)],
                "why": str(choice),
            }
            for choice in outcome.by_default
        ],
        "matched_without_volume": without_volume,
        "failed": [
            {"series": series, "conditions": [{"path": p, "why": w} for p, w in failed]}
            for failed, series in groups.items()
        ],
    }


def _merged(lists: list[list[int]]) -> list[int]:
    """Ascending lists of series positions as one ascending list."""
    return lists[0] if len(lists) == 1 else sorted(chain.from_iterable(lists))


def _summary(verdict: Verdict) -> str:
    """One line: chosen, or the reason it was not."""
    if verdict.chosen:
        return f"chosen (rank {verdict.rank})"
    if not verdict.matched:
        return verdict.result.why
    if not verdict.has_volume:
        return "matches, but the parser made no volume of it"
    return f"matches (rank {verdict.rank}) but a better-ranked series of its study was chosen"


def explain_table(outcomes: Sequence[Outcome], rules_source: str) -> str:
    """A readable table per selection: one row per series, one column per condition."""
    blocks = [f"Rules: {rules_source}"]
    for outcome in outcomes:
        blocks.append(_selection_table(outcome))
    return "\n\n".join(blocks) + "\n"


def _selection_table(outcome: Outcome) -> str:
    selection = outcome.selection
    chosen = len(outcome.chosen)
    title = f"Selection {selection.name!r}: {chosen} series chosen"
    if selection.order_by:
        title += " | order: " + ", ".join(str(key) for key in selection.order_by)
    verdicts = outcome.verdicts()
    if not verdicts:
        return title + "\n  (no series in the input)"
    columns = [r.path.rsplit(".", 1)[-1] for r in verdicts[0].result.children]
    header = ["Study", "Series", "Description", "Verdict", *columns]
    rows = [header]
    studies = _study_numbers(verdicts)
    for verdict in verdicts:
        rows.append(
            [
                str(studies[verdict.candidate.study.uid]),
                _text(verdict.candidate.number),
                _clip(_text(verdict.candidate.description)),
                _verdict_word(verdict),
                *(_cell(r) for r in verdict.result.children),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [title, *(f"  Default order: {choice}" for choice in outcome.by_default)]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    reasons = [_reasons(v, studies) for v in verdicts if not v.chosen]
    if any(reasons):
        lines.append("  Why not:")
        lines.extend(f"    {reason}" for reason in reasons if reason)
    lines.append("  Studies:")
    lines.extend(f"    {number}: {_study_label(study)}" for study, number in _studies(verdicts))
    return "\n".join(lines)


def _studies(verdicts: Sequence[Verdict]) -> list[tuple[Study, int]]:
    """The studies of the series, numbered from 1 in the fixed order (date, time, UID)."""
    found = {v.candidate.study.uid: v.candidate for v in verdicts}
    ordered = sorted(found.values(), key=lambda c: c.study_order)
    return [(candidate.study, number) for number, candidate in enumerate(ordered, start=1)]


def _study_numbers(verdicts: Sequence[Verdict]) -> dict[str, int]:
    return {study.uid: number for study, number in _studies(verdicts)}


def _study_label(study: Study) -> str:
    """A study as people find it: date, description, UID."""
    attributes = study.attributes
    parts = [
        _text(text_or_none(json_value(attributes, "StudyDate"))),
        repr(_text(text_or_none(json_value(attributes, "StudyDescription")))),
        study.uid,
    ]
    return " ".join(parts)


def _verdict_word(verdict: Verdict) -> str:
    if verdict.chosen:
        return f"CHOSEN #{verdict.rank}"
    if verdict.rank is not None:
        return f"match #{verdict.rank}"
    return "match, no volume" if verdict.matched else "no"


def _cell(result: Result) -> str:
    mark = "ok " if result.passed else "NO "
    shown = result.why if result.actual is None or result.children else _text(result.actual)
    return _clip(mark + shown)


def _reasons(verdict: Verdict, studies: dict[str, int]) -> str:
    number = _text(verdict.candidate.number)
    description = _text(verdict.candidate.description)
    label = f"study {studies[verdict.candidate.study.uid]} series {number} {description!r}"
    failed = [_failure(r) for r in failures(verdict.conditions, verdict.candidate.facts)]
    return f"{label}: {'; '.join(failed) if failed else _summary(verdict)}"


def _failure(result: Result) -> str:
    """Why one condition failed, each thing said once: the value seen is left out where the
    reason already begins with it (``Sagittal: slice normal ...``) or is the missing value."""
    if result.children:
        return result.why
    seen = _text(result.actual)
    named = result.why.split(":", 1)[0]
    if result.actual is None or result.why.startswith(seen) or _words(named) == _words(seen):
        return f"{result.condition}: {result.why}"
    return f"{result.condition} - seen {seen}: {result.why}"


def _words(text: str) -> list[str]:
    """The words of a shown value, in order, without the ``varies:`` of per-instance values
    (``varies: Axial | Coronal`` and ``Axial/Coronal`` say the same)."""
    return [w for w in re.findall(r"[^\s/|]+", text) if w != "varies:"]


def failures(condition: Condition, facts: Facts) -> list[Result]:
    """The innermost conditions that fail (a failing ``not`` is one itself)."""
    if isinstance(condition, Leaf):
        result = condition.evaluate(facts)
        return [] if result.passed else [result]
    if condition.holds(facts):
        return []
    if isinstance(condition, Not):
        return [condition.evaluate(facts)]
    assert isinstance(condition, Group)
    return [failure for child in condition.children for failure in failures(child, facts)]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return "varies: " + " | ".join(_text(v) for v in value.get("per_instance", []))
    if isinstance(value, list):
        return "\\".join(_text(v) for v in value)
    return value_text(value)


def _clip(text: str) -> str:
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 3] + "..."
