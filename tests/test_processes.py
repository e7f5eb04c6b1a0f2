"""Names that tell whether a process still runs, across reused process IDs and reboots."""

from __future__ import annotations

import subprocess
import sys

import pytest

from series_selection.common.processes import process_identity, process_running


def test_a_running_process_is_running_and_an_ended_one_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        identity = process_identity(child.pid)
        assert identity.split(":")[1] == str(child.pid)
        assert process_running(identity)
        assert process_running(process_identity())
    finally:
        child.kill()
        child.wait()
    assert not process_running(identity)


def test_a_reused_process_id_is_another_process() -> None:
    """The same ID started at another time (a later process given a freed ID) is not it."""
    boot, pid, start = process_identity().split(":")
    assert not process_running(f"{boot}:{pid}:{int(start) + 1}")


def test_a_process_of_an_earlier_boot_has_ended() -> None:
    _, pid, start = process_identity().split(":")
    assert not process_running(f"00000000-0000-0000-0000-000000000000:{pid}:{start}")


@pytest.mark.parametrize("name", ["", "no colons", "boot:not-a-number:1", ":12:3"])
def test_a_name_that_says_nothing_is_taken_for_a_running_process(name: str) -> None:
    """Never remove what might belong to a live process."""
    assert process_running(name)


def test_an_ended_process_id_has_no_identity() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    assert process_identity(child.pid) == ""
