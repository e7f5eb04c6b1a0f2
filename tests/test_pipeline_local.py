"""The local runner: folder wiring, variables, order, logs, exit codes and the run summary.

The runner is what is under test here, so the operators are tiny real programs (``python3 -c``).
The end-to-end test at the bottom runs the real operators on the sample studies.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import nibabel
import pytest
import SimpleITK
import yaml

from reliability_support import tree_digest
from series_selection.common.jsonio import schema_errors
from series_selection.pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]

WRITE_LISTING = """
import os, pathlib, sys
source, target = pathlib.Path(sys.argv[1]), pathlib.Path(os.environ["LISTING"])
names = sorted(p.name for p in source.iterdir())
target.parent.mkdir(parents=True, exist_ok=True)
target.write_text(os.environ["GREETING"] + ":" + ",".join(names))
print("listed", len(names), "files")
"""

COPY_LISTING = """
import os, pathlib
text = pathlib.Path(os.environ["SOURCE"], "lists", "listing.txt").read_text()
pathlib.Path(os.environ["TARGET"], "copy.txt").write_text(text.upper())
"""

ECHO_RULES = """
import base64, os, pathlib, sys
rules = base64.b64decode(os.environ["NVIDIA_CLARA_SELECTION_RULES_BASE64"])
pathlib.Path(sys.argv[1]).write_bytes(rules)
"""

FAIL = """
import sys
print("cannot go on: the sky fell", file=sys.stderr)
sys.exit(3)
"""


def two_operators(first_program: str) -> dict[str, Any]:
    """A definition listed consumer-first, with paths in arguments and variables."""
    return {
        "api-version": "0.4.0",
        "name": "wiring",
        "operators": [
            {
                "name": "second",
                "container": {"image": "x", "tag": "1", "command": ["python3", "-c", COPY_LISTING]},
                "variables": {"SOURCE": "/in", "TARGET": "/out"},
                "input": [{"from": "first", "path": "/in"}],
                "output": [{"name": "results", "path": "/out"}],
            },
            {
                "name": "first",
                "container": {
                    "image": "x",
                    "tag": "1",
                    "command": ["python3", "-c", first_program, "/input"],
                },
                "variables": {"GREETING": "hello", "LISTING": "/output/lists/listing.txt"},
                "input": [{"path": "/input"}],
                "output": [{"path": "/output"}],
            },
        ],
    }


def run(tmp_path: Path, definition: dict[str, Any], *extra: str) -> int:
    definition_file = tmp_path / "pipeline.yaml"
    definition_file.write_text(yaml.safe_dump(definition))
    job_input = tmp_path / "job"
    job_input.mkdir(exist_ok=True)
    for name in ("b.dcm", "a.dcm"):
        (job_input / name).write_bytes(b"")
    arguments = ["run", "--pipeline", str(definition_file), "--input", str(job_input)]
    return main([*arguments, "--output", str(tmp_path / "out"), *extra])


def test_folders_and_variables_are_wired_as_the_definition_says(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, two_operators(WRITE_LISTING)) == 0

    out = tmp_path / "out"
    assert (out / "first/lists/listing.txt").read_text() == "hello:a.dcm,b.dcm"
    assert (out / "second/results/copy.txt").read_text() == "HELLO:A.DCM,B.DCM"
    assert (out / "first.log").read_text() == "listed 2 files\n"
    assert "listed 2 files" in capfd.readouterr().err

    summary = json.loads((out / "pipeline-run.json").read_text())
    assert schema_errors(summary, "pipeline-run") == []
    assert summary["status"] == "succeeded"
    assert summary["engine"] == "local"
    assert summary["input"] == str((tmp_path / "job").resolve())
    first, second = summary["operators"]
    assert (first["name"], first["status"], first["exit_code"]) == ("first", "succeeded", 0)
    assert first["log"] == "first.log"
    assert first["mounts"] == [
        {"path": "/input", "folder": str((tmp_path / "job").resolve()), "read_only": True},
        {"path": "/output", "folder": "first", "read_only": False},
    ]
    assert second["mounts"] == [
        {"path": "/in", "folder": "first", "read_only": True},
        {"path": "/out", "folder": "second/results", "read_only": False},
    ]


def test_a_new_run_keeps_the_files_no_operator_published(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert run(tmp_path, two_operators(WRITE_LISTING)) == 0
    (out / "first/mine.nii.gz").write_bytes(b"a user's file")
    (out / "unrelated.txt").write_text("kept")

    assert run(tmp_path, two_operators(WRITE_LISTING)) == 0
    assert (out / "first/mine.nii.gz").read_bytes() == b"a user's file"
    assert (out / "unrelated.txt").read_text() == "kept"


@pytest.mark.parametrize(
    ("job_input", "output"),
    [("job", "job"), ("job", "job/out"), ("out/first/dicom", "out"), ("out/job", "out")],
)
def test_overlapping_input_and_output_are_refused_before_anything_is_written(
    tmp_path: Path, job_input: str, output: str, capsys: pytest.CaptureFixture[str]
) -> None:
    definition_file = tmp_path / "pipeline.yaml"
    definition_file.write_text(yaml.safe_dump(two_operators(WRITE_LISTING)))
    (tmp_path / job_input).mkdir(parents=True)
    (tmp_path / job_input / "a.dcm").write_bytes(b"DICM")
    before = tree_digest(tmp_path)
    arguments = ["run", "--pipeline", str(definition_file), "--input", str(tmp_path / job_input)]
    assert main([*arguments, "--output", str(tmp_path / output)]) == 2
    assert "lies inside" in capsys.readouterr().err or output == job_input
    assert tree_digest(tmp_path) == before


def test_an_operator_folder_that_is_a_symbolic_link_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("kept")
    (tmp_path / "out").mkdir()
    (tmp_path / "out/first").symlink_to(elsewhere)
    assert run(tmp_path, two_operators(WRITE_LISTING)) == 5
    assert "is a symbolic link" in capsys.readouterr().err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["precious.txt"]


def test_a_failing_operator_stops_the_run_with_its_exit_code_and_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    assert run(tmp_path, two_operators(FAIL)) == 3

    out = tmp_path / "out"
    assert (out / "first.log").read_text() == "cannot go on: the sky fell\n"
    error = capfd.readouterr().err
    assert "cannot go on: the sky fell" in error
    assert "operator 'first' failed with exit code 3" in error
    assert not (out / "second").exists()
    summary = json.loads((out / "pipeline-run.json").read_text())
    assert summary["status"] == "failed"
    assert [(op["name"], op["status"], op["exit_code"]) for op in summary["operators"]] == [
        ("first", "failed", 3),
        ("second", "skipped", None),
    ]


def test_rules_reach_the_operators_as_base64(tmp_path: Path) -> None:
    definition = {
        "api-version": "0.4.0",
        "name": "rules",
        "operators": [
            {
                "name": "echo",
                "container": {
                    "image": "x",
                    "tag": "1",
                    "command": ["python3", "-c", ECHO_RULES, "/output/rules.yaml"],
                },
                "output": [{"path": "/output"}],
            }
        ],
    }
    rules = tmp_path / "rules.yaml"
    rules.write_text("selections: [{name: ct, conditions: {Modality: CT}}]\n")
    assert run(tmp_path, definition, "--rules", str(rules)) == 0
    assert (tmp_path / "out/echo/rules.yaml").read_text() == rules.read_text()


def test_bad_arguments_are_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "missing"
    assert main(["run", "--input", str(missing), "--output", str(tmp_path / "out")]) == 2
    assert f"input folder {missing} does not exist" in capsys.readouterr().err

    arguments = ["run", "--input", str(tmp_path), "--output", str(tmp_path / "out")]
    assert main([*arguments, "--rules", str(missing)]) == 2
    assert "cannot read rules file" in capsys.readouterr().err


def test_an_operator_without_command_or_program_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = two_operators(WRITE_LISTING)
    first = definition["operators"][1]
    del first["container"]["command"]
    assert run(tmp_path, definition) == 2
    assert "operator 'first' has no container.command" in capsys.readouterr().err

    definition["operators"][0]["container"]["command"] = ["no-such-program-here"]
    first["container"]["command"] = ["python3", "-c", WRITE_LISTING, "/input"]
    assert run(tmp_path, definition) == 2
    assert "program 'no-such-program-here' not found" in capsys.readouterr().err
    assert not (tmp_path / "out").exists(), "nothing runs before every program is found"


def installed(program: str) -> bool:
    return (Path(sys.executable).parent / program).exists() or shutil.which(program) is not None


needs_operators = pytest.mark.skipif(
    not all(installed(name) for name in ("dicom-parser", "series-selector", "series-report")),
    reason="the operators' console scripts are not installed (pip install -e .)",
)


@needs_operators
def test_the_shipped_pipeline_runs_locally_on_the_sample_studies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    umask = os.umask(0o022)
    try:
        assert main(["run", "--input", str(REPO / "samples"), "--output", str(out)]) == 0
    finally:
        os.umask(umask)

    assert (out / "dicom-parser/series-images.json").is_file()
    check_selected_volumes(out / "series-selector/selections")
    check_report(out / "series-report/report")
    # The run ends with the path of the page.
    assert capsys.readouterr().out.splitlines()[-1] == str(out / "series-report/report/report.html")
    # In containers the next operator may run as another user: every output must be readable.
    unreadable = [p for p in out.rglob("*") if p.is_file() and p.stat().st_mode & 0o044 != 0o044]
    assert unreadable == []


@pytest.mark.slow
@needs_operators
def test_rules_format_and_explain_given_to_the_local_run_reach_the_operators(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rules = REPO / "rules/ct-abdomen-axial.yaml"
    arguments = ["run", "--input", str(REPO / "samples"), "--rules", str(rules)]
    assert main([*arguments, "--output", str(out), "--format", "mhd", "--explain"]) == 0

    check_selected_volumes(out / "series-selector/selections")
    selected = json.loads((out / "series-selector/selections/selected-images.json").read_text())
    (selection,) = selected["selections"]
    assert selection["name"] == "CT abdomen axial"
    (chosen,) = selection["series"]
    assert chosen["SeriesDescription"] == "Portal venous 1.25mm"
    assert {image["format"] for image in chosen["images"]} == {"mhd"}
    volumes = (out / "dicom-parser/volumes").rglob("*.*")
    assert {p.suffix for p in volumes if p.is_file()} == {".mhd", ".raw"}
    # The selector's table, in its log and on the way to our standard error as it came.
    err = capsys.readouterr().err
    table_title = "Selection 'CT abdomen axial': 1 series chosen"
    assert table_title in (out / "series-selector.log").read_text()
    assert table_title in err
    # The closing line names the chosen series, its study and the report page.
    closing = err.strip().splitlines()[-1]
    assert "pipeline series-selection-pipeline succeeded: " in closing
    assert (
        f"selection 'CT abdomen axial' chose #{chosen['SeriesNumber']} 'Portal venous 1.25mm' "
        f"of study {chosen['StudyInstanceUID']}; report {out / 'series-report/report/report.html'}"
    ) in closing


@pytest.mark.slow
@needs_operators
def test_the_log_level_reaches_the_operators(tmp_path: Path) -> None:
    arguments = ["run", "--input", str(REPO / "samples")]
    assert main([*arguments, "--output", str(tmp_path / "quiet"), "--log-level", "warning"]) == 0
    assert main([*arguments, "--output", str(tmp_path / "default")]) == 0
    for operator in ("dicom-parser", "series-selector"):
        assert " INFO " not in (tmp_path / "quiet" / f"{operator}.log").read_text()
        assert " INFO " in (tmp_path / "default" / f"{operator}.log").read_text()


@pytest.mark.slow
@needs_operators
def test_a_failed_run_leaves_no_selection_of_the_previous_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    arguments = ["run", "--input", str(REPO / "samples"), "--output", str(out)]
    assert main(arguments) == 0
    impossible = tmp_path / "rules.yaml"
    impossible.write_text("selections: [{conditions: {Modality: PET}, required: true}]\n")
    assert main([*arguments, "--rules", str(impossible)]) == 4
    selections = out / "series-selector/selections"
    assert sorted(p.name for p in selections.iterdir()) == [
        ".series-selector.manifest",
        "selection-explain.json",
    ]


def check_selected_volumes(folder: Path) -> None:
    """``selected-images.json`` is valid, selects something, and each volume loads as listed."""
    selected = json.loads((folder / "selected-images.json").read_text())
    assert schema_errors(selected, "selected-images") == []
    images = [
        image
        for selection in selected["selections"]
        for series in selection["series"]
        for image in series["images"]
    ]
    assert images, "the sample studies should select at least one volume"
    for image in images:
        path = folder / image["path"]
        if image["format"] == "mhd":
            shape = list(SimpleITK.ReadImage(str(path)).GetSize())
        else:
            shape = list(nibabel.load(path).shape)
        assert shape == image["shape"], image["path"]


def test_bad_rules_are_refused_before_any_operator_runs_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("selections:\n  - conditions: {Modalty: CT}\n")
    out = tmp_path / "run"
    arguments = ["run", "--input", str(REPO / "samples"), "--output", str(out)]
    assert main([*arguments, "--rules", str(rules)]) == 2
    error = capsys.readouterr().err
    assert f"{rules}: selection 1 at $.selections[0].conditions.Modalty" in error
    assert "did you mean Modality?" in error
    assert not out.exists()


def check_report(folder: Path) -> None:
    """``report.json`` is valid, shows every series of the samples, and its pictures exist."""
    report = json.loads((folder / "report.json").read_text())
    assert schema_errors(report, "report") == []
    assert (folder / "report.html").is_file()
    series = [s for study in report["studies"] for s in study["series"]]
    assert len(series) == 6
    assert all(s["selections"] for s in series)
    pictures = [
        path for s in series for volume in s["volumes"] for path in volume["pictures"].values()
    ]
    assert pictures and all((folder / path).is_file() for path in pictures)
