"""Progress of a long stage: a log line every few seconds with counts and rate, also while no
item finishes; on a terminal, a bar that updates in place instead (log lines print above it)."""

from __future__ import annotations

import logging
import sys
import threading
import time
from contextlib import ExitStack, suppress
from types import TracebackType
from typing import Never

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

log = logging.getLogger(__name__)

PROGRESS_SECONDS = 5.0


class Progress:
    """Count finished items of a stage of ``total`` ``unit`` (``with Progress(...) as p:
    p.advance()``). Lines go to the log every ``seconds``; with ``bar``, a tqdm bar on standard
    error replaces them."""

    def __init__(
        self,
        stage: str,
        total: int,
        unit: str,
        bar: bool = False,
        seconds: float = PROGRESS_SECONDS,
    ) -> None:
        self.stage = stage
        self.total = total
        self.unit = unit
        self.done = 0
        self._bar_wanted = bar
        self._seconds = seconds
        self._started = time.monotonic()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._bar: tqdm[Never] | None = None
        self._context = ExitStack()

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self._bar_wanted and self.total:
            self._context.enter_context(logging_redirect_tqdm())
            self._bar = self._context.enter_context(
                tqdm(total=self.total, desc=self.stage, unit=f" {self.unit}", file=sys.stderr)
            )
        elif self.total:
            thread = threading.Thread(target=self._report, daemon=True)
            with suppress(RuntimeError):  # no thread allowed (a process limit): no lines
                thread.start()
                self._thread = thread
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
        self._context.close()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if self._bar is not None:
            self._bar.update(count)

    def line(self) -> str:
        """``stage: done of total unit (rate/s)``."""
        seconds = max(time.monotonic() - self._started, 1e-9)
        return (
            f"{self.stage}: {self.done} of {self.total} {self.unit} "
            f"({self.done / seconds:.1f}/s, {seconds:.0f} s)"
        )

    def _report(self) -> None:
        while not self._stopped.wait(self._seconds):
            log.info("%s", self.line())
