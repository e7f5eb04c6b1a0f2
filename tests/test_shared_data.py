"""Real scanner data (../shared/data): our volumes against the reference conversions,
compared in world space (the value at the same patient point), never array against array."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest

from series_selection.parser.run import parse_folder
from series_selection_tools.fidelity.cases import evaluate_case
from series_selection_tools.fidelity.dicom_truth import compare_with_dicom, read_slices
from series_selection_tools.fidelity.worldspace import compare, in_grid_of, load_volume

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
    "dcm_qa_xa30/In/14_DWI_dir80_PA",  # enhanced RGB colour FA map
    "dicom2nifti/generic/rgb/001",  # RGB in JPEG 2000 (reference is RGBA; alpha ignored)
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


MOSAICS = [
    "dcm_qa_mosaic/In/ep2d_Int_4",
    "dcm_qa_mosaic/In/ep2d_Int_HF_5",
    "dcm_qa_nih/In/20180918Si",
    "dcm_qa/In/Orientation/ax/axasc36",
    "dcm_qa/In/Orientation/cor/corasc36",
    "dcm_qa/In/Orientation/sag/sagasc36",
    "dcm_qa/In/Orientation/axmb/AxAsc36mb2a",
    "dcm_qa/In/Orientation/axmb/AxInt36mb",
]


@pytest.mark.parametrize("case_input", MOSAICS)
def test_siemens_mosaic_matches_reference(
    case_input: str, shared_data: Path, shared_cases: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    test_case_matches_reference_in_world_space(case_input, shared_data, shared_cases, tmp_path)


def test_every_transfer_syntax_decodes_to_its_reference(shared_data: Path, tmp_path: Path) -> None:
    # One SeriesInstanceUID, nine SeriesNumbers: one volume per file, labelled by series number.
    parse_folder(shared_data / "dcm_qa_ts" / "In", tmp_path, "nii", workers=1)
    images = json.loads((tmp_path / "series-images.json").read_text())
    (volumes,) = images.values()
    assert sorted(v["label"] for v in volumes) == sorted(f"series-{n}" for n in range(1, 10))
    for volume in volumes:
        number = volume["distinguished_by"]["SeriesNumber"]
        reference = load_volume(shared_data / "dcm_qa_ts" / "Ref" / f"{number}.nii")
        comparison = compare(load_volume(tmp_path / volume["path"]), reference)
        assert comparison.agrees(0.5), (number, comparison)


@pytest.mark.parametrize(
    ("file_name", "reference"),
    [
        ("12bitUnsigned.dcm", "2.nii"),
        ("12bitUnsigned_0x0F0F.dcm", "3.nii"),  # garbage above BitsStored must be masked
        ("12bitSigned_0x0F0F.dcm", "4.nii"),  # sign bit at HighBit 11
    ],
)
def test_12_bit_stored_values(
    file_name: str, reference: str, shared_data: Path, tmp_path: Path
) -> None:
    # The three files share one SOPInstanceUID, so each is converted on its own.
    source = tmp_path / "in"
    source.mkdir()
    shutil.copy(shared_data / "dcm_qa_12bit" / "In" / file_name, source)
    parse_folder(source, tmp_path / "out", "nii", workers=1)
    images = json.loads((tmp_path / "out" / "series-images.json").read_text())
    ((volume,),) = images.values()
    expected = load_volume(shared_data / "dcm_qa_12bit" / "Ref" / reference)
    comparison = compare(load_volume(tmp_path / "out" / volume["path"]), expected)
    assert comparison.agrees(0.5), comparison


@pytest.mark.parametrize(
    ("case_input", "phrase", "stacks"),
    [
        ("dicom2nifti/failing/gantrytilting/001", "gantry tilt", 1),  # no tilt tag at all
        ("dcm_qa_ct/In/Philips/S21610/S2010", "gantry tilt", 1),  # tilt tag -18.5
        # Tilt +18.5; 14 slices 4.22 mm apart, then 14 slices 7.38 mm apart: one regular grid
        # would be 134 planes for 28 slices, so each part is a stack of its own.
        ("dcm_qa_ct/In/GE", "gantry tilt", 2),
        ("dicom2nifti/failing/sliceincrement/002", "uneven slice spacing", 1),  # a missing slice
    ],
)
def test_tilted_and_uneven_stacks_agree_with_dicom_in_world_space(
    case_input: str, phrase: str, stacks: int, shared_data: Path, tmp_path: Path
) -> None:
    # The reference is DICOM itself: each slice placed by its own position and orientation.
    # (dcm2niix's raw stacks are no reference here: their sform steps 4.851 mm per slice for
    # gantrytilting/001, whose slices are 5.000 mm apart.)
    source = shared_data / case_input
    parse_folder(source, tmp_path, "nii", workers=1)
    images = json.loads((tmp_path / "series-images.json").read_text())
    (volumes,) = images.values()
    assert len(volumes) == stacks
    files = [f for f in source.iterdir() if f.is_file() and f.name != "DIRFILE"]
    for volume in volumes:
        assert phrase in volume["resampled"]
        assert stacks == 1 or volume["notes"][0].startswith(f"one of {stacks} stacks")
        compared, difference = compare_with_dicom(
            load_volume(tmp_path / volume["path"]), read_slices(files)
        )
        assert compared > 10_000
        # Resampled values are rounded (0.5); the file's float32 affine moves a sample by up
        # to about 1e-5 mm, which on a 1,000 HU/mm edge is 0.01 HU more.
        assert difference <= 0.52


PHILIPS = [
    "dcm_qa_philips/In/Magdeburg_2014",
    pytest.param("dcm_qa_philips_enh/In/cl", marks=pytest.mark.slow),
    pytest.param("dcm_qa_philips_enh/In/enh", marks=pytest.mark.slow),
    "dcm_qa_enh/In/Philips",
]


@pytest.mark.parametrize("case_input", PHILIPS)
def test_philips_values_differ_from_dcm2niix_only_by_its_precise_scaling(
    case_input: str, shared_data: Path, shared_cases: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    # We write DICOM's modality values (RescaleSlope/Intercept); dcm2niix writes Philips
    # "precise" values, scaled by the private ScaleSlope (2005,100E). Same voxels, same places.
    result = evaluate_case(shared_data, shared_cases[case_input], tmp_path)
    assert len(result.references) >= 1
    for reference in result.references:
        comparison = reference.comparison
        assert comparison is not None, reference
        assert comparison.max_grid_offset_voxels < 1e-3
        assert comparison.max_affine_difference_mm < 1e-3
        slope, _ = comparison.value_scale
        assert comparison.max_linear_residual <= 1e-6 * max(1.0, abs(slope)), reference


@pytest.mark.slow
def test_enhanced_philips_dti_equals_the_dicom_frames(shared_data: Path, tmp_path: Path) -> None:
    # Its dicom2nifti ground truth is defective (volumes 2-4 all zero), so check every frame
    # against the DICOM itself: its own position, then its stored values times its rescale.
    (file,) = (shared_data / "dicom2nifti" / "philips_enhanced" / "dti" / "001").iterdir()
    parse_folder(file.parent, tmp_path, "nii", workers=1)
    ((volume,),) = json.loads((tmp_path / "series-images.json").read_text()).values()
    ours = load_volume(tmp_path / volume["path"])
    dataset = pydicom.dcmread(file)
    # The DICOM grid: i along the rows, j down the columns, k along the normal from the
    # lowest frame; ours is read on it, whichever way the file stores each axis.
    frames = dataset.PerFrameFunctionalGroupsSequence
    shared = dataset.SharedFunctionalGroupsSequence[0]
    orientation, measures = (
        (shared if name in shared else frames[0])[name][0]
        for name in ("PlaneOrientationSequence", "PixelMeasuresSequence")
    )
    cosines = np.array(orientation.ImageOrientationPatient, dtype=float)
    spacing = np.array(measures.PixelSpacing, dtype=float)
    normal = np.cross(cosines[:3], cosines[3:])
    positions = [np.array(f.PlanePositionSequence[0].ImagePositionPatient, float) for f in frames]
    grid = np.eye(4)
    grid[:3, 0], grid[:3, 1] = cosines[:3] * spacing[1], cosines[3:] * spacing[0]
    grid[:3, 2] = normal * np.linalg.norm(ours.affine_lps[:3, 2])
    grid[:3, 3] = min(positions, key=lambda position: float(position @ normal))
    values = in_grid_of(ours, grid)
    inverse = np.linalg.inv(grid)
    pixels = dataset.pixel_array.astype(float)
    time_points: dict[int, int] = {}
    for index, frame in enumerate(frames):
        position = [*frame.PlanePositionSequence[0].ImagePositionPatient, 1.0]
        i, j, k = inverse[:3] @ np.array(position, dtype=float)
        assert (i, j) == pytest.approx((0, 0), abs=1e-4)
        slice_index = round(k)
        t = time_points.setdefault(slice_index, 0)
        time_points[slice_index] += 1
        transform = frame.PixelValueTransformationSequence[0]
        expected = pixels[index].T * float(transform.RescaleSlope) + float(
            transform.RescaleIntercept
        )
        assert values[:, :, slice_index, t] == pytest.approx(expected, abs=1e-3)
    assert sorted(time_points.values()) == [4] * 8


def test_colour_as_metaimage_vectors(shared_data: Path, tmp_path: Path) -> None:
    parse_folder(shared_data / "dicom2nifti" / "generic" / "rgb" / "001", tmp_path, "mhd", 1)
    ((volume,),) = json.loads((tmp_path / "series-images.json").read_text()).values()
    assert volume["channels"] == 3 and volume["dtype"] == "uint8"
    reference = load_volume(
        shared_data / "dicom2nifti" / "generic" / "rgb" / "001_ground_truth.nii.gz"
    )
    assert compare(load_volume(tmp_path / volume["path"]), reference).agrees(0)


def test_enhanced_shared_functional_groups_are_found_at_series_level(
    shared_data: Path, tmp_path: Path
) -> None:
    # Four enhanced files of one run: the shared functional-group values are lifted to the top
    # of each header, and being equal in all four they land at series level.
    parse_folder(shared_data / "dcm_qa_enh" / "In" / "Siemens" / "XA10", tmp_path, "nii", 1)
    metadata = json.loads((tmp_path / "dicom-metadata.json").read_text())
    ((series,),) = (study["series"] for study in metadata["studies"])
    assert len(series["instances"]) == 4
    attributes = pydicom.Dataset.from_json(series["attributes"])
    assert [float(v) for v in attributes.PixelSpacing] == pytest.approx([3.0, 3.0], abs=0.5)
    for keyword in ("SliceThickness", "ImageOrientationPatient", "RescaleSlope", "Modality"):
        assert keyword in attributes, keyword
