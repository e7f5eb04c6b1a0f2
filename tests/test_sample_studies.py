"""The synthetic DICOM generator is the ground truth of parser tests: check it against the standard
(PS3.3 C.7.6.2.1.1), against an independent reader (SimpleITK/GDCM) and the committed samples."""

from __future__ import annotations

import hashlib
import itertools
import math
import shutil
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import nibabel
import numpy as np
import numpy.typing as npt
import pydicom
import pytest
import SimpleITK
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.pixels import apply_rescale

from series_selection_tools.samples.cli import main
from series_selection_tools.samples.synthetic import (
    SeriesSpec,
    SeriesTruth,
    StudySpec,
    ct_series,
    mr_series,
    voxel_values,
    write_localizer,
    write_multi_echo,
    write_series,
    write_text_report,
)

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
ANGLE = math.radians(20)
OBLIQUE = ct_series(
    row_cosine=(math.cos(ANGLE), math.sin(ANGLE), 0.0),
    column_cosine=(0.0, 0.0, -1.0),
    origin=(12.5, -7.25, 88.0),
    pixel_spacing=(0.7, 1.1),
    slice_spacing=3.0,
)
SPECS = {
    "axial": ct_series(),
    "oblique": OBLIQUE,
    "sagittal-mr": mr_series(row_cosine=(0.0, 1.0, 0.0), column_cosine=(0.0, 0.0, -1.0), slices=7),
    "descending": ct_series(slice_spacing=-2.0, slices=9),
    "tilted": ct_series(tilt_shift=(0.0, 0.4, 0.0), slices=12),
    "feet-first": mr_series(row_cosine=(-1.0, 0.0, 0.0), patient_position="FFS", slices=6),
}


def patient_position(ds: pydicom.Dataset, row: int, column: int) -> npt.NDArray[np.float64]:
    """Where pixel (row, column) of ``ds`` lies, from its own Image Plane attributes alone."""
    position = np.array(ds.ImagePositionPatient, dtype=float)
    orientation = np.array(ds.ImageOrientationPatient, dtype=float)
    row_spacing, column_spacing = (float(x) for x in ds.PixelSpacing)
    along_row, along_column = orientation[:3], orientation[3:]
    return position + column * column_spacing * along_row + row * row_spacing * along_column


def file_tree(folder: Path) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder``."""
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("name", SPECS)
def test_every_file_matches_the_truth(tmp_path: Path, name: str) -> None:
    spec = SPECS[name]
    truth = write_series(tmp_path, spec, shuffle_instance_numbers=True)
    assert len(truth.files) == spec.slices
    assert truth.stored.shape == (spec.slices, spec.rows, spec.columns)
    corners = [*itertools.product((0, spec.rows - 1), (0, spec.columns - 1)), (2, 1)]
    for k, path in enumerate(truth.files):
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert ds.SeriesInstanceUID == truth.series_uid
        for row, column in corners:
            expected = truth.affine_lps @ [column, row, k, 1]
            np.testing.assert_allclose(patient_position(ds, row, column), expected[:3], atol=1e-4)
        np.testing.assert_array_equal(ds.pixel_array, truth.stored[k])
        np.testing.assert_array_equal(apply_rescale(ds.pixel_array, ds), truth.rescaled()[k])


def test_slice_positions_follow_the_normal(tmp_path: Path) -> None:
    offsets = (0.0, 2.0, 4.0, 7.5, 9.5)  # one gap: not evenly spaced
    spec = replace(OBLIQUE, slices=len(offsets), slice_positions=offsets)
    truth = write_series(tmp_path, spec)
    normal = np.cross(spec.row_cosine, spec.column_cosine)
    for k, path in enumerate(truth.files):
        position = np.array(pydicom.dcmread(path).ImagePositionPatient, dtype=float)
        np.testing.assert_allclose(position, np.add(spec.origin, offsets[k] * normal), atol=1e-5)
        np.testing.assert_allclose(truth.positions[k], position, atol=0)


def test_tilted_slices_shift_in_plane(tmp_path: Path) -> None:
    spec = ct_series(tilt_shift=(0.0, 0.5, 0.0), slice_spacing=2.0, slices=4)
    truth = write_series(tmp_path, spec)
    steps = np.diff(truth.positions, axis=0)
    np.testing.assert_allclose(steps, [[0.0, 0.5, 2.0]] * 3, atol=1e-6)
    tilt = float(pydicom.dcmread(truth.files[0]).GantryDetectorTilt)
    assert tilt == pytest.approx(math.degrees(math.atan(0.5 / 2.0)), abs=1e-5)


def test_no_flip_or_transpose_maps_the_values_onto_themselves() -> None:
    values = voxel_values(replace(SeriesSpec(), rows=9, columns=9, slices=9))
    for axes in itertools.permutations(range(3)):
        for flips in itertools.product((False, True), repeat=3):
            changed = values.transpose(axes)
            changed = np.flip(changed, [a for a in range(3) if flips[a]])
            if axes == (0, 1, 2) and not any(flips):
                continue
            assert not np.array_equal(changed, values), (axes, flips)


def test_signed_values_include_negatives_and_fit_the_type() -> None:
    ct = voxel_values(ct_series())
    mr = voxel_values(mr_series())
    assert ct.dtype == np.dtype("<i2") and ct.min() < 0
    assert mr.dtype == np.dtype("<u2")
    eight_bit = voxel_values(mr_series(bits_allocated=8))
    assert eight_bit.dtype == np.uint8 and len(np.unique(eight_bit)) > 100


def flipped_slices(truth: SeriesTruth) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """The same volume indexed with k reversed: (values, affine)."""
    affine = truth.affine_lps.copy()
    affine[:3, 3] += (truth.stored.shape[0] - 1) * affine[:3, 2]
    affine[:3, 2] *= -1
    return truth.rescaled()[::-1], affine


def assert_simpleitk_matches(folder: Path, truth: SeriesTruth) -> None:
    """SimpleITK's volume of the series (slices ordered by GDCM) equals the truth."""
    reader = SimpleITK.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), truth.series_uid))
    image = reader.Execute()
    values, affine = truth.rescaled(), truth.affine_lps
    if np.dot(affine[:3, 2], np.cross(affine[:3, 0], affine[:3, 1])) < 0:
        values, affine = flipped_slices(truth)  # GDCM stacks slices along row x column cosine
    axes = affine[:3, :3]
    spacing = np.linalg.norm(axes, axis=0)
    np.testing.assert_allclose(image.GetOrigin(), affine[:3, 3], atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), spacing, atol=1e-4)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), axes / spacing, atol=1e-5)
    np.testing.assert_array_equal(SimpleITK.GetArrayFromImage(image), values)


