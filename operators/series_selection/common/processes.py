"""Child processes that end with the process that started them, however it ends, and names
that tell whether a process still runs."""

from __future__ import annotations

import ctypes
import os
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path

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


def process_identity(pid: int | None = None) -> str:
    """``BOOT:PID:START`` for ``pid`` (this process by default): the boot of the machine, the
    process ID and the time the process started after that boot, which no later process with
    the same ID shares. Empty where ``/proc`` does not tell."""
    pid = os.getpid() if pid is None else pid
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    start = stat.rpartition(")")[2].split()[19]  # field 22; the name before it may hold spaces
    return f"{boot}:{pid}:{start}"


def process_running(identity: str) -> bool:
    """Whether the process named by ``process_identity`` still runs. ``True`` where that cannot
    be told (an empty name, one of another form, no ``/proc``): an unknown process is never
    taken for one that ended."""
    boot, _, rest = identity.partition(":")
    pid = rest.partition(":")[0]
    if not boot or not pid.isdigit() or not process_identity():
        return True
    return process_identity(int(pid)) == identity
