"""Time a command and sample the memory of its whole process tree."""

from __future__ import annotations

import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import psutil

POLL_SECONDS = 0.05


class CommandError(Exception):
    """The measured command exited with an error."""


@dataclass(frozen=True)
class Measurement:
    """One run: wall time, the peak summed PSS of the process and all its descendants, and
    the CPU time (user + system) they used."""

    seconds: float
    peak_memory: int
    cpu_seconds: float = 0.0


def measure(command: Sequence[str], env: Mapping[str, str] | None = None) -> Measurement:
    """Run ``command`` to completion; raise CommandError (with its last output) on a bad exit.

    Memory is the largest sum of the proportional set sizes (PSS) of the process and its
    descendants, sampled every 50 ms: a page shared by n processes counts 1/n in each, so a
    pool of forked workers is neither over- nor undercounted (summed RSS would count the
    shared pages once per worker).
    """
    with tempfile.TemporaryFile() as output:
        cpu_before = _children_cpu()
        start = time.perf_counter()
        process = psutil.Popen(command, stdout=output, stderr=subprocess.STDOUT, env=env)
        peak = 0
        while True:
            peak = max(peak, _tree_memory(process))
            try:
                code = process.wait(timeout=POLL_SECONDS)
                break
            except psutil.TimeoutExpired:
                continue
        seconds = time.perf_counter() - start
        if code != 0:
            output.seek(0)
            tail = output.read().decode(errors="replace").strip().splitlines()[-5:]
            raise CommandError(f"{command[0]} exited with {code}: " + " | ".join(tail))
    return Measurement(seconds, peak, _children_cpu() - cpu_before)


def _children_cpu() -> float:
    """CPU seconds of every finished child process (and, once it is waited for, theirs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_memory(process: psutil.Process) -> int:
    total = 0
    try:
        members = [process, *process.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for member in members:
        try:
            total += member.memory_full_info().pss
        except psutil.NoSuchProcess:
            continue
    return total


@dataclass(frozen=True)
class Summary:
    """Several runs of one command: median wall time and the largest peak memory."""

    runs: tuple[Measurement, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(run.seconds for run in self.runs)

    @property
    def peak_memory(self) -> int:
        return max(run.peak_memory for run in self.runs)
