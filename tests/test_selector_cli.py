"""The series-selector command: its outputs, the volumes it places, Explain, and refused input."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability_support import tree_digest
from selector_support import AXIAL_IOP, CORONAL_IOP, SeriesFixture, rules_json, write_parser_output
from series_selection.common.dictionary import tag_key
from series_selection.common.jsonio import json_text, schema_errors
from series_selection.selector.cli import main
from series_selection.selector.inputs import Candidate

OPERATORS = Path(__file__).resolve().parent.parent / "operators"

FIXTURES = [
    SeriesFixture(
        series={
            "Modality": "CT",
            "SeriesNumber": 2,
            "SeriesDescription": "Portal venous",
            "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            "ImageOrientationPatient": AXIAL_IOP,
        },
        study={"StudyDescription": "CT ABDOMEN"},
        instances=[{"InstanceNumber": n} for n in range(1, 4)],
    ),
    SeriesFixture(
        series={"Modality": "CT", "SeriesNumber": 1, "SeriesDescription": "Scout"},
        study={"StudyDescription": "CT ABDOMEN"},
        instances=[{"ImageOrientationPatient": iop} for iop in (AXIAL_IOP, CORONAL_IOP)],
    ),
    SeriesFixture(
        series={"Modality": "MR", "SeriesNumber": 3, "SeriesDescription": "dual echo"},
        study={"StudyDescription": "CT ABDOMEN"},
        volumes=2,
    ),
]
CT_AXIAL = rules_json(
    {
        "name": "CT axial",
        "conditions": {"Modality": "CT", "ImageOrientationPatient": "Axial"},
        "required": True,
    },
    {"name": "MR", "conditions": {"Modality": "MR"}},
)


@pytest.fixture
def parsed(tmp_path: Path) -> Path:
    folder = tmp_path / "parsed"
    write_parser_output(folder, FIXTURES)
    return folder


def run(input_dir: Path, output_dir: Path, rules: str = CT_AXIAL, *more: str) -> int:
    rules_file = output_dir.parent / "rules.json"
    rules_file.write_text(rules)
    return main(
        ["--input", str(input_dir), "--output", str(output_dir), "--rules", str(rules_file), *more]
    )


def selected(output_dir: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((output_dir / "selected-images.json").read_text())
    assert schema_errors(document, "selected-images") == []
    return document


def image_paths(document: dict[str, Any]) -> Iterator[str]:
    for selection in document["selections"]:
        for series in selection["series"]:
            for image in series["images"]:
                yield image["path"]


def test_selected_images_places_volumes_by_hard_link(parsed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    document = selected(out)
    ct, mr = document["selections"]
    assert ct["name"] == "CT axial"
    (series,) = ct["series"]
    assert (series["SeriesDescription"], series["Modality"], series["SeriesNumber"]) == (
        "Portal venous",
        "CT",
        2,
    )
    assert series["instance_count"] == 3
    (image,) = series["images"]
    assert (image["shape"], image["spacing"], image["format"]) == (
        [4, 3, 2],
        [0.8, 0.8, 2.5],
        "nii.gz",
    )
    assert [i["label"] for i in mr["series"][0]["images"]] == ["echo-1", "echo-2"]
    for path in image_paths(document):
        placed, original = out / path, parsed / path
        assert placed.stat().st_ino == original.stat().st_ino
        assert np.array_equal(nib.load(placed).get_fdata(), nib.load(original).get_fdata())


def test_selected_images_is_formatted_like_every_json_file(parsed: Path, tmp_path: Path) -> None:
    rules = rules_json(
        {"name": 'CT "axial" \u2013 Ünïcode', "conditions": {"Modality": "CT"}},
        {"name": "nothing", "conditions": {"Modality": "PT"}},
        {"name": "CT again", "conditions": {"Modality": "CT"}, "all_matched": True},
    )
    out = tmp_path / "out"
    assert run(parsed, out, rules) == 0
    text = (out / "selected-images.json").read_text(encoding="utf-8")
    document = json.loads(text)
    assert text == json_text(document) + "\n"
    assert [len(s["series"]) for s in document["selections"]] == [1, 0, 2]
    assert document["selections"][0]["series"][0] in document["selections"][2]["series"]


def test_a_description_that_is_no_text_is_written_as_text(parsed: Path, tmp_path: Path) -> None:
    metadata = json.loads((parsed / "dicom-metadata.json").read_text())
    for study in metadata["studies"]:
        for series in study["series"]:  # a valid DICOM JSON element, but no text
            series["attributes"]["0008103E"] = {"vr": "LO", "Value": [42]}  # SeriesDescription
    (parsed / "dicom-metadata.json").write_text(json.dumps(metadata))
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    chosen = selected(out)["selections"][0]["series"]
    assert [series["SeriesDescription"] for series in chosen] == ["42"]


def test_an_output_breaking_its_schema_is_not_written(
    parsed: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A fault in what makes the outputs (here a description that is a number) is caught by
    the schema check before anything is written."""
    monkeypatch.setattr(Candidate, "description", property(lambda candidate: 42))
    out = tmp_path / "out"
    assert run(parsed, out) == 5
    assert "refusing to write selection-explain.json" in capsys.readouterr().err
    assert not (out / "selected-images.json").exists()
    assert not (out / "selection-explain.json").exists()


