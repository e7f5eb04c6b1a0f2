"""What every operator's ``main`` shares: running with user errors turned into exit codes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from series_selection.common.errors import PipelineError

log = logging.getLogger(__name__)


def run_reporting_errors(job: Callable[[], int]) -> int:
    """Run ``job``; a ``PipelineError`` becomes one log line and its exit code, not a traceback."""
    try:
        return job()
    except PipelineError as error:
        log.error("%s", error.message)
        return error.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
