"""``dicom-parser``: a folder of DICOM files -> metadata, volumes and an accounting report."""

from __future__ import annotations

import argparse
import ctypes
import logging
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

from series_selection.common.cli import add_version, run_command
from series_selection.common.errors import InputError
from series_selection.common.logs import LOG_OPTIONS
from series_selection.common.models import (
    DEFAULT_VOLUME_FORMAT,
    FORMAT_ENV,
    METADATA_FILE,
    REPORT_FILE,
    SERIES_IMAGES_FILE,
    VOLUME_FORMATS,
)
from series_selection.common.settings import Option, add_options
from series_selection.parser.bounds import usable_cpus
from series_selection.parser.run import ParseSummary, parse_folder

log = logging.getLogger(__name__)

MMAP_THRESHOLD_OPTION = -3  # glibc's M_MMAP_THRESHOLD
MMAP_THRESHOLD = 128 * 1024

OPTIONS = (
    Option("--input", "DICOM_PARSER_INPUT", None, "folder of DICOM files (searched recursively)"),
    Option("--output", "DICOM_PARSER_OUTPUT", None, "folder for the metadata, volumes and report"),
    Option(
        "--format",
        FORMAT_ENV,
        DEFAULT_VOLUME_FORMAT,
        "volume file format",
        choices=VOLUME_FORMATS,
    ),
    Option(
        "--workers",
        "DICOM_PARSER_WORKERS",
        None,
        "worker processes (default: the CPUs this process may use, a container's CPU limit "
        "included)",
        type=int,
    ),
    Option(
        "--max-series-bytes",
        "DICOM_PARSER_MAX_SERIES_BYTES",
        None,
        "largest pixel data a series may claim before it is refused unread "
        "(default: a third of the memory available, at most 8 GiB)",
        type=int,
    ),
    Option(
        "--previews",
        "DICOM_PARSER_PREVIEWS",
        "on",
        "small PNG pictures of each volume (three planes through its centre), for series-report",
        choices=("on", "off"),
    ),
    *LOG_OPTIONS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-parser",
        description=(
            "Scan a folder of DICOM files, write the study/series/instance hierarchy as "
            f"{METADATA_FILE} (DICOM JSON Model), one volume per image series listed in "
            f"{SERIES_IMAGES_FILE}, and {REPORT_FILE} accounting for every file. "
            "Exit codes: 0 done (skipped files are not failures), 2 unusable input or arguments, "
            "5 outputs cannot be written."
        ),
    )
    add_options(parser, OPTIONS)
    add_version(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the parser; return the process exit code."""
    return run_command(build_parser(), argv, OPTIONS, _parse)


def _parse(arguments: argparse.Namespace, settings: dict[str, Any]) -> int:
    for name in ("input", "output"):
        if not settings[name]:
            raise InputError(f"give --{name} or set DICOM_PARSER_{name.upper()}")
    if settings["workers"] is None:
        settings["workers"] = usable_cpus()
    if settings["workers"] < 1:
        raise InputError("--workers must be at least 1")
    _return_freed_buffers_at_once()
    summary: ParseSummary = parse_folder(
        Path(settings["input"]),
        Path(settings["output"]),
        settings["format"],
        settings["workers"],
        settings["max_series_bytes"],
        progress_bar=settings["log_format"] == "text" and sys.stderr.isatty(),
        previews=settings["previews"] == "on",
    )
    log.info("done: %s", summary.line())
    return 0


def _return_freed_buffers_at_once() -> None:
    """Fix glibc's mmap threshold (for this process and the workers it forks).

    By default glibc raises the threshold after a large block is freed, up to 32 MiB; the
    half-megabyte slice buffers then come from the heap, which keeps their memory after they
    are freed, about one series' worth per worker. With a fixed threshold each buffer is
    returned to the system when freed. Other C libraries are left alone."""
    with suppress(OSError, AttributeError):  # CDLL(None): the C library already loaded
        ctypes.CDLL(None).mallopt(MMAP_THRESHOLD_OPTION, MMAP_THRESHOLD)
