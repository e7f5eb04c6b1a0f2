"""``series-report``: the parser's output (and the selector's) -> ``report.html`` and
``report.json``."""

from __future__ import annotations

import argparse
import logging
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from series_selection.common.cli import add_version, run_command
from series_selection.common.errors import OutputError
from series_selection.common.folders import OutputFolder, check_apart, reading
from series_selection.common.jsonio import atomic_write_bytes, write_json
from series_selection.common.logs import LOG_OPTIONS
from series_selection.common.settings import Option, add_options
from series_selection.report.facts import gather, read_inputs
from series_selection.report.page import render_page
from series_selection.report.pictures import place_picture

log = logging.getLogger(__name__)

OWNER = "series-report"
REPORT_JSON = "report.json"
REPORT_HTML = "report.html"

OPTIONS = (
    Option("--input", "SERIES_REPORT_INPUT", "/input", "dicom-parser's output folder"),
    Option(
        "--selections",
        "SERIES_REPORT_SELECTIONS",
        None,
        "series-selector's output folder (selection-explain.json); without it, no verdicts",
    ),
    Option("--output", "SERIES_REPORT_OUTPUT", "/output", "folder for report.html and report.json"),
    *LOG_OPTIONS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="series-report",
        description=(
            "Write report.html (one page, no scripts, pictures beside it) and report.json: every "
            "series of every study, what dicom-parser made of it, and which selection chose it."
        ),
    )
    add_options(parser, OPTIONS)
    add_version(parser)
    parser.add_argument(
        "--show-identifiers",
        action="store_true",
        help="show patient name, ID, birth date and accession number (hidden by default: the "
        "page is meant to be shared)",
    )
    return parser


def main(args: list[str] | None = None) -> int:
    """Run the report; returns the process exit code."""
    return run_command(
        build_parser(),
        args,
        OPTIONS,
        lambda arguments, settings: run(settings, show_identifiers=arguments.show_identifiers),
    )


def run(settings: dict[str, Any], show_identifiers: bool = False) -> int:
    """Write the report of the input folders into the output folder."""
    parser_dir = Path(settings["input"])
    selector_dir = Path(settings["selections"]) if settings["selections"] else None
    output_dir = Path(settings["output"])
    check_apart(parser_dir, output_dir)
    if selector_dir is not None:
        check_apart(selector_dir, output_dir)
    with ExitStack() as stack:
        stack.enter_context(reading(parser_dir))
        if selector_dir is not None and selector_dir.resolve() != parser_dir.resolve():
            stack.enter_context(reading(selector_dir))
        output = stack.enter_context(OutputFolder(output_dir, OWNER))
        studies, images, parse_report, explain = read_inputs(parser_dir, selector_dir)
        pictures: dict[str, dict[str, str]] = {}
        sizes: dict[str, tuple[int, int]] = {}
        for volumes in images.values():
            for volume in volumes:
                placed = {}
                for plane, relative in volume.get("previews", {}).items():
                    path, size = place_picture(parser_dir, relative, output.staging)
                    placed[plane] = path
                    sizes[path] = size
                pictures[volume["path"]] = placed
        report = gather(studies, images, parse_report, explain, show_identifiers, pictures)
        write_json(output.staging / REPORT_JSON, report, "report")
        try:
            atomic_write_bytes(
                output.staging / REPORT_HTML, render_page(report, sizes).encode("utf-8")
            )
        except OSError as error:
            raise OutputError(f"cannot write {REPORT_HTML}: {error.strerror or error}") from error
        output.publish([REPORT_JSON, REPORT_HTML, *sizes])
    summary = report["summary"]
    log.info(
        "done: %d studies, %d series, %d volumes; wrote %s",
        summary["studies"],
        summary["series"],
        summary["volumes"],
        output_dir / REPORT_HTML,
    )
    return 0