@pytest.mark.parametrize("name", ["axial", "oblique", "descending", "sagittal-mr"])
def test_simpleitk_reads_the_same_volume(tmp_path: Path, name: str) -> None:
    truth = write_series(tmp_path, SPECS[name], shuffle_instance_numbers=True)
    assert_simpleitk_matches(tmp_path, truth)


def test_file_names_and_instance_numbers_hide_the_slice_order(tmp_path: Path) -> None:
    spec = ct_series(slices=12)
    shuffled = write_series(tmp_path / "a", spec, shuffle_instance_numbers=True, name_style="dcm")
    numbers = [int(pydicom.dcmread(path).InstanceNumber) for path in shuffled.files]
    names = [path.name for path in shuffled.files]
    assert sorted(numbers) == list(range(1, 13)) and numbers != sorted(numbers)
    assert names != sorted(names) and names != sorted(names, reverse=True)
    ordered = write_series(tmp_path / "b", spec, shuffle_files=False, name_style="nested")
    assert [p.relative_to(tmp_path / "b").as_posix() for p in ordered.files[:2]] == [
        "part1/IM0001",
        "part2/IM0002",
    ]
    numbers = [int(pydicom.dcmread(path).InstanceNumber) for path in ordered.files]
    assert numbers == list(range(1, 13))


def test_writing_twice_gives_identical_bytes(tmp_path: Path) -> None:
    for folder in ("one", "two"):
        write_series(tmp_path / folder, SPECS["oblique"], seed=7, shuffle_instance_numbers=True)
        write_multi_echo(tmp_path / folder, mr_series(series_number=2, slices=3), seed=7)
    assert file_tree(tmp_path / "one") == file_tree(tmp_path / "two")
    assert len(file_tree(tmp_path / "one")) == SPECS["oblique"].slices + 6


def test_the_seed_changes_every_uid(tmp_path: Path) -> None:
    datasets = [
        pydicom.dcmread(write_series(tmp_path / str(seed), ct_series(slices=1), seed=seed).files[0])
        for seed in (7, 8)
    ]
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        assert datasets[0][keyword].value != datasets[1][keyword].value


def test_localizer_is_one_series_of_three_orthogonal_planes(tmp_path: Path) -> None:
    truths = write_localizer(tmp_path, ct_series(rows=32, columns=40), center=(5.0, 6.0, 7.0))
    datasets = [pydicom.dcmread(path) for truth in truths for path in truth.files]
    assert len(datasets) == 3
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == 3
    assert all("LOCALIZER" in ds.ImageType for ds in datasets)
    normals = [np.cross(*np.reshape(ds.ImageOrientationPatient, (2, 3))) for ds in datasets]
    np.testing.assert_allclose(np.abs(normals), np.eye(3)[[2, 1, 0]], atol=1e-9)
    for ds in datasets:
        center = patient_position(ds, 0, 0) + patient_position(ds, ds.Rows - 1, ds.Columns - 1)
        np.testing.assert_allclose(center / 2, [5.0, 6.0, 7.0], atol=1e-4)


def test_multi_echo_stacks_share_positions_but_not_values(tmp_path: Path) -> None:
    first, second = write_multi_echo(tmp_path, mr_series(slices=5), echo_times=(4.0, 20.0))
    datasets = [pydicom.dcmread(path) for path in first.files + second.files]
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert sorted(int(ds.InstanceNumber) for ds in datasets) == list(range(1, 11))
    assert [int(ds.EchoNumbers) for ds in datasets] == [1] * 5 + [2] * 5
    assert {float(ds.EchoTime) for ds in datasets} == {4.0, 20.0}
    np.testing.assert_array_equal(first.positions, second.positions)
    assert not np.array_equal(first.stored, second.stored)
    np.testing.assert_array_equal(datasets[5].pixel_array, second.stored[0])


