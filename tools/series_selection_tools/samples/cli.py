"""``make-sample-studies``: write the synthetic sample studies into a folder."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from series_selection.common.cli import run_reporting_errors
from series_selection.common.errors import OutputError
from series_selection.common.logs import LOG_OPTIONS, setup_logging
from series_selection.common.settings import Option, add_options, resolve
from series_selection_tools.samples.samples import write_samples

log = logging.getLogger(__name__)

OPTIONS = (
    Option("--output", "SAMPLE_STUDIES_OUTPUT", "samples", "folder to write the studies into"),
    *LOG_OPTIONS,
)


def main(argv: list[str] | None = None) -> int:
    """Write the sample studies; return the process exit code."""
    parser = argparse.ArgumentParser(prog="make-sample-studies", description=__doc__)
    add_options(parser, OPTIONS)
    namespace = parser.parse_args(argv)

    def job() -> int:
        settings = resolve(namespace, OPTIONS)
        setup_logging(settings["log_level"], settings["log_format"])
        output = Path(settings["output"])
        try:
            files = write_samples(output)
        except OSError as error:
            raise OutputError(
                f"cannot write {error.filename or output}: {error.strerror}"
            ) from error
        log.info("wrote %d files into %s", len(files), output)
        return 0

    return run_reporting_errors(job)
