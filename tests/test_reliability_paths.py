"""Hostile identifiers: volume file names come from SeriesInstanceUIDs, so UIDs holding ``../``,
``/``, NUL or 10 kB of text must not write outside the output folder, and two series must never
share a file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pydicom
import pytest

from reliability_support import (
    assert_clean_exit,
    assert_every_file_accounted_for,
    load_outputs,
    load_voxels,
    replace_value,
    run_parser,
)
from series_selection_tools.samples.synthetic import SeriesTruth, StudySpec, ct_series, write_series

SERIES_INSTANCE_UID = (0x0020, 0x000E)
SERIES_DESCRIPTION = (0x0008, 0x103E)
HOSTILE_UIDS = {
    "parent": "../../../../../../tmp/escaped",
    "absolute": "/etc/cron.d/x",
    "slashes": "1.2/3.4",
    "dot-dot": "..",
    "dot": ".",
    "spaces-and-unicode": "séries 1 ✓",
    "long-text": "x" * 10_000,
}
LONG_UIDS = ("1." * 5000 + "1", "1." * 5000 + "2")
"""10 kB UIDs of digits and dots, equal but for their last digit."""
SPLIT_UID = "1.2.826.0.1.3680043.8.498.6060"


def write_hostile_series(folder: Path, name: str, uid: str, seed: int) -> SeriesTruth:
    """A small CT series whose SeriesInstanceUID (and description) is ``uid``, byte for byte."""
    truth = write_series(folder, ct_series(slices=2, rows=8, columns=6), seed=seed)
    for path in truth.files:
        data = path.read_bytes()
        data = replace_value(data, SERIES_INSTANCE_UID, _even(uid.encode("utf-8")))
        data = replace_value(data, SERIES_DESCRIPTION, _even(f"{name} {uid}"[:64].encode()))
        path.write_bytes(data)
    return truth


def _even(value: bytes) -> bytes:
    return value + b" " if len(value) % 2 else value


def write_two_matrices(folder: Path, uid: str, seed: int) -> None:
    """A series of two matrix sizes (two volumes, labelled ``stack-N``)."""
    for rows, first in ((8, 1), (10, 51)):
        spec = ct_series(
            slices=2, rows=rows, columns=rows, series_uid=uid, first_instance_number=first
        )
        write_series(folder, spec, seed=seed)


def snapshot_outside(root: Path, out: Path) -> set[str]:
    return {p.as_posix() for p in root.rglob("*") if not p.is_relative_to(out)}


@pytest.mark.parametrize("fmt", ["nii.gz", "mhd"])
def test_hostile_series_uids_stay_inside_and_apart(tmp_path: Path, fmt: str) -> None:
    source = tmp_path / "in"
    out = tmp_path / "deep" / "out"
    truths = {
        name: write_hostile_series(source / name, name, uid, seed)
        for seed, (name, uid) in enumerate(HOSTILE_UIDS.items())
    }
    nul = write_series(source / "nul", ct_series(slices=2, rows=8, columns=6), seed=98)
    for path in nul.files:
        path.write_bytes(
            replace_value(path.read_bytes(), SERIES_INSTANCE_UID, b"1.2\x00../../nul.1")
        )
    out.parent.mkdir()
    before = snapshot_outside(tmp_path, out)

    result = run_parser(source, out, "--format", fmt, "--workers", "2")

    assert_clean_exit(result)
    assert snapshot_outside(tmp_path, out) == before, "a file was written outside the output"
    assert not Path("/tmp/escaped").exists()
    outputs = load_outputs(out)
    assert_every_file_accounted_for(outputs["parse-report.json"], source)
    images = outputs["series-images.json"]
    for name, truth in truths.items():
        uid = str(pydicom.dcmread(truth.files[0]).SeriesInstanceUID)  # as pydicom decodes it
        assert uid in images, f"{name}: no volume"
        (volume,) = images[uid]
        expected = truth.rescaled().transpose(2, 1, 0)
        voxels = load_voxels(out / volume["path"], truth.affine_lps)
        assert (voxels == expected).all(), f"{name}: wrong voxels"
    listed = [v["path"] for volumes in images.values() for v in volumes]
    assert len(set(listed)) == len(listed), "two volumes share a file"
    for path in listed:
        assert "/" not in path.removeprefix("volumes/")
        assert len(Path(path).name.encode()) <= 255
    written = {p.name for p in (out / "volumes").iterdir()}
    expected_files = {Path(p).name for p in listed}
    if fmt == "mhd":
        expected_files |= {Path(p).with_suffix(".raw").name for p in listed}
    assert written == expected_files


@pytest.mark.parametrize("twin", ["cleaned", "labelled"])
def test_volume_file_names_never_collide(tmp_path: Path, twin: str) -> None:
    source = tmp_path / "in"
    if twin == "cleaned":
        write_hostile_series(source / "a", "original", "1.2/3.4", seed=1)
        digest = hashlib.sha256(b"1.2/3.4").hexdigest()[:12]
        write_hostile_series(source / "b", "twin", f"1.2_3.4_{digest}", seed=2)
    else:
        write_two_matrices(source / "a", SPLIT_UID, seed=1)
        for seed, label in enumerate(("stack-1", "stack-2"), start=2):
            write_hostile_series(source / label, "twin", f"{SPLIT_UID}_{label}", seed=seed)

    result = run_parser(source, tmp_path / "out", "--workers", "1")

    assert_clean_exit(result)
    images = load_outputs(tmp_path / "out")["series-images.json"]
    listed = [v["path"] for volumes in images.values() for v in volumes]
    assert len(listed) == (2 if twin == "cleaned" else 4)
    assert len(set(listed)) == len(listed), "two volumes share a file"


def test_one_series_uid_in_two_studies_loses_nothing(tmp_path: Path) -> None:
    source = tmp_path / "in"
    shared_uid = "1.2.826.0.1.3680043.8.498.7070"
    truths = [
        write_series(
            source / f"study-{number}",
            ct_series(
                slices=3, rows=rows, columns=rows, series_uid=shared_uid,
                study=StudySpec(patient_id=f"P{number}", accession_number=f"A{number}"),
                first_instance_number=100 * number,  # SOPInstanceUIDs of their own
            ),
            seed=number,
        )
        for number, rows in ((1, 8), (2, 12))
    ]  # fmt: skip

    result = run_parser(source, tmp_path / "out", "--workers", "1")

    assert_clean_exit(result)
    outputs = load_outputs(tmp_path / "out")
    report = outputs["parse-report.json"]
    assert [s["volumes"] for s in report["series"]] == [1, 1]
    listed = [v for volumes in outputs["series-images.json"].values() for v in volumes]
    assert report["summary"]["volumes"] == len(listed) == 2
    shapes = sorted(tuple(v["shape"]) for v in listed)
    assert shapes == sorted(t.rescaled().transpose(2, 1, 0).shape for t in truths)


def test_very_long_series_uids_get_short_distinct_names(tmp_path: Path) -> None:
    source = tmp_path / "in"
    for seed, uid in enumerate(LONG_UIDS):
        write_hostile_series(source / str(seed), "long", uid, seed=seed)

    result = run_parser(source, tmp_path / "out", "--workers", "1")

    assert_clean_exit(result)
    images = load_outputs(tmp_path / "out")["series-images.json"]
    names = {Path(images[uid][0]["path"]).name for uid in LONG_UIDS}
    assert len(names) == 2
    assert all(len(name.encode()) <= 255 for name in names)
