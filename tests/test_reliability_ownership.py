"""A run deletes only what it provably wrote, never writes or deletes through a symbolic link,
refuses overlapping folders before touching anything, and never passes a lost series off as
success."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from reliability_support import (
    assert_clean_exit,
    load_outputs,
    parser_command,
    parser_environment,
    run_parser,
    tree_digest,
)
from series_selection_tools.samples.synthetic import ct_series, mr_series, write_series

MANIFEST = ".dicom-parser.manifest"


@pytest.fixture
def parsed(tmp_path: Path) -> Path:
    """``tmp_path/out``: the parser's output of two series; precious files in ``elsewhere``."""
    write_series(tmp_path / "in" / "ct", ct_series(slices=3), seed=1)
    write_series(tmp_path / "in" / "mr", mr_series(slices=2), seed=2)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "precious.nii.gz").write_bytes(b"not ours")
    assert_clean_exit(run_parser(tmp_path / "in", tmp_path / "out"))
    return tmp_path / "out"


def outside(tmp_path: Path) -> dict[str, str]:
    """Everything around the output folder."""
    return {k: v for k, v in tree_digest(tmp_path).items() if not k.startswith("out/")}


def a_volume(out: Path) -> str:
    return sorted(p.name for p in (out / "volumes").iterdir())[0]


@pytest.mark.parametrize(
    "entry",
    [
        "volumes",
        ".dicom-parser.staging",
        MANIFEST,
        ".dicom-parser.publishing",
        "series-images.json",
        "parse-report.json",
        "volumes/{volume}",
    ],
)
def test_a_symbolic_link_in_the_output_leads_nowhere(
    parsed: Path, tmp_path: Path, entry: str
) -> None:
    target = tmp_path / "elsewhere"
    path = parsed / entry.format(volume=a_volume(parsed))
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
        target = target / "precious.nii.gz"
    path.symlink_to(target)
    before = outside(tmp_path)

    result = run_parser(tmp_path / "in", parsed)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 5), result.stderr
    assert outside(tmp_path) == before
    if result.returncode == 0:
        load_outputs(parsed)
    else:
        assert "is a symbolic link" in result.stderr


def test_a_doctored_manifest_deletes_nothing_outside(parsed: Path, tmp_path: Path) -> None:
    precious = tmp_path / "elsewhere" / "precious.nii.gz"
    (parsed / MANIFEST).write_text(
        f"../elsewhere/precious.nii.gz\n{precious}\nvolumes/../../elsewhere/precious.nii.gz\n"
        "volumes\\..\\..\\elsewhere\\precious.nii.gz\n\n"
    )
    before = outside(tmp_path)
    assert_clean_exit(run_parser(tmp_path / "in", parsed))
    assert outside(tmp_path) == before
    load_outputs(parsed)


def test_files_a_user_put_in_the_output_survive_a_rerun(parsed: Path, tmp_path: Path) -> None:
    mine = [parsed / "volumes" / "mine.nii.gz", parsed / "notes.txt", parsed / "volumes.nii.gz"]
    for path in mine:
        path.write_bytes(b"a user's file")
    assert_clean_exit(run_parser(tmp_path / "in", parsed, "--format", "mhd"))
    assert all(path.read_bytes() == b"a user's file" for path in mine)
    listed = {v["path"] for vs in load_outputs(parsed)["series-images.json"].values() for v in vs}
    on_disk = {f"volumes/{p.name}" for p in (parsed / "volumes").iterdir()}
    assert on_disk - {"volumes/mine.nii.gz"} == listed | {p[:-4] + ".raw" for p in listed}


@pytest.mark.parametrize(
    ("source", "output"),
    [("out/volumes", "out"), ("out", "out"), ("out", "out/again"), ("in", "in/out")],
)
def test_overlapping_folders_are_refused_before_anything_is_touched(
    parsed: Path, tmp_path: Path, source: str, output: str
) -> None:
    before = tree_digest(tmp_path)
    result = run_parser(tmp_path / source, tmp_path / output)
    assert_clean_exit(result, code=2)
    assert "input" in result.stderr and "output" in result.stderr
    assert tree_digest(tmp_path) == before


@pytest.mark.slow
def test_a_volume_that_cannot_be_written_fails_the_run_and_keeps_the_previous_outputs(
    tmp_path: Path,
) -> None:
    """Writing beyond 1 MiB fails (RLIMIT_FSIZE) as on a full disk: the headers fit, the 5 MiB
    volume does not. The run exits 5 and the outputs of the run before are left whole."""
    write_series(tmp_path / "in", ct_series(slices=40, rows=256, columns=256), seed=5)
    assert_clean_exit(run_parser(tmp_path / "in", tmp_path / "out", "--format", "nii"))
    before = tree_digest(tmp_path / "out")
    flags = ("--format", "nii", "--workers", "1")
    result = run_parser(tmp_path / "in", tmp_path / "out", *flags, file_size_limit=1 << 20)
    assert_clean_exit(result, code=5)
    assert "cannot write" in result.stderr and ".nii" in result.stderr
    assert tree_digest(tmp_path / "out") == before


def without_root_privileges() -> list[str]:
    """A command prefix that runs without the capabilities that let root read anything."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv (util-linux) to drop capabilities")
    return ["setpriv", "--inh-caps=-all", "--bounding-set=-all"]


def test_an_unreadable_folder_is_in_the_report(tmp_path: Path) -> None:
    source = tmp_path / "in"
    write_series(source / "readable", ct_series(slices=2), seed=1)
    write_series(source / "locked" / "inner", mr_series(slices=2), seed=2)
    (source / "locked").chmod(0)
    try:
        result = subprocess.run(
            [*without_root_privileges(), *parser_command(source, tmp_path / "out")],
            env=parser_environment(),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        (source / "locked").chmod(0o755)
    assert_clean_exit(result)
    report = load_outputs(tmp_path / "out")["parse-report.json"]
    files = {f["path"]: f for f in report["files"]}
    assert files["locked"]["status"] == "skipped"
    assert "folder not readable" in files["locked"]["reason"]
    readable = {p for p in files if p.startswith("readable/")}
    assert len(readable) == 2 and all(files[p]["status"] == "used" for p in readable)
    assert report["summary"]["files"] == 3
