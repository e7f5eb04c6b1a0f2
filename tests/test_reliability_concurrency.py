"""Runs that overlap in time, and signals: readers see all of one run's outputs, two writers
take turns, and worker processes neither outlive the parser nor take a run down with them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from reliability_support import (
    assert_clean_exit,
    load_outputs,
    parser_command,
    parser_environment,
)
from series_selection.parser.workers import Workers
from series_selection_tools.samples.synthetic import ct_series, mr_series, write_series

STAGING = ".dicom-parser.staging"


def write_input(source: Path, slices: int) -> None:
    """Four series; another ``slices`` gives the same UIDs with other volumes."""
    for number in range(4):
        make = ct_series if number % 2 else mr_series
        spec = make(slices=slices, rows=128, columns=128, series_number=number + 1)
        write_series(source / f"series-{number}", spec, seed=number)


class Parser:
    """The real parser in a child process (and its own process group), its log in a file."""

    def __init__(self, source: Path, out: Path) -> None:
        self.log = out.parent / f"{out.name}-{time.monotonic_ns()}.log"
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [*parser_command(source, out), "--workers", "2"],
                env=parser_environment(),
                stdout=subprocess.DEVNULL,
                stderr=log,
                start_new_session=True,
            )
        self.pid = self.process.pid

    def pause(self) -> None:
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def logged(self, text: str) -> bool:
        return text in self.log.read_text()

    def finish(self) -> subprocess.CompletedProcess[str]:
        self.process.wait(timeout=180)
        return subprocess.CompletedProcess([], self.process.returncode, "", self.log.read_text())


def wait_for(condition: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def listed_shapes(out: Path) -> set[tuple[int, ...]]:
    return {
        tuple(volume["shape"])
        for volumes in load_outputs(out)["series-images.json"].values()
        for volume in volumes
    }


@pytest.mark.slow
def test_a_reader_sees_all_of_one_run(tmp_path: Path) -> None:
    """The selector started while the parser reruns on changed input waits, then reads the new
    outputs whole: every volume it places has the shape its listing gives."""
    write_input(tmp_path / "old", slices=20)
    write_input(tmp_path / "new", slices=40)
    out = tmp_path / "parsed"
    assert_clean_exit(Parser(tmp_path / "old", out).finish())
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"selections": [{"conditions": {}, "all_matched": True}]}))

    rerun = Parser(tmp_path / "new", out)
    wait_for(lambda: (out / STAGING).exists(), "the rerun to take the output folder")
    rerun.pause()
    command = [sys.executable, "-m", "series_selection.selector", "--input", str(out)]
    command += ["--output", str(tmp_path / "selected"), "--rules", str(rules)]
    with (tmp_path / "selector.log").open("w") as log:
        selector = subprocess.Popen(command, env=parser_environment(), stderr=log)
    wait_for(lambda: "waiting" in (tmp_path / "selector.log").read_text(), "the reader to wait")
    rerun.resume()
    assert selector.wait(timeout=180) == 0
    assert_clean_exit(rerun.finish())
    assert "Traceback" not in (tmp_path / "selector.log").read_text()
    selected = json.loads((tmp_path / "selected" / "selected-images.json").read_text())
    images = [i for s in selected["selections"] for series in s["series"] for i in series["images"]]
    assert len(images) == 4
    for image in images:
        on_disk = load_outputs(out)  # the listing the reader read is the one now published
        assert tuple(image["shape"]) in listed_shapes(out), on_disk["series-images.json"]
        assert image["shape"][2] == 40


@pytest.mark.slow
def test_two_parsers_into_one_folder_take_turns(tmp_path: Path) -> None:
    write_input(tmp_path / "old", slices=20)
    write_input(tmp_path / "new", slices=40)
    out = tmp_path / "out"
    first = Parser(tmp_path / "old", out)
    wait_for(lambda: (out / STAGING).exists(), "the first run to take the output folder")
    first.pause()
    second = Parser(tmp_path / "new", out)
    wait_for(lambda: second.logged("waiting for another process"), "the second run to wait")
    first.resume()
    assert_clean_exit(first.finish())
    assert_clean_exit(second.finish())
    assert {shape[2] for shape in listed_shapes(out)} == {40}
    volumes = {p.name for p in (out / "volumes").iterdir()}
    assert len(volumes) == 4


def paused_while_converting(tmp_path: Path) -> tuple[Parser, Path]:
    """A parser (and its workers) stopped once its first volume is written; its output."""
    write_input(tmp_path / "in", slices=80)
    out = tmp_path / "out"
    parser = Parser(tmp_path / "in", out)
    wait_for(lambda: (out / STAGING / "volumes").exists(), "the first volume")
    parser.pause()
    return parser, out


@pytest.mark.slow
def test_workers_die_with_the_parser(tmp_path: Path) -> None:
    """The workers, stopped mid-job, never run again once the parser is terminated."""
    parser, out = paused_while_converting(tmp_path)
    workers = children(parser.pid)
    try:
        parser.process.send_signal(signal.SIGTERM)
        os.kill(parser.pid, signal.SIGCONT)  # the parser alone: the workers stay stopped
        parser.finish()
        wait_for(lambda: not any(alive(pid) for pid in workers), "the workers to end", 10)
    finally:
        for pid in workers:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert not (out / "series-images.json").exists()


@pytest.mark.slow
def test_a_killed_worker_costs_no_series(tmp_path: Path) -> None:
    """A worker killed once (as by the out-of-memory killer) has its job run again."""
    parser, out = paused_while_converting(tmp_path)
    os.kill(children(parser.pid)[0], signal.SIGKILL)
    parser.resume()
    result = parser.finish()
    assert_clean_exit(result)
    assert "a worker process died" in result.stderr
    report = load_outputs(out)["parse-report.json"]
    assert report["summary"]["volumes"] == 4
    assert report["summary"]["used"] == 4 * 80


def kill_own_process_on_three(number: int) -> int:
    if number == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return number * 10


def lost(number: int) -> int:
    return -number


@pytest.mark.parametrize("chunksize", [1, 4])
def test_a_job_that_always_kills_its_worker_is_reported_lost(chunksize: int) -> None:
    with Workers(2) as workers:
        results = list(workers.map(kill_own_process_on_three, list(range(9)), lost, chunksize))
        assert results == [0, 10, 20, -3, 40, 50, 60, 70, 80]
        # the pool works on after the loss
        assert list(workers.map(lost, [1, 2], lost)) == [-1, -2]
