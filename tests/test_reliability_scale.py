"""Large input: tens of thousands of tiny instances in fifty studies. The run completes, every
file is accounted for, and peak memory stays within a fixed per-instance budget.

The full size (20,000 instances) takes minutes; it runs with ``RELIABILITY_LARGE=1``."""

from __future__ import annotations

import json
import os
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
from sample_studies.synthetic import StudySpec, ct_series, write_series

STUDIES = 50
SERIES_PER_STUDY = 4
BASE_MEMORY = 300 * 1024**2
"""Peak resident memory allowed whatever the input: the interpreter, numpy, pydicom, ITK."""
MEMORY_PER_INSTANCE = 8 * 1024
"""Allowed growth per instance: the record of the file the report needs (about 2 kB); headers
are kept on disk until dicom-metadata.json is written."""
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


@pytest.mark.parametrize(
    "instances",
    [
        1000,
        pytest.param(
            20_000,
            marks=[
                pytest.mark.slow,
                pytest.mark.skipif(
                    not os.environ.get("RELIABILITY_LARGE"),
                    reason="takes minutes: set RELIABILITY_LARGE=1 to run it",
                ),
            ],
        ),
    ],
)
def test_many_instances_complete_within_a_memory_budget(tmp_path: Path, instances: int) -> None:
    source, out = tmp_path / "in", tmp_path / "out"
    write_studies(source, instances)

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
    assert summary["studies"] == STUDIES
    assert summary["volumes"] == STUDIES * SERIES_PER_STUDY
    budget = BASE_MEMORY + MEMORY_PER_INSTANCE * instances
    print(json.dumps({"instances": instances, "seconds": round(seconds, 1), "peak_rss": peak}))
    assert peak < budget, f"peak RSS {peak / 1024**2:.0f} MB > {budget / 1024**2:.0f} MB"
