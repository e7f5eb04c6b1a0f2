"""Large input: 20,000 tiny instances in fifty studies, or in one series. The run completes,
every file is accounted for, and memory stays flat: from 1,000 to 20,000 instances it grows only
by the per-file records of the report."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reliability_support import (
    assert_every_file_accounted_for,
    load_outputs,
    parser_command,
    parser_environment,
)
from series_selection_tools.samples.synthetic import StudySpec, ct_series, write_series

STUDIES = 50
SERIES_PER_STUDY = 4
SMALL, LARGE = 1_000, 20_000
BASE_MEMORY = 300 * 1024**2
"""Peak resident memory allowed for the small input: the interpreter, numpy, pydicom."""
MEMORY_PER_INSTANCE = 4 * 1024
"""Allowed growth per instance: the record of the file the report needs (about 2.5 kB);
headers wait on disk until dicom-metadata.json is written."""
MEASURE = """
import resource, subprocess, sys
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024, code)
"""
"""Runs the parser and prints the peak RSS (bytes) of its process tree, then its exit code."""


def write_studies(source: Path, instances: int) -> None:
    """``instances`` 8x8 CT slices in 50 studies of 4 series each."""
    slices = instances // (STUDIES * SERIES_PER_STUDY)
    for number in range(STUDIES):
        study = StudySpec(patient_id=f"P{number:03d}", accession_number=f"A{number:03d}")
        for series in range(SERIES_PER_STUDY):
            spec = ct_series(
                study=study, slices=slices, rows=8, columns=8, series_number=series + 1
            )
            write_series(source / f"study-{number:02d}" / f"series-{series}", spec, seed=number)


def write_one_series(source: Path, instances: int) -> None:
    """``instances`` 8x8 CT slices in one series: its headers are never all held at once."""
    write_series(source, ct_series(slices=instances, rows=8, columns=8), seed=1)


LAYOUTS = {
    "studies": (write_studies, STUDIES, STUDIES * SERIES_PER_STUDY),
    "one series": (write_one_series, 1, 1),
}
"""How the instances are laid out: the writer, the studies and the volumes it makes."""


def run_parser(source: Path, out: Path, instances: int, layout: str) -> tuple[int, float]:
    """Parse ``instances`` generated files; check the outputs; give the peak RSS and time."""
    write, studies, volumes = LAYOUTS[layout]
    write(source, instances)
    started = time.monotonic()
    measured = subprocess.run(
        [sys.executable, "-c", MEASURE, *parser_command(source, out), "--log-format", "json"],
        env=parser_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.monotonic() - started
    peak, code = (int(word) for word in measured.stdout.split())

    assert code == 0, measured.stderr[-2000:]
    report = load_outputs(out)["parse-report.json"]
    assert_every_file_accounted_for(report, source)
    summary = report["summary"]
    assert summary["used"] == instances
    assert summary["studies"] == studies
    assert summary["volumes"] == volumes
    measured_as = {"layout": layout, "instances": instances, "seconds": round(seconds, 1)}
    print(json.dumps({**measured_as, "peak_rss": peak}))
    return peak, seconds


@pytest.mark.slow
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_many_instances_complete_with_memory_flat(tmp_path: Path, layout: str) -> None:
    small, _ = run_parser(tmp_path / "in-small", tmp_path / "out-small", SMALL, layout)
    large, _ = run_parser(tmp_path / "in-large", tmp_path / "out-large", LARGE, layout)
    growth = (large - small) / (LARGE - SMALL)
    assert small < BASE_MEMORY, f"peak RSS {small / 1024**2:.0f} MB for {SMALL} instances"
    assert growth < MEMORY_PER_INSTANCE, f"memory grows {growth / 1024:.1f} kB per instance"