def test_a_second_run_into_the_same_folder_gives_the_same_result(
    parsed: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    first = (out / "selected-images.json").read_text()
    assert run(parsed, out) == 0
    assert (out / "selected-images.json").read_text() == first


def test_a_different_file_where_a_volume_goes_is_replaced(parsed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    path = next(image_paths(selected(out)))
    (out / path).unlink()
    (out / path).write_bytes(b"stale")
    assert run(parsed, out) == 0
    assert (out / path).stat().st_ino == (parsed / path).stat().st_ino
    assert not [p.name for p in (out / path).parent.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("output", [".", "selections", ".."])
def test_overlapping_input_and_output_folders_are_refused_untouched(
    parsed: Path, tmp_path: Path, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.json"
    rules.write_text(CT_AXIAL)
    before = tree_digest(tmp_path)
    arguments = ["--input", str(parsed), "--output", str(parsed / output), "--rules", str(rules)]
    assert main(arguments) == 2
    assert tree_digest(tmp_path) == before
    assert "Traceback" not in capsys.readouterr().err


def test_volumes_are_copied_where_a_hard_link_is_impossible(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to place volumes across")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        write_parser_output(Path(other), FIXTURES)
        out = tmp_path / "out"
        assert run(Path(other), out) == 0
        for path in image_paths(selected(out)):
            assert (out / path).stat().st_ino != (Path(other) / path).stat().st_ino
            assert (out / path).read_bytes() == (Path(other) / path).read_bytes()


def test_metaimage_volumes_bring_their_data_file(parsed: Path, tmp_path: Path) -> None:
    listing = json.loads((parsed / "series-images.json").read_text())
    volumes = [v for entries in listing.values() for v in entries]
    pixels = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    for volume in volumes:
        mhd = volume["path"].replace(".nii.gz", ".mhd")
        sitk.WriteImage(sitk.GetImageFromArray(pixels), str(parsed / mhd))
        volume.update(path=mhd, format="mhd")
    (parsed / "series-images.json").write_text(json.dumps(listing))
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    for path in image_paths(selected(out)):
        assert path.endswith(".mhd")
        assert (out / path).with_suffix(".raw").is_file()
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(out / path))), pixels)


def test_a_metaimage_volume_holding_its_voxels_is_placed_alone(
    parsed: Path, tmp_path: Path
) -> None:
    """``ElementDataFile = LOCAL``: the voxels follow the header in the same file, which is read
    no further than its header."""
    listing = json.loads((parsed / "series-images.json").read_text())
    header = "ObjectType = Image\nNDims = 3\nDimSize = 4 3 2\nElementType = MET_SHORT\n"
    for volume in (v for entries in listing.values() for v in entries):
        mhd = volume["path"].replace(".nii.gz", ".mha")
        voxels = b"=\nElementDataFile = elsewhere.raw\n" * 100_000  # text a reader must not take
        (parsed / mhd).write_bytes(f"{header}ElementDataFile = LOCAL\n".encode() + voxels)
        volume.update(path=mhd, format="mhd")
    (parsed / "series-images.json").write_text(json.dumps(listing))
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    placed = sorted(p.name for p in (out / "volumes").iterdir())
    assert placed and all(name.endswith(".mha") for name in placed)


def test_a_metaimage_header_without_its_data_file_line_in_its_first_mib_is_refused(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = json.loads((parsed / "series-images.json").read_text())
    for volume in (v for entries in listing.values() for v in entries):
        mhd = volume["path"].replace(".nii.gz", ".mhd")
        padding = "Comment = padding\n" * 70_000  # over 1 MiB
        (parsed / mhd).write_text(f"ObjectType = Image\n{padding}ElementDataFile = a.raw\n")
        volume.update(path=mhd, format="mhd")
    (parsed / "series-images.json").write_text(json.dumps(listing))
    assert run(parsed, tmp_path / "out") == 2
    assert "has no ElementDataFile line in its first 1 MiB" in capsys.readouterr().err


@pytest.mark.parametrize("mode", ["place", "refer"])
@pytest.mark.parametrize(
    "data_file", ["../../outside.raw", "/etc/passwd", "nul\x00byte.raw", "missing.raw", "a b.raw"]
)
def test_a_metaimage_header_naming_a_hostile_data_file_is_refused(
    parsed: Path, tmp_path: Path, data_file: str, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    listing = json.loads((parsed / "series-images.json").read_text())
    for volume in (v for entries in listing.values() for v in entries):
        mhd = volume["path"].replace(".nii.gz", ".mhd")
        header = f"ObjectType = Image\nNDims = 3\nElementDataFile = {data_file}\n"
        (parsed / mhd).write_text(header, encoding="latin-1")
        volume.update(path=mhd, format="mhd")
    (parsed / "series-images.json").write_text(json.dumps(listing))
    out = tmp_path / "out"
    assert run(parsed, out, CT_AXIAL, "--volumes", mode) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert len([line for line in error.splitlines() if "ERROR" in line]) == 1
    assert not (out / "selected-images.json").exists()
    assert not (out / "volumes").exists()


def test_refer_mode_points_at_the_input_volumes(parsed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(parsed, out, CT_AXIAL, "--volumes", "refer") == 0
    paths = list(image_paths(selected(out)))
    assert paths and all(p.startswith("../parsed/volumes/") for p in paths)
    assert all(
        (out / p).resolve() == (parsed / p.removeprefix("../parsed/")).resolve() for p in paths
    )
    assert not (out / "volumes").exists()


def test_explain_file_says_why_for_every_series_and_selection(parsed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    explained = json.loads((out / "selection-explain.json").read_text())
    assert schema_errors(explained, "selection-explain") == []
    assert explained["rules"] == str(tmp_path / "rules.json")
    series = explained["series"]
    assert [s["SeriesDescription"] for s in series] == ["Scout", "Portal venous", "dual echo"]
    scout = series[0]
    assert scout["values"] == {
        "ImageOrientationPatient": {"per_instance": [AXIAL_IOP, CORONAL_IOP]},
        "Modality": "CT",
    }
    ct = explained["selections"][0]
    assert ct["conditions"] == [
        {"path": "$.selections[0].conditions.Modality", "condition": "Modality: 'CT'"},
        {
            "path": "$.selections[0].conditions.ImageOrientationPatient",
            "condition": "ImageOrientationPatient: 'Axial'",
        },
    ]
    assert (ct["ranked"], ct["chosen"], ct["matched_without_volume"]) == ([1], [1], [])
    assert ct["failed"] == [
        {
            "series": [0],
            "conditions": [
                {
                    "path": "$.selections[0].conditions.ImageOrientationPatient",
                    "why": "Axial/Coronal: slice normal 0.0 deg from the nearest axis",
                }
            ],
        },
        {  # the MR series: its volumes are axial, so only Modality fails
            "series": [2],
            "conditions": [
                {
                    "path": "$.selections[0].conditions.Modality",
                    "why": "not equal, and the regular expression does not match",
                }
            ],
        },
    ]


def test_series_failing_alike_are_grouped(tmp_path: Path) -> None:
    twins = [SeriesFixture(series={"Modality": "MR", "SeriesNumber": n}) for n in (1, 2, 3)]
    no_volume = SeriesFixture(
        series={"Modality": "CT", "SeriesNumber": 4, "ImageOrientationPatient": AXIAL_IOP},
        volumes=0,
    )
    write_parser_output(tmp_path / "in", [*twins, no_volume])
    assert run(tmp_path / "in", tmp_path / "out") == 4  # CT axial is required
    explained = json.loads((tmp_path / "out" / "selection-explain.json").read_text())
    assert schema_errors(explained, "selection-explain") == []
    ct, mr = explained["selections"]
    assert [group["series"] for group in ct["failed"]] == [[0, 1, 2]]
    assert ct["matched_without_volume"] == [3]
    assert (mr["ranked"], mr["chosen"]) == ([0, 1, 2], [0])


def test_explain_prints_a_table(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(parsed, tmp_path / "out", CT_AXIAL, "--explain") == 0
    table = capsys.readouterr().out
    lines = table.splitlines()
    assert lines[0] == f"Rules: {tmp_path / 'rules.json'}"
    assert "Selection 'CT axial': 1 series chosen" in lines
    header = next(line for line in lines if "Verdict" in line)
    assert header.split() == [
        "Study",
        "Series",
        "Description",
        "Verdict",
        "Modality",
        "ImageOrientationPatient",
    ]
    row = next(line for line in lines if "Scout" in line)
    assert row.split()[3:] == ["no", "ok", "CT", "NO", "varies:", "Axial", "|", "Coronal"]
    assert any(line.split()[:5] == ["1", "2", "Portal", "venous", "CHOSEN"] for line in lines)
    assert (
        "    study 1 series 1 'Scout': ImageOrientationPatient: 'Axial': Axial/Coronal: slice"
        in table
    )
    assert "  Studies:" in lines
    assert any(line.startswith("    1: ") for line in lines)


@pytest.mark.parametrize(
    ("switch", "table", "code"),
    [("1", True, 0), ("on", True, 0), ("0", False, 0), ("off", False, 0), ("maybe", False, 2)],
)
def test_the_explain_switch_can_be_set_from_the_environment(
    parsed: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    switch: str,
    table: bool,
    code: int,
) -> None:
    monkeypatch.setenv("SERIES_SELECTOR_EXPLAIN", switch)
    assert run(parsed, tmp_path / "out", CT_AXIAL) == code
    captured = capsys.readouterr()
    assert ("Selection 'CT axial'" in captured.out) is table
    if code:
        (error,) = captured.err.strip().splitlines()
        assert f"SERIES_SELECTOR_EXPLAIN={switch!r}: give 1 or 0" in error


def test_explain_says_each_thing_once_and_shows_patterns_as_written(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = (
        "selections:\n"
        "  - name: T1\n"
        "    conditions:\n"
        "      SeriesDescription: '\\bT1\\b'\n"
        "      ImageOrientationPatient: Sagittal\n"
    )
    assert run(parsed, tmp_path / "out", rules, "--explain") == 0
    table = capsys.readouterr().out
    assert "SeriesDescription: '\\bT1\\b'" in table
    assert "\\\\b" not in table
    assert "Axial: Axial" not in table
    assert "ImageOrientationPatient: 'Sagittal': Axial: slice normal" in table
    explain = json.loads((tmp_path / "out" / "selection-explain.json").read_text())
    conditions = explain["selections"][0]["conditions"]
    assert conditions[0]["condition"] == "SeriesDescription: '\\bT1\\b'"


def replace_path(folder: Path, new_path: str) -> None:
    listing = json.loads((folder / "series-images.json").read_text())
    first = next(iter(listing.values()))[0]
    first["path"] = new_path
    (folder / "series-images.json").write_text(json.dumps(listing))


@pytest.mark.parametrize(
    "bad", ["/etc/passwd", "../outside.nii.gz", "volumes/../../outside.nii.gz"]
)
def test_paths_leaving_the_input_folder_are_refused(
    parsed: Path, tmp_path: Path, bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outside.nii.gz").write_bytes(b"secret")
    replace_path(parsed, bad)
    assert run(parsed, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "series-images.json" in err


def test_a_symlink_escaping_the_input_folder_is_refused(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outside.nii.gz").write_bytes(b"secret")
    (parsed / "volumes" / "link.nii.gz").symlink_to(tmp_path / "outside.nii.gz")
    replace_path(parsed, "volumes/link.nii.gz")
    assert run(parsed, tmp_path / "out") == 2
    assert "lists 'volumes/link.nii.gz', which leads outside" in capsys.readouterr().err
    assert not (tmp_path / "out" / "volumes").exists()


def test_a_symlinked_folder_escaping_the_input_folder_is_refused(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.nii.gz").write_bytes(b"secret")
    (parsed / "elsewhere").symlink_to(tmp_path / "outside")
    replace_path(parsed, "elsewhere/secret.nii.gz")
    assert run(parsed, tmp_path / "out") == 2
    assert "lists 'elsewhere/secret.nii.gz', which leads outside" in capsys.readouterr().err


def test_a_symlink_staying_inside_the_input_folder_is_followed(
    parsed: Path, tmp_path: Path
) -> None:
    listing = json.loads((parsed / "series-images.json").read_text())
    original = next(iter(listing.values()))[0]["path"]
    (parsed / "volumes" / "alias.nii.gz").symlink_to(parsed / original)
    replace_path(parsed, "volumes/alias.nii.gz")
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    assert "volumes/alias.nii.gz" in image_paths(selected(out))
    assert (out / "volumes" / "alias.nii.gz").stat().st_ino == (parsed / original).stat().st_ino


def test_a_missing_volume_file_is_refused(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    replace_path(parsed, "volumes/nothing.nii.gz")
    assert run(parsed, tmp_path / "out") == 2
    assert "lists 'volumes/nothing.nii.gz', which is not a file in" in capsys.readouterr().err


@pytest.mark.parametrize("missing", ["dicom-metadata.json", "series-images.json"])
def test_incomplete_input_is_refused(
    parsed: Path, tmp_path: Path, missing: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (parsed / missing).unlink()
    assert run(parsed, tmp_path / "out") == 2
    assert f"{missing} does not exist" in capsys.readouterr().err


def test_input_that_breaks_its_schema_is_refused(
    parsed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (parsed / "dicom-metadata.json").write_text('{"studies": [{"series": []}]}')
    assert run(parsed, tmp_path / "out") == 2
    assert "does not match schema 'dicom-metadata'" in capsys.readouterr().err


def test_no_input_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path / "absent", tmp_path / "out") == 2
    assert "does not exist or is not a folder" in capsys.readouterr().err


def test_bad_arguments_exit_with_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--volumes", "teleport"]) == 2
    assert "invalid choice: 'teleport'" in capsys.readouterr().err


def test_python_dash_m_with_environment_settings(parsed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {
        **os.environ,
        "PYTHONPATH": str(OPERATORS),
        "SERIES_SELECTOR_INPUT": str(parsed),
        "SERIES_SELECTOR_OUTPUT": str(out),
        "NVIDIA_CLARA_SELECTION_RULES_BASE64": base64.b64encode(CT_AXIAL.encode()).decode(),
        "LOG_FORMAT": "json",
    }
    done = subprocess.run(
        [sys.executable, "-m", "series_selection.selector"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    logged = [json.loads(line) for line in done.stderr.splitlines()]
    assert logged[0]["message"] == "rules from NVIDIA_CLARA_SELECTION_RULES_BASE64: 2 selection(s)"
    assert [s["name"] for s in selected(out)["selections"]] == ["CT axial", "MR"]


def test_a_series_uid_reused_in_two_studies_keeps_each_its_own_volume(tmp_path: Path) -> None:
    from dataclasses import replace

    from series_selection.parser.cli import main as parse
    from series_selection.selector.cli import main as select
    from series_selection_tools.samples.synthetic import StudySpec, ct_series, write_series

    reused = "1.2.826.0.1.3680043.8.498.777"
    for number, slices in ((1, 3), (2, 5)):
        study = StudySpec(study_uid=f"1.2.826.0.1.3680043.8.498.{number}")
        spec = replace(  # distinct instance numbers give distinct SOPInstanceUIDs
            ct_series(slices=slices, first_instance_number=100 * number),
            study=study,
            series_uid=reused,
        )
        write_series(tmp_path / "in" / str(number), spec, seed=number)
    assert parse(["--input", str(tmp_path / "in"), "--output", str(tmp_path / "parsed")]) == 0
    rules = tmp_path / "rules.yaml"
    rules.write_text("selections: [{name: all, conditions: {}, all_matched: true}]\n")
    arguments = ["--input", str(tmp_path / "parsed"), "--output", str(tmp_path / "out")]
    assert select([*arguments, "--rules", str(rules)]) == 0
    document = json.loads((tmp_path / "out" / "selected-images.json").read_text())
    chosen = document["selections"][0]["series"]
    slices = {s["StudyInstanceUID"][-1]: [i["shape"][2] for i in s["images"]] for s in chosen}
    assert slices == {"1": [3], "2": [5]}


@pytest.mark.parametrize(
    "entry",
    ["volumes", ".series-selector.staging", ".series-selector.manifest", "selected-images.json"],
)
def test_a_symbolic_link_in_the_output_leads_nowhere(
    parsed: Path, tmp_path: Path, entry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert run(parsed, out) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.nii.gz").write_bytes(b"not ours")
    target = out / entry
    if target.is_dir():
        shutil.rmtree(target)
    else:
        target.unlink(missing_ok=True)
    target.symlink_to(elsewhere if entry == "volumes" else elsewhere / "precious.nii.gz")
    before = tree_digest(tmp_path)
    code = run(parsed, out)
    assert "Traceback" not in capsys.readouterr().err
    assert code in (0, 5)
    after = tree_digest(tmp_path)
    assert {k: v for k, v in after.items() if not k.startswith("out/")} == {
        k: v for k, v in before.items() if not k.startswith("out/")
    }


@pytest.mark.parametrize("missing", ["--input", "--output"])
def test_a_missing_folder_is_asked_for_not_guessed(
    missing: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SERIES_SELECTOR_INPUT", raising=False)
    monkeypatch.delenv("SERIES_SELECTOR_OUTPUT", raising=False)
    given = {"--input": str(tmp_path / "in"), "--output": str(tmp_path / "out")}
    del given[missing]
    assert main([item for pair in given.items() for item in pair]) == 2
    variable = f"SERIES_SELECTOR_{missing.strip('-').upper()}"
    assert f"give {missing} or set {variable}" in capsys.readouterr().err


@pytest.mark.parametrize("blank", ["", "   \n\n", "# no rules yet\n# (comments only)\n"])
def test_blank_rules_choose_every_image_series_and_the_log_says_so(
    parsed: Path, tmp_path: Path, blank: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """As MONAI Deploy does without rules (one of its example apps ships blank rules)."""
    assert run(parsed, tmp_path / "out", blank) == 0
    selections = selected(tmp_path / "out")["selections"]
    assert [s["name"] for s in selections] == ["all image series"]
    described = {series["SeriesDescription"] for series in selections[0]["series"]}
    assert described == {"Scout", "Portal venous", "dual echo"}
    assert "are blank: every image series is chosen" in capsys.readouterr().err


def test_check_validates_a_rules_file_without_any_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text("selections:\n  - conditions: {SeriesDescription: '(?i)^(?!.*cor).*$'}\n")
    assert main(["--check", str(good), "--input", str(tmp_path / "absent")]) == 0
    assert "1 pattern(s) in Python syntax run under a time limit" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("selections:\n  - conditions: {Modalty: CT}\n")
    assert main(["--check", str(bad)]) == 2
    assert "did you mean Modality?" in capsys.readouterr().err
    broken = tmp_path / "broken.yaml"
    broken.write_text("selections:\n  - conditions: {Modality: [CT\n")
    assert main(["--check", str(broken)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        f"ERROR   series_selection.common.cli: {broken} is not valid YAML: line 3, column 1: "
        in line
    )
    assert not (tmp_path / "absent").exists()


def test_a_pattern_that_runs_out_of_time_ends_the_run_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slow = SeriesFixture(series={"Modality": "CT", "SeriesDescription": "a" * 60 + "!"})
    folder = tmp_path / "parsed"
    write_parser_output(folder, [slow])
    rules = rules_json({"name": "slow", "conditions": {"SeriesDescription": r"^(a|a)*\1$"}})
    assert run(folder, tmp_path / "out", rules) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "ERROR" in line]
    (line,) = errors
    assert "selection 'slow' at $.selections[0].conditions.SeriesDescription: " in line
    assert r"regular expression '^(a|a)*\1$' ran out of time" in line
    assert not (tmp_path / "out" / "selected-images.json").exists()


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=6,
)
HOSTILE_KEYWORDS = (  # and what each also decides: order, label, localizer, plane
    "StudyDate",
    "SeriesNumber",
    "SeriesDescription",
    "ImageType",
    "ImageOrientationPatient",
    "SliceThickness",
)
HOSTILE_RULES = rules_json(
    *(
        {"name": keyword, "conditions": {keyword: "(?i)ct|1"}, "order_by": [keyword]}
        for keyword in HOSTILE_KEYWORDS
        if keyword != "ImageOrientationPatient"  # a plane, below
    ),
    {"name": "range", "conditions": {"SliceThickness": [0.5, 5.0], "SeriesNumber": [1, ">"]}},
    {"name": "members", "conditions": {"ImageType": ["ORIGINAL", "!LOCALIZER"]}},
    {"name": "plane", "conditions": {"ImageOrientationPatient": "Axial", "StudyDate": None}},
    {"name": "any", "conditions": {"any": [{"SeriesDescription": "x"}, {"not": {"Modality": 1}}]}},
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keyword=st.sampled_from(HOSTILE_KEYWORDS),
    level=st.sampled_from(["study", "series", "instance"]),
    values=st.lists(JSON_VALUES, max_size=3),
    vr=st.sampled_from(["CS", "DS", "PN", "LO", "SQ"]),
)
def test_any_json_values_in_the_metadata_are_selected_on_without_a_traceback(
    tmp_path_factory: pytest.TempPathFactory,
    keyword: str,
    level: str,
    values: list[Any],
    vr: str,
) -> None:
    """The schema lets an element's values be any JSON (objects and arrays too): whatever they
    are, at any level, the selector chooses and explains without a traceback."""
    folder = tmp_path_factory.mktemp("hostile")
    write_parser_output(folder / "parsed", FIXTURES[:2])
    metadata_file = folder / "parsed" / "dicom-metadata.json"
    metadata = json.loads(metadata_file.read_text())
    study = metadata["studies"][0]
    datasets = {
        "study": [study["attributes"]],
        "series": [series["attributes"] for series in study["series"]],
        "instance": [i["attributes"] for s in study["series"] for i in s["instances"]],
    }[level]
    for holder in (study["attributes"], *(s["attributes"] for s in study["series"])):
        holder.pop(tag_key(keyword), None)  # so that the hostile level is the one read
    for dataset in datasets:
        dataset[tag_key(keyword)] = {"vr": vr, "Value": values}
    metadata_file.write_text(json.dumps(metadata))
    rules = folder / "rules.json"
    rules.write_text(HOSTILE_RULES)
    arguments = ["--input", str(folder / "parsed"), "--output", str(folder / "out")]
    assert main([*arguments, "--rules", str(rules), "--explain"]) == 0
    explained = json.loads((folder / "out" / "selection-explain.json").read_text())
    assert schema_errors(explained, "selection-explain") == []
