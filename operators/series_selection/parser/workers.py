"""Worker processes that die with the parser and survive the loss of one of their number."""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from types import TracebackType
from typing import TypeVar

from series_selection.common.processes import die_with_parent

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


class Workers:
    """``count`` worker processes (none for a count of 1: the work then runs in this process).

    A job whose worker is killed (by the out-of-memory killer, say) is run again alone in a new
    process; if that one dies too, ``map`` yields what ``lost`` makes of the job instead.
    """

    def __init__(self, count: int) -> None:
        self.count = count
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        self._pool = self._start_all()
        return self

    def _start_all(self) -> ProcessPoolExecutor | None:
        """Fork every worker now, while this process is small: forked later they would inherit
        (and, as Python touches it, copy) everything read so far. When the system refuses some
        (a process limit), go on with those that started, and say so; with one, in this
        process."""
        while self.count > 1:
            pool = _start(self.count)
            try:
                _wait_started(pool)
                return pool
            except (OSError, RuntimeError) as error:  # fork or thread ("can't start new thread")
                started = _end_children()
                pool.shutdown(wait=False)
                going_on = min(started, self.count - 1)
                log.warning(
                    "cannot run %d worker processes (%s, after %d started): going on %s",
                    self.count,
                    error,
                    started,
                    f"with {going_on}" if going_on > 1 else "in this process",
                )
                self.count = going_on
        return None

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
        chunksize: int = 1,
    ) -> Iterator[R]:
        """``function`` over ``items``, results in order."""
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
    return ProcessPoolExecutor(
        count,
        mp_context=multiprocessing.get_context("fork"),
        initializer=die_with_parent,
        initargs=(os.getpid(),),
    )


def _wait_started(pool: ProcessPoolExecutor) -> None:
    """Fork every worker of ``pool`` (the fork context starts them all at once) and start its
    threads; raise what stopped any of them, also inside the pool's own thread."""
    settled = threading.Event()
    failures: list[BaseException | None] = []

    def thread_failed(args: threading.ExceptHookArgs) -> None:
        failures.append(args.exc_value)
        settled.set()

    previous, threading.excepthook = threading.excepthook, thread_failed
    try:
        probe = pool.submit(os.getpid)
        probe.add_done_callback(lambda _: settled.set())
        settled.wait()
    finally:
        threading.excepthook = previous
    if failures:
        raise RuntimeError(str(failures[0]))
    probe.result()


def _end_children() -> int:
    """End the workers of a pool that could not start whole; how many there were."""
    children = multiprocessing.active_children()
    for child in children:
        child.kill()
        child.join()
    return len(children)
