"""``series-selector``: parser output + rules -> ``selected-images.json`` and the explanation."""

from __future__ import annotations

import argparse
import gc
import logging
import os
import sys
from pathlib import Path
from typing import Any

from series_selection.common.cli import add_version, run_command
from series_selection.common.errors import InputError, SelectionError
from series_selection.common.folders import OutputFolder, check_apart, reading
from series_selection.common.logs import LOG_OPTIONS
from series_selection.common.models import (
    EXPLAIN_ENV,
    EXPLAIN_FILE,
    RULES_BASE64_ENV,
    RULES_FILE_ENV,
    SELECTED_IMAGES_FILE,
)
from series_selection.common.settings import Option, add_options
from series_selection.selector.explain import explain_table, write_explain
from series_selection.selector.inputs import read_parser_output
from series_selection.selector.matching import leaves
from series_selection.selector.outputs import VOLUME_MODES, write_selected_images
from series_selection.selector.rules import (
    BoundedPattern,
    load_rules,
    parse_rules,
    read_rules_text,
)
from series_selection.selector.selection import Outcome, check_required, select

log = logging.getLogger(__name__)

OWNER = "series-selector"
DEFAULT_CHOICES_LOGGED = 3
"""Studies per selection whose default-order choice gets a warning of its own; the others are
counted in one line (all are in selection-explain.json)."""

OPTIONS = (
    Option("--input", "SERIES_SELECTOR_INPUT", None, "dicom-parser's output folder"),
    Option("--output", "SERIES_SELECTOR_OUTPUT", None, f"folder for {SELECTED_IMAGES_FILE}"),
    Option(
        "--rules",
        RULES_FILE_ENV,
        None,
        f"selection rules file, YAML or JSON ({RULES_BASE64_ENV} overrides it)",
    ),
    Option(
        "--volumes",
        "SERIES_SELECTOR_VOLUMES",
        "place",
        "place: hard-link (else copy) chosen volumes into the output folder; "
        "refer: point at them in the input folder",
        choices=VOLUME_MODES,
    ),
    Option(
        "--explain",
        EXPLAIN_ENV,
        False,
        "print, per selection, a table of every series and every condition",
        type=bool,
    ),
    *LOG_OPTIONS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="series-selector",
        description="Choose image series from dicom-parser's output with selection rules.",
    )
    add_options(parser, OPTIONS)
    add_version(parser)
    parser.add_argument(
        "--check",
        metavar="RULES",
        help="only check the rules file RULES (schema, keywords, patterns) and exit: 0 valid, "
        "2 not; reads no input",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the selector; returns the process exit code."""
    # The run builds one large object graph (metadata, facts, results) that it frees when it
    # ends; the cycle collector would rescan it over and over. Its garbage cycles are few: mainly
    # one JSON encoder (about 2 kB) per chosen series, formatting its entry.
    gc.disable()
    try:
        return run_command(build_parser(), argv, OPTIONS, _select)
    finally:
        gc.enable()


def _select(arguments: argparse.Namespace, settings: dict[str, Any]) -> int:
    return check(arguments.check) if arguments.check is not None else run(settings)


def check(rules_file: str) -> int:
    """Check one rules file without reading any input: 0 when valid (a ``RulesError`` else)."""
    rules = parse_rules(*read_rules_text(rules_file, {}))
    patterns = [leaf for s in rules.selections for leaf in leaves(s.conditions)]
    bounded = sum(isinstance(getattr(leaf, "regex", None), BoundedPattern) for leaf in patterns)
    if rules.blank:
        log.info("%s is valid: blank, so every image series is chosen", rules.source)
    else:
        log.info(
            "%s is valid: %d selection(s); %d pattern(s) in Python syntax run under a time limit",
            rules.source,
            len(rules.selections),
            bounded,
        )
    return 0


def run(settings: dict[str, Any]) -> int:
    """Select from the input folder into the output folder; with ``explain`` set, print the
    table of every series and condition."""
    for name in ("input", "output"):
        if not settings[name]:
            raise InputError(f"give --{name} or set SERIES_SELECTOR_{name.upper()}")
    input_dir, output_dir = Path(settings["input"]), Path(settings["output"])
    rules = load_rules(settings["rules"], os.environ)
    if rules.blank:
        log.info(
            "rules from %s are blank: every image series is chosen (as MONAI Deploy does "
            "without rules)",
            rules.source,
        )
    else:
        log.info("rules from %s: %d selection(s)", rules.source, len(rules.selections))
    check_apart(input_dir, output_dir)
    with reading(input_dir), OutputFolder(output_dir, OWNER) as output:
        candidates = read_parser_output(input_dir, rules.keywords)
        selected = select(rules, candidates)
        outcomes = selected.outcomes
        write_explain(selected, rules, output.staging)
        if settings["explain"]:
            sys.stdout.write(explain_table(outcomes, rules.source))
        for outcome in outcomes:
            log.info("selection %r chose %s", outcome.selection.name, _chosen_text(outcome))
            for choice in outcome.by_default[:DEFAULT_CHOICES_LOGGED]:
                log.warning("selection %r: %s", outcome.selection.name, choice)
            more = len(outcome.by_default) - DEFAULT_CHOICES_LOGGED
            if more > 0:
                log.warning(
                    "selection %r: in %d more studies several series matched and the default "
                    "order chose (each is in %s, decided_by_default); add order_by to decide",
                    outcome.selection.name,
                    more,
                    EXPLAIN_FILE,
                )
        try:
            check_required(outcomes)
        except SelectionError:
            output.publish([EXPLAIN_FILE])  # and no selected-images.json
            raise
        mode = settings["volumes"]
        written = write_selected_images(outcomes, input_dir, output_dir, mode, output.staging)
        output.publish([EXPLAIN_FILE, *written])
    chosen = "; ".join(f"{o.selection.name!r}: {_chosen_text(o)}" for o in outcomes)
    log.info("done: %s; wrote %s", chosen or "no selections", output_dir / SELECTED_IMAGES_FILE)
    return 0


def _chosen_text(outcome: Outcome) -> str:
    """The series a selection chose, by number and description (the first three)."""
    labels = [candidate.label for candidate in outcome.chosen[:3]]
    more = len(outcome.chosen) - len(labels)
    return ", ".join(labels) + (f" and {more} more" if more else "") if labels else "nothing"
