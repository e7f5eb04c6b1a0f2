"""Real scanner data (../shared/data): our volumes against the reference conversions,
compared in world space (the value at the same patient point), never array against array."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fidelity.cases import evaluate_case

pytestmark = pytest.mark.shared_data

MATCHING = [
    "dicom2nifti/generic/anatomical/001",
    "dicom2nifti/generic/compressed_j2k/001",
    "dicom2nifti/generic/compressed_jpeg/001",
    "dicom2nifti/generic/compressed_jpegls/001",
    "dicom2nifti/generic/compressed_rle/001",
    "dicom2nifti/failing/slicecount/001",
    "dicom2nifti/ge/anatomical/001_single_slice",
    "dicom2nifti/ge/dti/001",
    "dicom2nifti/hitachi/anatomical/001",
    "dicom2nifti/siemens_multiframe/anatomical/001",
    "dicom2nifti/philips/fmri/001",
    "dcm_qa_nih/In/20180918GE/mr_0004",
    "dcm_qa_enh/In/Siemens/XA10",
    "dcm_qa_xa30/In/5_anat-T1w_acq-tfl",
    "dcm_qa_xa30/In/8_gre_field_mapping",
    "dcm_qa_xa30/In/9_gre_field_mapping",
]


@pytest.mark.parametrize("case_input", MATCHING)
def test_case_matches_reference_in_world_space(
    case_input: str, shared_data: Path, shared_cases: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    result = evaluate_case(shared_data, shared_cases[case_input], tmp_path)
    assert result.references, "the case has reference volumes"
    for reference in result.references:
        assert reference.matches, (reference.reference, reference.volume, reference.comparison)
        assert reference.comparison is not None
        assert reference.comparison.max_affine_difference_mm < 1e-3


def test_mixed_orientations_in_one_series_are_split(
    shared_data: Path, shared_cases: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    case = shared_cases["dicom2nifti/failing/sliceorientation/001"]
    result = evaluate_case(shared_data, case, tmp_path)
    assert len(result.volumes) == 2
    assert result.refused == ()


@pytest.mark.parametrize(
    ("case_input", "reason"),
    [
        ("dicom2nifti/failing/gantrytilting/001", "drift"),
        ("dicom2nifti/failing/sliceincrement/002", "uneven slice spacing"),
        ("dcm_qa_xa30/In/99_Phoenix_Document", "no image data (SR)"),
    ],
)
def test_case_refused_with_reason(
    case_input: str,
    reason: str,
    shared_data: Path,
    shared_cases: dict[str, dict[str, Any]],
    tmp_path: Path,
) -> None:
    result = evaluate_case(shared_data, shared_cases[case_input], tmp_path)
    assert result.volumes == ()
    assert any(reason in r for r in result.refused), result.refused
