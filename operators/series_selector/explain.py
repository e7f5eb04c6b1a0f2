"""Why each series was or was not chosen: ``selection-explain.json`` and the ``--explain`` table."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from operator_common.jsonio import write_json
from operator_common.models import json_value
from series_selector.matching import Result
from series_selector.selection import Outcome, Verdict

EXPLAIN_FILE = "selection-explain.json"
CELL_WIDTH = 26


def write_explain(outcomes: Sequence[Outcome], rules_source: str, output_dir: Path) -> Path:
    """Write ``selection-explain.json``: every selection, every series, every condition."""
    document = {
        "rules": rules_source,
        "selections": [
            {
                "name": outcome.selection.name,
                "all_matched": outcome.selection.all_matched,
                "required": outcome.selection.required,
                "order_by": [
                    f"{k.name} {'descending' if k.descending else 'ascending'}"
                    for k in outcome.selection.order_by
                ],
                "series": [_verdict_entry(v) for v in outcome.verdicts()],
            }
            for outcome in outcomes
        ],
    }
    target = output_dir / EXPLAIN_FILE
    write_json(target, document, "selection-explain")
    return target


def _verdict_entry(verdict: Verdict) -> dict[str, Any]:
    series = verdict.candidate.series
    return {
        "StudyInstanceUID": verdict.candidate.study.uid,
        "SeriesInstanceUID": series.uid,
        "SeriesNumber": json_value(series.attributes, "SeriesNumber"),
        "SeriesDescription": json_value(series.attributes, "SeriesDescription"),
        "matched": verdict.matched,
        "has_volume": verdict.has_volume,
        "rank": verdict.rank,
        "chosen": verdict.chosen,
        "summary": summary(verdict),
        "conditions": [_result_entry(r) for r in verdict.result.children],
    }


def _result_entry(result: Result) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "path": result.path,
        "condition": result.condition,
        "passed": result.passed,
        "actual": result.actual,
        "why": result.why,
    }
    if result.children:
        entry["children"] = [_result_entry(child) for child in result.children]
    return entry


def summary(verdict: Verdict) -> str:
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
        title += " | order: " + ", ".join(
            f"{k.name} {'descending' if k.descending else 'ascending'}" for k in selection.order_by
        )
    verdicts = outcome.verdicts()
    if not verdicts:
        return title + "\n  (no series in the input)"
    columns = [r.path.rsplit(".", 1)[-1] for r in verdicts[0].result.children]
    header = ["Series", "Description", "Verdict", *columns]
    rows = [header]
    for verdict in verdicts:
        series = verdict.candidate.series
        rows.append(
            [
                _text(json_value(series.attributes, "SeriesNumber")),
                _clip(_text(json_value(series.attributes, "SeriesDescription"))),
                _verdict_word(verdict),
                *(_cell(r) for r in verdict.result.children),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [title]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    ]
    reasons = [_reasons(v) for v in verdicts if not v.chosen]
    if any(reasons):
        lines.append("  Why not:")
        lines.extend(f"    {reason}" for reason in reasons if reason)
    return "\n".join(lines)


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


def _reasons(verdict: Verdict) -> str:
    series = verdict.candidate.series
    number = _text(json_value(series.attributes, "SeriesNumber"))
    label = f"series {number} {_text(json_value(series.attributes, 'SeriesDescription'))!r}"
    failed = [
        f"{r.condition} - seen {_text(r.actual)}: {r.why}" if not r.children else r.why
        for r in _failed_leaves(verdict.result)
    ]
    return f"{label}: {'; '.join(failed) if failed else summary(verdict)}"


def _failed_leaves(result: Result) -> list[Result]:
    """The innermost failing conditions under ``result`` (a failing ``not`` is one itself)."""
    if result.passed:
        return []
    inner = [] if result.condition == "not" else result.children
    return [leaf for child in inner for leaf in _failed_leaves(child)] or [result]


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return "varies: " + " | ".join(_text(v) for v in value.get("per_instance", []))
    if isinstance(value, list):
        return "\\".join(_text(v) for v in value)
    return str(value)


def _clip(text: str) -> str:
    return text if len(text) <= CELL_WIDTH else text[: CELL_WIDTH - 3] + "..."
