"""Child processes that end with the process that started them, however it ends."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from functools import partial

PR_SET_PDEATHSIG = 1

_prctl: Callable[..., int] | None
try:  # looked up now: between fork and exec a child only calls it
    _prctl = ctypes.CDLL(None).prctl
except (OSError, AttributeError):  # not Linux: no parent-death signal
    _prctl = None


def die_with_parent(parent: int) -> None:
    """In a child of ``parent``: ask Linux to kill this process when the parent ends (a
    ``kill -9`` too), and end now if it already has."""
    if _prctl is not None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)


def dying_with_this_process() -> Callable[[], None]:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child dies with this process."""
    return partial(die_with_parent, os.getpid())
