"""dicom-parser run as its users run it (``main(argv)``) on DICOM written by the generator,
whose geometry is known independently; volumes are checked in world space."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset

from series_selection.common.jsonio import json_text, schema_errors
from series_selection.common.models import json_value
from series_selection.parser.cli import main
from series_selection_tools.fidelity.dicom_truth import compare_with_dicom, read_slices
from series_selection_tools.fidelity.worldspace import LoadedVolume, compare, load_volume
from series_selection_tools.samples.synthetic import (
    SeriesSpec,
    SeriesTruth,
    StudySpec,
    ct_series,
    mr_series,
    write_localizer,
    write_multi_echo,
    write_series,
    write_text_report,
)

REPO = Path(__file__).resolve().parent.parent
OUTPUTS = {
    "dicom-metadata.json": "dicom-metadata",
    "series-images.json": "series-images",
    "parse-report.json": "parse-report",
}


def run_parser(source: Path, out: Path, *flags: str) -> dict[str, Any]:
    """Run the parser, check its outputs against their schemas, return them loaded."""
    assert main(["--input", str(source), "--output", str(out), "--workers", "1", *flags]) == 0
    outputs = {}
    for name, schema in OUTPUTS.items():
        data = json.loads((out / name).read_text())
        assert schema_errors(data, schema) == []
        outputs[name] = data
    return outputs


def truth_volume(truth: SeriesTruth) -> LoadedVolume:
    return LoadedVolume(truth.rescaled().transpose(2, 1, 0), truth.affine_lps)


def volumes_of(outputs: dict[str, Any], series_uid: str) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = outputs["series-images.json"][series_uid]
    return volumes


def assert_matches_truth(path: Path, truth: SeriesTruth) -> None:
    comparison = compare(load_volume(path), truth_volume(truth))
    assert comparison.compared_voxels > 0
    assert comparison.max_grid_offset_voxels < 1e-3
    assert comparison.max_abs_difference == 0


GEOMETRIES = {
    "axial": {},
    "non-square pixels": {"pixel_spacing": (0.9, 0.45), "rows": 40, "columns": 56},
    "descending (head to feet)": {"slice_spacing": -3.0},
    "oblique": {
        "row_cosine": (np.cos(0.4), np.sin(0.4), 0.0),
        "column_cosine": (0.0, 0.0, -1.0),
    },
    "feet first": {"patient_position": "FFS", "row_cosine": (-1.0, 0.0, 0.0)},
    "sagittal": {"row_cosine": (0.0, 1.0, 0.0), "column_cosine": (0.0, 0.0, -1.0)},
}


@pytest.mark.parametrize("fmt", ["nii.gz", "nii", "mhd"])
@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_volume_matches_truth_in_world_space(tmp_path: Path, geometry: str, fmt: str) -> None:
    spec = ct_series(slices=12, **GEOMETRIES[geometry])
    truth = write_series(tmp_path / "in", spec, shuffle_instance_numbers=True)
    outputs = run_parser(tmp_path / "in", tmp_path / "out", "--format", fmt)
    (volume,) = volumes_of(outputs, truth.series_uid)
    assert volume["format"] == fmt
    assert volume["shape"] == [spec.columns, spec.rows, spec.slices]
    assert volume["spacing"] == pytest.approx(
        [spec.pixel_spacing[1], spec.pixel_spacing[0], abs(spec.slice_spacing)]
    )
    assert_matches_truth(tmp_path / "out" / volume["path"], truth)


def test_rescale_is_exact_and_stored_losslessly(tmp_path: Path) -> None:
    spec = mr_series(rescale_slope=0.25, rescale_intercept=-3.5, slices=6)
    truth = write_series(tmp_path / "in", spec)
    for fmt, stored_as in (("nii", "nifti_scl"), ("mhd", "applied")):
        outputs = run_parser(tmp_path / "in", tmp_path / fmt, "--format", fmt)
        (volume,) = volumes_of(outputs, truth.series_uid)
        assert volume["rescale"] == {"slope": 0.25, "intercept": -3.5, "stored_as": stored_as}
        assert_matches_truth(tmp_path / fmt / volume["path"], truth)


def test_ct_hounsfield_units_are_integers(tmp_path: Path) -> None:
    truth = write_series(tmp_path / "in", ct_series(slices=5))
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    (volume,) = volumes_of(outputs, truth.series_uid)
    assert volume["rescale"]["stored_as"] == "applied"
    assert volume["dtype"] == "int16"


def test_mixed_series_is_split_never_stacked(tmp_path: Path) -> None:
    localizer = write_localizer(tmp_path / "in" / "loc", ct_series(rows=32, columns=32), seed=1)
    echoes = write_multi_echo(tmp_path / "in" / "echo", mr_series(slices=6), seed=2)
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    planes = volumes_of(outputs, localizer[0].series_uid)
    assert len(planes) == 3
    assert sorted(v["orientation"] for v in planes) == ["AXIAL", "CORONAL", "SAGITTAL"]
    assert all(v["shape"][2] == 1 for v in planes)
    for truth in localizer:
        assert any(
            compare(load_volume(tmp_path / "out" / v["path"]), truth_volume(truth)).agrees(0)
            for v in planes
        )
    by_echo = volumes_of(outputs, echoes[0].series_uid)
    assert [v["label"] for v in by_echo] == ["echo-1", "echo-2"]
    assert [v["distinguished_by"] for v in by_echo] == [{"EchoNumbers": 1}, {"EchoNumbers": 2}]
    for volume, truth in zip(by_echo, echoes, strict=True):
        assert_matches_truth(tmp_path / "out" / volume["path"], truth)


def test_repeated_positions_become_one_4d_volume(tmp_path: Path) -> None:
    spec = mr_series(slices=5, echo_numbers=None)
    first = write_series(tmp_path / "in" / "1", replace_spec(spec, acquisition_number=1), seed=1)
    second_spec = replace_spec(
        spec, acquisition_number=2, value_offset=100, first_instance_number=101
    )
    second = write_series(tmp_path / "in" / "2", second_spec, seed=2)
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    (volume,) = volumes_of(outputs, first.series_uid)
    assert volume["shape"] == [spec.columns, spec.rows, spec.slices, 2]
    loaded = load_volume(tmp_path / "out" / volume["path"])
    for t, truth in enumerate((first, second)):
        frame = LoadedVolume(loaded.values[..., t], loaded.affine_lps)
        assert compare(frame, truth_volume(truth)).agrees(0)


def replace_spec(spec: SeriesSpec, **changes: Any) -> SeriesSpec:
    """The spec in one fixed study and series, so that several writes form one series."""
    study = replace(spec.study, study_uid="1.2.826.0.1.3680043.8.498.4241")
    return replace(spec, study=study, series_uid="1.2.826.0.1.3680043.8.498.4242", **changes)


@pytest.mark.parametrize(
    ("changes", "phrase"),
    [
        ({"slice_positions": (0.0, 2.0, 4.0, 9.0, 11.0), "slices": 5}, "uneven slice spacing"),
        ({"tilt_shift": (0.0, 0.8, 0.0), "slices": 5}, "gantry tilt"),
        ({"tilt_shift": (0.3, -0.5, 0.0), "slice_positions": (0, 1.5, 4.5, 6.0), "slices": 4}, ";"),
    ],
)
def test_irregular_stacks_are_resampled_onto_a_regular_grid(
    tmp_path: Path, changes: dict[str, Any], phrase: str
) -> None:
    truth = write_series(tmp_path / "in", ct_series(**changes))
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    (volume,) = volumes_of(outputs, truth.series_uid)
    assert phrase in volume["resampled"]
    direction = np.array(volume["direction"])
    assert direction @ direction.T == pytest.approx(np.eye(3), abs=1e-9)
    loaded = load_volume(tmp_path / "out" / volume["path"])
    compared, difference = compare_with_dicom(loaded, read_slices(truth.files))
    assert compared > 0.5 * min(50_000, loaded.values.size)
    assert difference <= 0.51  # linear interpolation, rounded back to integers


REGULAR = tuple(1.25 * n for n in range(10))


@pytest.mark.parametrize(
    ("positions", "stacks", "planes"),
    [
        ((0.0, 1.25, 2.5, 204.5), [3, 1], [3, 1]),  # one slice 202 mm from the others
        (REGULAR + tuple(150 + p for p in REGULAR), [10, 10], [10, 10]),  # two clusters
        (tuple(p for p in REGULAR if p != 5.0), [9], [10]),  # one missing slice: resampled
        (tuple(range(8)) + tuple(12.0 + 5 * n for n in range(8)), [8, 8], [8, 8]),  # 1, 5 mm
    ],
)
def test_no_volume_is_mostly_made_up(
    tmp_path: Path, positions: tuple[float, ...], stacks: list[int], planes: list[int]
) -> None:
    truth = write_series(
        tmp_path / "in", ct_series(slice_positions=positions, slices=len(positions))
    )
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    volumes = volumes_of(outputs, truth.series_uid)
    assert [v["instance_count"] for v in volumes] == stacks
    assert [v["shape"][2] for v in volumes] == planes
    if len(stacks) > 1:
        assert [v["label"] for v in volumes] == [f"stack-{n + 1}" for n in range(len(stacks))]
        assert all(v["notes"][0].startswith(f"one of {len(stacks)} stacks") for v in volumes)
    slices = read_slices(truth.files)
    for volume in volumes:
        loaded = load_volume(tmp_path / "out" / volume["path"])
        compared, difference = compare_with_dicom(loaded, slices)
        assert compared > 0.5 * loaded.values.size
        assert difference <= 0.51


def test_every_file_is_accounted_for(tmp_path: Path) -> None:
    source = tmp_path / "in"
    truth = write_series(source / "ct", ct_series(slices=4), name_style="nested")
    write_text_report(source / "sr", StudySpec(), seed=9)
    (source / "notes.txt").write_text("not DICOM")
    (source / "empty").write_bytes(b"")
    shutil.copy(truth.files[0], source / "copy-of-first")
    different = pydicom.dcmread(truth.files[1])
    different.PatientComments = "edited"
    different.save_as(source / "edited-duplicate")
    whole = truth.files[2].read_bytes()
    (source / "truncated").write_bytes(whole[: len(whole) - 500])
    write_dicomdir(source / "DICOMDIR")
    (source / "link-to-ct").symlink_to(source / "ct")
    before = snapshot(source)

    outputs = run_parser(source, tmp_path / "out")
    files = {f["path"]: f for f in outputs["parse-report.json"]["files"]}
    on_disk = {p.relative_to(source).as_posix() for p in source.rglob("*") if not p.is_dir()}
    on_disk |= {"link-to-ct"}
    assert set(files) == on_disk
    assert files["notes.txt"]["reason"] == "not DICOM"
    assert files["empty"]["reason"] == "empty file"
    assert files["truncated"]["reason"].startswith("truncated")
    assert files["DICOMDIR"]["reason"].startswith("DICOMDIR")
    assert files["link-to-ct"]["reason"].startswith("symbolic link")
    # Of files sharing a SOPInstanceUID the first by path is kept, the others are duplicates.
    first, second = (f.relative_to(source).as_posix() for f in truth.files[:2])
    duplicates = {p: f for p, f in files.items() if f["status"] == "duplicate"}
    assert set(duplicates) == {first, "edited-duplicate"}
    assert duplicates[first]["duplicate_of"] == "copy-of-first"
    assert "byte-identical" in duplicates[first]["reason"]
    assert duplicates["edited-duplicate"]["duplicate_of"] == second
    assert "different content" in duplicates["edited-duplicate"]["reason"]
    summary = outputs["parse-report.json"]["summary"]
    assert summary["files"] == len(on_disk)
    assert summary["used"] + summary["duplicate"] + summary["skipped"] == summary["files"]
    assert snapshot(source) == before, "the input folder must never change"


def write_dicomdir(path: Path) -> None:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dataset.FileSetID = "TEST"
    dataset.DirectoryRecordSequence = []
    dataset.save_as(path, enforce_file_format=True)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_metadata_levels_and_dicom_json(tmp_path: Path) -> None:
    study = StudySpec(patient_name="DOE^JANE", study_description="CT CHEST", study_uid="1.2.3.4")
    truth = write_series(tmp_path / "in", ct_series(study=study, slices=3), seed=1)
    write_text_report(tmp_path / "in", study, seed=2)
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    (study_entry,) = outputs["dicom-metadata.json"]["studies"]
    study_level = Dataset.from_json(study_entry["attributes"])
    assert str(study_level.PatientName) == "DOE^JANE"
    assert study_level.StudyDescription == "CT CHEST"
    assert study_entry["attributes"]["00100010"] == {
        "vr": "PN",
        "Value": [{"Alphabetic": "DOE^JANE"}],
    }
    image_series = next(
        s
        for s in study_entry["series"]
        if json_value(s["attributes"], "SeriesInstanceUID") == truth.series_uid
    )
    series_level = Dataset.from_json(image_series["attributes"])
    assert series_level.Modality == "CT"
    assert list(series_level.ImageType) == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert "SliceThickness" in series_level and "PixelSpacing" in series_level
    assert "ImagePositionPatient" not in series_level  # differs per slice
    assert "PatientName" not in series_level  # lives at study level
    for instance in image_series["instances"]:
        level = Dataset.from_json(instance["attributes"])
        assert "SOPInstanceUID" in level and "ImagePositionPatient" in level
        assert (tmp_path / "in" / instance["path"]).is_file()
    numbers = [
        int(json_value(i["attributes"], "InstanceNumber")) for i in image_series["instances"]
    ]
    assert numbers == sorted(numbers)


def test_uids_are_always_at_their_level(tmp_path: Path) -> None:
    """One file writes its SeriesInstanceUID with another VR: the series is still one, and its
    UID (as it groups the files) stays at series level, the study's at study level."""
    study = StudySpec(study_uid="1.2.3.9")
    truth = write_series(tmp_path / "in", ct_series(study=study, slices=3), seed=5)
    odd = truth.files[0]
    dataset = pydicom.dcmread(odd)
    dataset[0x0020000E] = pydicom.DataElement(0x0020000E, "LO", truth.series_uid)
    dataset.save_as(odd)
    outputs = run_parser(tmp_path / "in", tmp_path / "out")
    (study_entry,) = outputs["dicom-metadata.json"]["studies"]
    (series,) = study_entry["series"]
    assert series["attributes"]["0020000E"] == {"vr": "UI", "Value": [truth.series_uid]}
    assert json_value(study_entry["attributes"], "StudyInstanceUID") == "1.2.3.9"
    assert len(series["instances"]) == 3
    assert [v["instance_count"] for v in outputs["series-images.json"][truth.series_uid]] == [3]