def test_text_report_has_no_pixels_and_joins_the_study(tmp_path: Path) -> None:
    study = StudySpec(study_description="REPORTED")
    image = write_series(tmp_path, ct_series(study=study, slices=1), seed=3)
    report = pydicom.dcmread(write_text_report(tmp_path, study, seed=3))
    assert report.SOPClassUID == pydicom.uid.BasicTextSRStorage
    assert "PixelData" not in report
    assert report.StudyInstanceUID == pydicom.dcmread(image.files[0]).StudyInstanceUID
    assert report.SeriesInstanceUID != image.series_uid


def test_unknown_modality_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="modality 'XA'"):
        write_series(tmp_path, SeriesSpec(modality="XA"))


def test_committed_samples_are_reproduced_byte_for_byte(tmp_path: Path) -> None:
    assert main(["--output", str(tmp_path)]) == 0
    assert file_tree(tmp_path) == file_tree(SAMPLES)


def test_samples_offer_what_the_pipeline_needs() -> None:
    size = sum(path.stat().st_size for path in SAMPLES.rglob("*") if path.is_file())
    assert size < 6_000_000
    series: dict[str, set[str]] = {}
    for path in SAMPLES.rglob("*"):
        if path.is_file() and path.name != "README.txt":
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            series.setdefault(ds.StudyDescription, set()).add(ds.SeriesDescription)
    assert series == {
        "CT ABDOMEN PELVIS W CONTRAST": {"Scout", "Portal venous 1.25mm", "Portal venous 5mm"},
        "MR BRAIN W/O CONTRAST": {"T1 SAG MPRAGE", "AX DUAL ECHO", "Report"},
    }
    with pytest.raises(pydicom.errors.InvalidDicomError):
        pydicom.dcmread(SAMPLES / "README.txt")


def test_cli_reports_an_unwritable_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["--output", str(blocker / "samples")]) == 5
    error = capsys.readouterr().err
    assert "cannot write" in error and "Traceback" not in error


@pytest.mark.parametrize("name", ["oblique", "descending", "sagittal-mr", "feet-first"])
def test_dcm2niix_puts_every_voxel_where_the_truth_does(tmp_path: Path, name: str) -> None:
    if shutil.which("dcm2niix") is None:
        pytest.skip("dcm2niix is not installed")
    truth = write_series(tmp_path / "dicom", SPECS[name], shuffle_instance_numbers=True)
    (tmp_path / "nifti").mkdir()
    subprocess.run(
        ["dcm2niix", "-z", "n", "-f", "volume", "-o", tmp_path / "nifti", tmp_path / "dicom"],
        check=True,
        capture_output=True,
    )
    image = nibabel.load(tmp_path / "nifti" / "volume.nii")
    values = image.get_fdata()
    nifti_index = np.indices(values.shape).reshape(3, -1)
    ras = image.affine @ np.vstack([nifti_index, np.ones(nifti_index.shape[1])])
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ ras
    truth_index = np.linalg.solve(truth.affine_lps, lps)[:3]
    np.testing.assert_allclose(truth_index, np.round(truth_index), atol=1e-3)
    i, j, k = np.round(truth_index).astype(int)
    np.testing.assert_array_equal(values.reshape(-1), truth.rescaled()[k, j, i])


@settings(max_examples=25, deadline=None)
@given(
    rotation=st.lists(st.floats(-1, 1), min_size=4, max_size=4).filter(
        lambda q: float(np.linalg.norm(q)) > 0.1
    ),
    # SimpleITK drops an image axis of length 1, so rows and columns start at 2
    shape=st.tuples(st.integers(2, 9), st.integers(2, 9), st.integers(2, 6)),
    spacing=st.tuples(
        st.floats(0.3, 4), st.floats(0.3, 4), st.floats(-5, 5).filter(lambda s: abs(s) > 0.5)
    ),
)
def test_any_orientation_reads_back_through_simpleitk(
    rotation: list[float], shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> None:
    w, x, y, z = np.asarray(rotation) / np.linalg.norm(rotation)
    matrix = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )
    rows, columns, slices = shape
    spec = mr_series(
        rows=rows,
        columns=columns,
        slices=slices,
        pixel_spacing=spacing[:2],
        slice_spacing=spacing[2],
        row_cosine=tuple(matrix[:, 0]),
        column_cosine=tuple(matrix[:, 1]),
    )
    with tempfile.TemporaryDirectory() as folder:
        truth = write_series(Path(folder), spec)
        for k, path in enumerate(truth.files):
            ds = pydicom.dcmread(path)
            corner = truth.affine_lps @ [columns - 1, rows - 1, k, 1]
            np.testing.assert_allclose(
                patient_position(ds, rows - 1, columns - 1), corner[:3], atol=1e-4
            )
        assert_simpleitk_matches(Path(folder), truth)
