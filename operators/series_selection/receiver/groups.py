"""Grouping instances into jobs: pure bookkeeping, given the time, testable without a network.

A group is open while instances keep arriving; it is due when its called AE title's timeout
has passed since its last instance and no instance is being written into it. A due group is
closed (it becomes a job) and the next instance of the same study or series opens a new one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class OpenGroup:
    """A group receiving instances."""

    id: str
    called_ae: str
    key: str
    timeout: float
    last: float
    """Monotonic time of the last instance (or of the group's opening)."""
    writing: int = 0
    """Instances being written into the group now."""

    def due(self, now: float) -> bool:
        return self.writing == 0 and now - self.last >= self.timeout


class Groups:
    """The open groups, by called AE title and key; every method is thread-safe."""

    def __init__(self, new_id: Callable[[], str]) -> None:
        self._new_id = new_id
        self._open: dict[tuple[str, str], OpenGroup] = {}
        self._lock = threading.Lock()

    def begin(
        self,
        called_ae: str,
        key: str,
        timeout: float,
        now: float,
        on_open: Callable[[OpenGroup], None] | None = None,
    ) -> tuple[OpenGroup, bool]:
        """An instance for (``called_ae``, ``key``) is about to be written: the group it goes
        into (opened when there is none) and whether it was opened now. Pair with ``end``.

        ``on_open`` prepares a new group (its ledger row, its folder) before any other thread
        can see it; when it raises, the group is not opened."""
        with self._lock:
            group = self._open.get((called_ae, key))
            opened = group is None
            if group is None:
                group = OpenGroup(self._new_id(), called_ae, key, timeout, now)
                if on_open is not None:
                    on_open(group)
                self._open[(called_ae, key)] = group
            group.writing += 1
            return group, opened

    def end(self, group: OpenGroup, now: float, stored: bool) -> None:
        """The instance ``begin`` announced is written (``stored``) or refused."""
        with self._lock:
            group.writing -= 1
            if stored:
                group.last = max(group.last, now)

    def resume(self, group_id: str, called_ae: str, key: str, timeout: float, last: float) -> None:
        """Reopen a group found open in the ledger after a restart; ``last`` on this process's
        monotonic clock (its remaining time kept)."""
        with self._lock:
            self._open[(called_ae, key)] = OpenGroup(group_id, called_ae, key, timeout, last)

    def close_due(self, now: float) -> list[OpenGroup]:
        """Remove and return the groups that are due."""
        with self._lock:
            due = [g for g in self._open.values() if g.due(now)]
            for group in due:
                del self._open[(group.called_ae, group.key)]
            return due

    def next_deadline(self) -> float | None:
        """The earliest time a group may become due (``None`` when none is open)."""
        with self._lock:
            return min((g.last + g.timeout for g in self._open.values()), default=None)

    def open_ids(self) -> set[str]:
        with self._lock:
            return {g.id for g in self._open.values()}