@pytest.mark.parametrize("studies", [0, 1, 3])
def test_metadata_is_written_as_json_dumps_writes_it(tmp_path: Path, studies: int) -> None:
    """dicom-metadata.json is written series by series; the text is what the json module
    writes for the whole document, and nothing else is left in the output folder."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")  # an input without files is refused
    for number in range(studies):
        study = StudySpec(patient_id=f"P{number}", study_uid=f"1.2.3.{number}")
        write_series(tmp_path / "in" / f"{number}a", ct_series(study=study, slices=2), seed=1)
        write_series(tmp_path / "in" / f"{number}b", mr_series(study=study, slices=2), seed=2)
    run_parser(tmp_path / "in", tmp_path / "out")
    text = (tmp_path / "out" / "dicom-metadata.json").read_text(encoding="utf-8")
    document = json.loads(text)
    assert text == json_text(document) + "\n"
    assert len(document["studies"]) == studies
    assert all(len(study["series"]) == 2 for study in document["studies"])
    expected = {"dicom-metadata.json", "series-images.json", "parse-report.json"}
    expected |= {".dicom-parser.manifest"} | ({"volumes", "previews"} if studies else set())
    assert {p.name for p in (tmp_path / "out").iterdir()} == expected


def test_reruns_are_byte_identical(tmp_path: Path) -> None:
    write_series(tmp_path / "in" / "a", ct_series(slices=4), seed=3)
    write_multi_echo(tmp_path / "in" / "b", mr_series(slices=3), seed=4)
    run_parser(tmp_path / "in", tmp_path / "out")
    first = snapshot(tmp_path / "out")
    time.sleep(1.1)  # anything stamping the time (a gzip header, say) would now differ
    main(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--workers", "2"])
    assert snapshot(tmp_path / "out") == first


def test_stale_volumes_of_an_earlier_run_are_removed(tmp_path: Path) -> None:
    write_series(tmp_path / "in", ct_series(slices=3))
    run_parser(tmp_path / "in", tmp_path / "out", "--format", "mhd")
    outputs = run_parser(tmp_path / "in", tmp_path / "out", "--format", "nii")
    listed = {v["path"] for vs in outputs["series-images.json"].values() for v in vs}
    on_disk = {
        p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out" / "volumes").iterdir()
    }
    assert on_disk == listed


def test_samples_convert(tmp_path: Path) -> None:
    outputs = run_parser(REPO / "samples", tmp_path / "out", "--workers", "2")
    summary = outputs["parse-report.json"]["summary"]
    assert summary["studies"] == 2
    assert summary["skipped"] == 1  # samples/README.txt
    by_description = {s["SeriesDescription"]: s for s in outputs["parse-report.json"]["series"]}
    assert by_description["Portal venous 1.25mm"]["volumes"] == 1
    assert by_description["AX DUAL ECHO"]["volumes"] == 2
    assert by_description["Scout"]["volumes"] == 3
    assert by_description["Report"]["volumes"] == 0


def test_user_errors_exit_2_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--input", str(tmp_path / "missing"), "--output", str(tmp_path / "out")]) == 2
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "inside")]) == 2
    assert main(["--output", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "does not exist" in error and "lies inside the input" in error


def test_an_input_folder_holding_no_files_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What Docker makes of a mistyped bind-mount source: an empty folder."""
    source = tmp_path / "in"
    (source / "nothing-here").mkdir(parents=True)
    assert main(["--input", str(source), "--output", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.rstrip().endswith(f"input folder {source} holds no files")
    assert not (tmp_path / "out").exists()


def test_environment_sets_defaults_and_flags_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    truth = write_series(tmp_path / "in", ct_series(slices=3))
    monkeypatch.setenv("DICOM_PARSER_INPUT", str(tmp_path / "in"))
    monkeypatch.setenv("DICOM_PARSER_OUTPUT", str(tmp_path / "env-out"))
    monkeypatch.setenv("DICOM_PARSER_FORMAT", "mhd")
    assert main(["--workers", "1"]) == 0
    images = json.loads((tmp_path / "env-out" / "series-images.json").read_text())
    assert images[truth.series_uid][0]["format"] == "mhd"
    assert main(["--format", "nii", "--workers", "1"]) == 0
    images = json.loads((tmp_path / "env-out" / "series-images.json").read_text())
    assert images[truth.series_uid][0]["format"] == "nii"
    monkeypatch.setenv("DICOM_PARSER_FORMAT", "png")
    assert main(["--workers", "1"]) == 2


def test_series_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    small = write_series(tmp_path / "in" / "small", ct_series(slices=2, rows=8, columns=8), seed=1)
    big = write_series(tmp_path / "in" / "big", ct_series(slices=4), seed=2)  # 4 x 64 x 48 x 2 B
    outputs = run_parser(tmp_path / "in", tmp_path / "out", "--max-series-bytes", "20000")
    assert small.series_uid in outputs["series-images.json"]
    assert big.series_uid not in outputs["series-images.json"]
    (refused,) = [s for s in outputs["parse-report.json"]["series"] if s["volumes"] == 0]
    assert refused["reason"].startswith(
        "its headers claim 24.0 KiB of pixel data, over the 19.5 KiB"
    )


def test_outputs_are_readable_by_other_users(tmp_path: Path) -> None:
    # The next operator may run as another user (containers, Argo): not owner-only files.
    write_series(tmp_path / "in", ct_series(slices=2))
    run_parser(tmp_path / "in", tmp_path / "out")
    for output in (tmp_path / "out").rglob("*"):
        if output.is_file():
            assert output.stat().st_mode & 0o044 == 0o044, output


def test_json_logs_for_containers(tmp_path: Path) -> None:
    """Every line on stderr is a JSON object, also when pydicom warns about odd values, in the
    parser and in its worker processes."""
    truth = write_series(tmp_path / "in", ct_series(slices=2))
    for path in (tmp_path / "in").rglob("*"):
        if path.is_file():  # an unknown character set, and text it must then guess at
            dataset = pydicom.dcmread(path)
            dataset.SpecificCharacterSet = "ISO_IR 999"
            dataset[0x00081030] = pydicom.DataElement(0x00081030, "LO", "Ünïcode".encode())
            dataset.SeriesInstanceUID = truth.series_uid + ".x" * 40  # too long for a UI
            dataset.save_as(path)
    done = subprocess.run(
        [sys.executable, "-m", "series_selection.parser", "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out"), "--log-format", "json", "--workers", "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    assert any(line["logger"] == "py.warnings" for line in lines)
    assert lines[-1]["message"].startswith("done: 1 studies, 1 series, 1 volumes")
