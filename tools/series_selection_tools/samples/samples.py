"""The sample studies committed in ``samples/``: a CT abdomen and an MR brain examination."""

from __future__ import annotations

import math
from pathlib import Path

from series_selection_tools.samples.synthetic import (
    StudySpec,
    ct_series,
    mr_series,
    write_localizer,
    write_multi_echo,
    write_series,
    write_text_report,
)

CT_STUDY = StudySpec(
    patient_name="SAMPLE^CT",
    patient_id="SAMPLE-CT-001",
    patient_birth_date="19650314",
    patient_sex="F",
    study_description="CT ABDOMEN PELVIS W CONTRAST",
    accession_number="SAMPLE0001",
)
MR_STUDY = StudySpec(
    patient_name="SAMPLE^MR",
    patient_id="SAMPLE-MR-001",
    patient_birth_date="19800622",
    patient_sex="M",
    study_description="MR BRAIN W/O CONTRAST",
    accession_number="SAMPLE0002",
    study_date="20240103",
    study_time="143000",
)
SAGITTAL_OBLIQUE = math.radians(12)  # rotation of the T1 slices about the left-right axis

README = """\
Synthetic sample studies, written by `make-sample-studies --output samples`.

ct-abdomen/  CT ABDOMEN PELVIS W CONTRAST
  localizer/          3-plane localizer (one series, ImageType LOCALIZER)
  portal-venous/      Portal venous 1.25mm: 128 x 128 x 40 axial slices, nested folders
  portal-venous-5mm/  Portal venous 5mm: 120 x 128 x 10, non-square pixels, slices head to feet
mr-brain/    MR BRAIN W/O CONTRAST
  t1-sagittal/        T1 SAG MPRAGE: 96 x 80 x 48, sagittal tilted 12 degrees
  dual-echo/          AX DUAL ECHO: 72 x 64 x 20 per echo, 2 echoes, feet first
  report/             a Basic Text SR (no pixel data)

Voxel values follow a known pattern; file names and order do not follow slice order.
This file is not DICOM.
"""


def write_samples(output: Path) -> list[Path]:
    """Write both sample studies and this folder's README into ``output``; return the files."""
    ct = output / "ct-abdomen"
    mr = output / "mr-brain"
    files: list[Path] = []
    scout = ct_series(
        study=CT_STUDY,
        rows=128,
        columns=128,
        pixel_spacing=(4.0, 4.0),
        series_number=1,
        series_description="Scout",
    )
    for truth in write_localizer(ct / "localizer", scout, center=(0.0, 0.0, -150.0), seed=1):
        files += truth.files
    files += write_series(
        ct / "portal-venous",
        ct_series(
            study=CT_STUDY,
            rows=128,
            columns=128,
            slices=40,
            pixel_spacing=(2.734375, 2.734375),
            slice_spacing=1.25,
            origin=(-173.6328, -200.0, -200.0),
            series_number=2,
            series_description="Portal venous 1.25mm",
        ),
        seed=1,
        name_style="nested",
    ).files
    files += write_series(
        ct / "portal-venous-5mm",
        ct_series(
            study=CT_STUDY,
            rows=120,
            columns=128,
            slices=10,
            pixel_spacing=(2.9, 2.734375),
            slice_spacing=-5.0,
            origin=(-173.6328, -200.0, -150.0),
            series_number=3,
            series_description="Portal venous 5mm",
        ),
        seed=1,
        shuffle_instance_numbers=True,
        name_style="dcm",
    ).files
    cos, sin = math.cos(SAGITTAL_OBLIQUE), math.sin(SAGITTAL_OBLIQUE)
    files += write_series(
        mr / "t1-sagittal",
        mr_series(
            study=MR_STUDY,
            rows=96,
            columns=80,
            slices=48,
            pixel_spacing=(2.5, 2.5),
            slice_spacing=3.0,
            row_cosine=(0.0, cos, sin),
            column_cosine=(0.0, sin, -cos),
            origin=(-70.0, -100.0, 110.0),
            image_type=("ORIGINAL", "PRIMARY", "M", "ND", "NORM"),
            echo_time=2.98,
            repetition_time=2300.0,
            series_number=2,
            series_description="T1 SAG MPRAGE",
        ),
        seed=2,
        name_style="dcm",
    ).files
    dual_echo = mr_series(
        study=MR_STUDY,
        rows=72,
        columns=64,
        slices=20,
        pixel_spacing=(3.2, 3.4),
        slice_spacing=5.0,
        row_cosine=(-1.0, 0.0, 0.0),
        column_cosine=(0.0, 1.0, 0.0),
        origin=(108.8, -115.2, 60.0),
        patient_position="FFS",
        repetition_time=3000.0,
        series_number=3,
        series_description="AX DUAL ECHO",
    )
    for truth in write_multi_echo(mr / "dual-echo", dual_echo, echo_times=(12.0, 90.0), seed=2):
        files += truth.files
    files.append(write_text_report(mr / "report", MR_STUDY, seed=2))
    readme = output / "README.txt"
    readme.write_text(README, encoding="utf-8")
    files.append(readme)
    return files
