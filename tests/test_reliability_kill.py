"""Kill -9 at random moments: whatever the parser left behind is consistent (every JSON output
complete and schema-valid, every volume listed there present and loadable), and a rerun then
writes exactly what an uninterrupted run writes."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from reliability_support import (
    OUTPUTS,
    assert_clean_exit,
    load_outputs,
    parser_command,
    parser_environment,
    run_parser,
)
from series_selection.common.errors import InputError
from series_selection.common.folders import reading
from series_selection_tools.samples.synthetic import ct_series, mr_series, write_series

KILLS = 3
SEED = 20240611


def write_input(source: Path, slices: int = 60) -> None:
    """Eight series of 60 slices (about 3 s of work on two CPUs); other ``slices`` give the same
    UIDs, and so the same volume names, with other shapes."""
    for number in range(8):
        make = ct_series if number % 2 else mr_series
        spec = make(slices=slices, rows=128, columns=128, series_number=number + 1)
        write_series(source / f"series-{number}", spec, seed=number)


def outputs_snapshot(out: Path) -> dict[str, str]:
    """SHA-256 of the JSON outputs and of every file under ``volumes/``."""
    files = [out / name for name in OUTPUTS] + sorted((out / "volumes").iterdir())
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


def assert_consistent(out: Path) -> None:
    """What a killed run left: either a publication the next run finishes (which readers
    refuse), or complete JSON listing exactly the volumes on disk, each loading whole."""
    if (out / ".dicom-parser.publishing").exists():
        assert reading_refused(out)
        return
    outputs = load_outputs(out, required=False)
    listed = {
        volume["path"]
        for volumes in outputs.get("series-images.json", {}).values()
        for volume in volumes
    }
    volumes = out / "volumes"
    on_disk = {f"volumes/{p.name}" for p in volumes.iterdir()} if volumes.is_dir() else set()
    assert {path for path in on_disk if not path.endswith(".raw")} == listed


def reading_refused(out: Path) -> bool:
    try:
        with reading(out):
            return False
    except InputError as error:
        return "interrupted" in error.message


def kill_after(source: Path, out: Path, seconds: float) -> int | None:
    """Start the parser, SIGKILL its whole process group after ``seconds``; its exit code if it
    finished first."""
    process = subprocess.Popen(
        [*parser_command(source, out), "--workers", "2"],
        env=parser_environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # the workers die with it, as in a killed container
    )
    try:
        return process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return None


@pytest.mark.slow
def test_killed_runs_leave_consistent_outputs_and_reruns_recover(tmp_path: Path) -> None:
    """Each run is killed while it replaces the outputs of a run on changed input."""
    source, changed = tmp_path / "in", tmp_path / "changed"
    write_input(source)
    write_input(changed, slices=30)
    started = time.monotonic()
    assert_clean_exit(run_parser(source, tmp_path / "clean", "--workers", "2"))
    duration = time.monotonic() - started
    clean = outputs_snapshot(tmp_path / "clean")

    out = tmp_path / "out"
    moments = random.Random(SEED)
    killed = 0
    for _ in range(KILLS):
        assert_clean_exit(run_parser(changed, out, "--workers", "2"))
        if kill_after(source, out, moments.uniform(0.3 * duration, duration)) is None:
            killed += 1
        assert_consistent(out)
        assert_clean_exit(run_parser(source, out, "--workers", "2"))
        assert outputs_snapshot(out) == clean
    assert killed > 0, "every run finished before its kill"


@pytest.mark.slow
def test_a_rerun_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_series(source, ct_series(slices=3), seed=3)
    assert_clean_exit(run_parser(source, tmp_path / "clean"))
    out = tmp_path / "out"
    # What SIGKILL leaves when it lands during the volume and the JSON writes:
    scratch = out / ".dicom-parser.staging" / ".partial-k1l2"
    scratch.mkdir(parents=True)
    (scratch / "half.nii.gz").write_bytes(b"\x1f\x8b\x08")
    (scratch.parent / ".series-images.json.k1l2.tmp").write_text('{"1.2.3": [')

    assert_clean_exit(run_parser(source, out))

    def tree(folder: Path) -> set[str]:
        return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}

    assert tree(out) == tree(tmp_path / "clean")
