"""Worker processes that die with the parser and survive the loss of one of their number."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from types import TracebackType
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

PROGRESS_SECONDS = 5.0
PR_SET_PDEATHSIG = 1


class Workers:
    """``count`` worker processes (none for a count of 1: the work then runs in this process).

    A job whose worker is killed (by the out-of-memory killer, say) is run again alone in a new
    process; if that one dies too, ``map`` yields what ``lost`` makes of the job instead.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.count > 1:
            self._pool = _start(self.count)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._pool is not None:
            # On an error, do not wait for the jobs still running: the workers are told to
            # die with this process.
            self._pool.shutdown(wait=error is None, cancel_futures=True)
            self._pool = None

    def map(
        self,
        function: Callable[[T], R],
        items: list[T],
        lost: Callable[[T], R],
        done: str,
        chunksize: int = 1,
    ) -> Iterator[R]:
        """``function`` over ``items``, results in order, logging progress as ``done``."""
        return _progress(self._results(function, items, lost, chunksize), len(items), done)

    def _results(
        self, function: Callable[[T], R], items: list[T], lost: Callable[[T], R], chunksize: int
    ) -> Iterator[R]:
        if self._pool is None or len(items) <= 1:
            yield from map(function, items)
            return
        start = 0
        while start < len(items):
            try:
                for result in self._pool.map(function, items[start:], chunksize=chunksize):
                    yield result
                    start += 1
            except BrokenProcessPool:
                log.warning("a worker process died; running its job again alone")
                self._pool.shutdown(wait=True)
                yield _alone(function, items[start], lost)
                start += 1
                self._pool = _start(self.count)


def _alone(function: Callable[[T], R], item: T, lost: Callable[[T], R]) -> R:
    """Run ``function(item)`` in a process of its own: the job whose worker died, or one that
    was running beside it."""
    with _start(1) as pool:
        try:
            return pool.submit(function, item).result()
        except BrokenProcessPool:
            log.warning("a worker process was killed twice on the same job")
            return lost(item)


def _start(count: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(count, initializer=_die_with_parent, initargs=(os.getpid(),))


def _die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when the parser ends, however it ends (and end now if it
    already has)."""
    with suppress(OSError, AttributeError):  # CDLL(None): the C library already loaded
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def _progress(results: Iterable[R], total: int, done: str) -> Iterator[R]:
    last = time.monotonic()
    for count, result in enumerate(results, start=1):
        now = time.monotonic()
        if now - last >= PROGRESS_SECONDS:
            log.info("%s: %d/%d", done, count, total)
            last = now
        yield result
