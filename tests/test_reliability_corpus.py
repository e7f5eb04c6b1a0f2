"""A corpus of hostile input mixed with good series: the run completes, every file is accounted
for with a reason, every good series is still converted exactly, and nothing prints a traceback."""

from __future__ import annotations

import io
import os
import random
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

from reliability_support import (
    assert_clean_exit,
    assert_every_file_accounted_for,
    explicit_element,
    insert_element,
    load_outputs,
    load_voxels,
    replace_value,
    run_parser,
)
from series_selection.parser.cli import main
from series_selection_tools.samples.synthetic import (
    SeriesTruth,
    StudySpec,
    ct_series,
    mr_series,
    write_series,
)

UNDEFINED = 0xFFFFFFFF
ITEM, ITEM_END, SEQUENCE_END = (0xFFFE, 0xE000), (0xFFFE, 0xE00D), (0xFFFE, 0xE0DD)
CONTENT_SEQUENCE = (0x0040, 0xA730)
ROWS = (0x0028, 0x0010)


@dataclass(frozen=True)
class Hostile:
    """A hostile file (or link, or pipe) and what its report entry must say."""

    make: Callable[[Path, Path], None]
    """Writes the entry at its path (second argument) from a donor file (first argument)."""
    status: str | None = None
    reason: str | None = None
    series_reason: str | None = None
    """For files that are read: what the report must say about their series."""
    bug: str | None = None
    """A known bug this entry shows: its own test is an expected failure, and the mixed corpus
    leaves it out until the bug is fixed."""


def donor_variant(donor: Path, name: str) -> bytes:
    """The donor file re-identified as the only instance of a series of its own."""
    dataset = pydicom.dcmread(donor)
    uid = pydicom.uid.generate_uid(prefix=None, entropy_srcs=["reliability", name])
    dataset.SeriesInstanceUID = uid
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = UID(f"{uid}.1")
    dataset.SeriesDescription = name
    buffer = pydicom.filebase.DicomBytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def writes(transform: Callable[[bytes], bytes]) -> Callable[[Path, Path], None]:
    """A maker writing ``transform`` of a re-identified donor."""

    def make(donor: Path, path: Path) -> None:
        path.write_bytes(transform(donor_variant(donor, path.name)))

    return make


def set_transfer_syntax(uid: str | None) -> Callable[[bytes], bytes]:
    """Claim another transfer syntax in the file meta (``None``: drop it), body unchanged."""

    def transform(data: bytes) -> bytes:
        tag = struct.pack("<HH", 0x0002, 0x0010)
        at = data.index(tag)
        (length,) = struct.unpack_from("<H", data, at + 6)
        new = b"" if uid is None else explicit_element((0x0002, 0x0010), b"UI", _even(uid))
        data = data[:at] + new + data[at + 8 + length :]
        group_length_at = data.index(struct.pack("<HH", 0x0002, 0x0000)) + 8
        (group_length,) = struct.unpack_from("<I", data, group_length_at)
        fixed = struct.pack("<I", group_length + len(new) - 8 - length)
        return data[:group_length_at] + fixed + data[group_length_at + 4 :]

    return transform


def _even(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b"\0" if len(raw) % 2 else raw


def set_value(tag: tuple[int, int], value: bytes) -> Callable[[bytes], bytes]:
    return lambda data: replace_value(data, tag, value)


def lie_about_length(tag: tuple[int, int], length: int) -> Callable[[bytes], bytes]:
    """State ``length`` for the short-length element ``tag``, leaving its value as it was."""

    def transform(data: bytes) -> bytes:
        at = data.index(struct.pack("<HH", *tag))
        return data[: at + 6] + struct.pack("<H", length) + data[at + 8 :]

    return transform


def nested_sequences(depth: int) -> bytes:
    """``depth`` content sequences, each the only item of the one above (undefined lengths)."""
    opening = explicit_element(CONTENT_SEQUENCE, b"SQ", b"", UNDEFINED) + struct.pack(
        "<HHI", *ITEM, UNDEFINED
    )
    closing = struct.pack("<HHI", *ITEM_END, 0) + struct.pack("<HHI", *SEQUENCE_END, 0)
    return opening * depth + closing * depth


def long_sequence(items: int) -> bytes:
    """One content sequence of ``items`` small items."""
    item_value = explicit_element((0x0008, 0x0100), b"SH", b"T-0001")
    item = struct.pack("<HHI", *ITEM, len(item_value)) + item_value
    body = item * items
    return explicit_element(CONTENT_SEQUENCE, b"SQ", body)


def write_bytes(data: bytes) -> Callable[[Path, Path], None]:
    def make(donor: Path, path: Path) -> None:
        path.write_bytes(data)

    return make


def cut(keep: Callable[[bytes], int]) -> Callable[[Path, Path], None]:
    def make(donor: Path, path: Path) -> None:
        data = donor.read_bytes()
        path.write_bytes(data[: keep(data)])

    return make


def symlink(target: str) -> Callable[[Path, Path], None]:
    return lambda donor, path: path.symlink_to(target)


def fifo(donor: Path, path: Path) -> None:
    os.mkfifo(path)


def dicomdir(donor: Path, path: Path) -> None:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    dataset.file_meta.MediaStorageSOPInstanceUID = UID("1.2.826.0.1.3680043.8.498.7701")
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.FileSetID = "HOSTILE"
    dataset.DirectoryRecordSequence = []
    dataset.save_as(path, enforce_file_format=True)


def without_geometry(donor: Path, path: Path) -> None:
    dataset = pydicom.dcmread(io.BytesIO(donor_variant(donor, path.name)))
    del dataset.ImagePositionPatient, dataset.ImageOrientationPatient
    dataset.save_as(path, enforce_file_format=True)


RANDOM_BYTES = random.Random(7).randbytes(4096)
HOSTILE: dict[str, Hostile] = {
    "empty": Hostile(write_bytes(b""), "skipped", "empty file"),
    "random-bytes": Hostile(write_bytes(RANDOM_BYTES), "skipped", "not DICOM"),
    "notes.txt": Hostile(write_bytes("Befund: unauffällig\n".encode()), "skipped", "not DICOM"),
    "group-8-then-noise": Hostile(write_bytes(b"\x08\x00" + RANDOM_BYTES), "skipped"),
    "DICM-only": Hostile(write_bytes(bytes(128) + b"DICM"), "skipped"),
    "header-cut": Hostile(cut(lambda data: 400), "skipped"),
    "meta-only": Hostile(cut(lambda data: data.index(b"\x08\x00\x05\x00")), "skipped"),
    "pixels-cut": Hostile(cut(lambda data: len(data) - 333), "skipped", "truncated"),
    "pixels-tag-cut": Hostile(
        cut(lambda data: data.rindex(b"\xe0\x7f\x10\x00") + 6),
        "skipped",
        "truncated",
    ),
    "no-preamble-noise": Hostile(cut(lambda data: 100), "skipped"),
    "transfer-syntax-missing": Hostile(writes(set_transfer_syntax(None))),
    "transfer-syntax-implicit": Hostile(writes(set_transfer_syntax("1.2.840.10008.1.2"))),
    "transfer-syntax-big-endian": Hostile(writes(set_transfer_syntax("1.2.840.10008.1.2.2"))),
    "transfer-syntax-deflated": Hostile(writes(set_transfer_syntax("1.2.840.10008.1.2.1.99"))),
    "transfer-syntax-jpeg": Hostile(
        writes(set_transfer_syntax("1.2.840.10008.1.2.4.50")),
        "used",
        series_reason="pixel data",
    ),
    "transfer-syntax-unknown": Hostile(writes(set_transfer_syntax("1.2.3.4.5.6.7"))),
    "length-past-end": Hostile(writes(lie_about_length((0x0008, 0x103E), 0xFFF0))),
    # A Rows length of 3 shifts every element after it: the misread tail runs off the file.
    "length-odd-rows": Hostile(
        writes(lie_about_length((0x0028, 0x0010), 3)), "skipped", "truncated"
    ),
    "length-zero-uid": Hostile(writes(lie_about_length((0x0020, 0x000E), 0))),
    "length-huge-un": Hostile(
        writes(
            lambda data: insert_element(
                data, explicit_element((0x0029, 0x1010), b"UN", b"\0" * 8, 0x00FFFFF0)
            )
        ),
        "skipped",
        "truncated",
    ),
    "nested-5000-deep": Hostile(writes(lambda data: insert_element(data, nested_sequences(5000)))),
    "nested-50-deep": Hostile(
        writes(lambda data: insert_element(data, nested_sequences(50))), "used"
    ),
    "sequence-50000-items": Hostile(
        writes(lambda data: insert_element(data, long_sequence(50_000))), "used"
    ),
    "position-nan": Hostile(
        writes(set_value((0x0020, 0x0032), b"nan\\0\\0 ")),
        "used",
        series_reason="ImagePosition",
    ),
    "position-inf": Hostile(
        writes(set_value((0x0020, 0x0032), b"inf\\-inf\\0 ")),
        "used",
        series_reason="ImagePosition",
    ),
    "spacing-nan": Hostile(
        writes(set_value((0x0028, 0x0030), b"NaN\\1 ")),
        "used",
        series_reason="PixelSpacing",
    ),
    "position-words": Hostile(
        writes(set_value((0x0020, 0x0032), b"left\\up\\in")), "used", series_reason="Image"
    ),
    "geometry-missing": Hostile(without_geometry, "used", series_reason="geometry"),
    "charset-unknown": Hostile(
        writes(
            lambda data: replace_value(
                set_value((0x0008, 0x0005), b"ISO_IR 999")(data),
                (0x0010, 0x0010),
                b"M\xfcller^J\xe9r\xf4me",
            )
        ),
        "used",
    ),
    "charset-utf8-broken": Hostile(
        writes(
            lambda data: replace_value(
                set_value((0x0008, 0x0005), b"ISO_IR 192")(data),
                (0x0008, 0x103E),
                b"\xc3\x28\xa0\xa1\xff\xfe",
            )
        ),
        "used",
    ),
    "charset-2022-broken-escape": Hostile(
        writes(
            lambda data: replace_value(
                set_value((0x0008, 0x0005), b"\\ISO 2022 IR 87")(data),
                (0x0010, 0x0010),
                b"Yamada^\x1b$B;3ED\x1b(\x1b$",
            )
        ),
        "used",
    ),
    "frames-claimed-1000": Hostile(
        writes(
            lambda data: insert_element(
                data, explicit_element((0x0028, 0x0008), b"IS", b"1000"), before=ROWS
            )
        ),
        "skipped",
        "truncated",
    ),
    "DICOMDIR": Hostile(dicomdir, "skipped", "DICOMDIR"),
    "fifo": Hostile(fifo, "skipped", "not a regular file"),
    "link-to-file": Hostile(lambda donor, path: path.symlink_to(donor), "skipped", "symbolic link"),
    "link-to-good-folder": Hostile(symlink("../good"), "skipped", "symbolic link"),
    "link-outside": Hostile(symlink("/etc/passwd"), "skipped", "symbolic link"),
    "link-dangling": Hostile(symlink("does-not-exist"), "skipped", "symbolic link"),
    "link-loop-a": Hostile(symlink("link-loop-b"), "skipped", "symbolic link"),
    "link-loop-b": Hostile(symlink("link-loop-a"), "skipped", "symbolic link"),
    "link-to-parent-folder": Hostile(symlink(".."), "skipped", "symbolic link"),
}


@pytest.fixture(scope="module")
def donor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small valid one-slice CT file that hostile entries are made from."""
    folder = tmp_path_factory.mktemp("donor")
    return write_series(folder, ct_series(rows=16, columns=12, slices=1), seed=14).files[0]


SLOW_TO_MAKE = {"sequence-50000-items"}
"""Entries whose own test takes seconds: the slow run checks them (and the mixed corpus)."""


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(name, marks=pytest.mark.xfail(reason=hostile.bug, strict=True))
        if hostile.bug
        else pytest.param(name, marks=pytest.mark.slow)
        if name in SLOW_TO_MAKE
        else name
        for name, hostile in HOSTILE.items()
    ],
)
def test_hostile_entry_is_reported(
    tmp_path: Path, donor: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hostile = HOSTILE[name]
    source = tmp_path / "in"
    source.mkdir()
    hostile.make(donor, source / name)

    code = main(["--input", str(source), "--output", str(tmp_path / "out"), "--workers", "1"])

    assert "Traceback" not in capsys.readouterr().err
    assert code == 0
    outputs = load_outputs(tmp_path / "out")
    report = outputs["parse-report.json"]
    (record,) = assert_every_file_accounted_for(report, source).values()
    if hostile.status:
        assert record["status"] == hostile.status, record.get("reason")
    if hostile.reason:
        assert hostile.reason in record["reason"]
    if hostile.series_reason:
        (series,) = report["series"]
        assert hostile.series_reason in series["reason"]
        assert outputs["series-images.json"] == {}


@dataclass(frozen=True)
class Corpus:
    source: Path
    good: dict[str, list[SeriesTruth]]
    """Each good series' truth: one per volume it must become."""


def write_corpus(root: Path, donor: Path) -> Corpus:
    """Good series (one without preambles, one of two matrix sizes) and the hostile entries."""
    source = root / "in"
    other_study = StudySpec(patient_id="P2", accession_number="A2")
    split_uid = "1.2.826.0.1.3680043.8.498.5151"
    good = {
        "ct": [write_series(source / "good" / "ct", ct_series(slices=6), seed=11)],
        "mr": [write_series(source / "mr", mr_series(slices=5, study=other_study), seed=12)],
        "no-preamble": [write_series(source / "raw", ct_series(slices=4), seed=13)],
        "two-sizes": [
            write_series(
                source / "sizes",
                ct_series(
                    slices=4,
                    rows=rows,
                    columns=rows,
                    series_uid=split_uid,
                    first_instance_number=first,
                ),
                seed=15,
            )
            for rows, first in ((24, 1), (40, 101))
        ],
    }
    for path in good["no-preamble"][0].files:
        path.write_bytes(path.read_bytes()[128 + 4 :])
    (source / "bad").mkdir()
    for name, hostile in HOSTILE.items():
        if not hostile.bug:
            hostile.make(donor, source / "bad" / name)
    # A repeated SOPInstanceUID with other pixels, sorted after the good file: a duplicate.
    repeat = pydicom.dcmread(good["ct"][0].files[0])
    repeat.PixelData = bytes(len(repeat.PixelData))
    repeat.save_as(source / "zz-same-uid-other-pixels", enforce_file_format=True)
    # A folder named like a file, holding a file named like a folder.
    (source / "IM0001.dcm").mkdir()
    (source / "IM0001.dcm" / "series").write_bytes(donor_variant(donor, "nested-name"))
    return Corpus(source, good)


@pytest.mark.slow
def test_hostile_corpus_leaves_good_series_intact(tmp_path: Path, donor: Path) -> None:
    corpus = write_corpus(tmp_path, donor)
    out = tmp_path / "out"

    result = run_parser(corpus.source, out, "--workers", "2", "--log-format", "json")

    assert_clean_exit(result)
    outputs = load_outputs(out)
    report = outputs["parse-report.json"]
    files = assert_every_file_accounted_for(report, corpus.source)
    assert files["zz-same-uid-other-pixels"]["status"] == "duplicate"
    assert "different content" in files["zz-same-uid-other-pixels"]["reason"]
    series = {s["SeriesInstanceUID"]: s for s in report["series"]}
    for truths in corpus.good.values():
        uid = truths[0].series_uid
        assert "reason" not in series[uid]
        volumes = {tuple(v["shape"]): v for v in outputs["series-images.json"][uid]}
        assert len(volumes) == len(truths)
        for truth in truths:
            expected = truth.rescaled().transpose(2, 1, 0)
            voxels = load_voxels(out / volumes[expected.shape]["path"], truth.affine_lps)
            assert np.array_equal(voxels, expected)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_reported(tmp_path: Path) -> None:
    truth = write_series(tmp_path / "in", ct_series(slices=3), seed=5)
    locked = tmp_path / "in" / "locked"
    locked.write_bytes(truth.files[0].read_bytes())
    locked.chmod(0)
    try:
        result = run_parser(tmp_path / "in", tmp_path / "out")
    finally:
        locked.chmod(0o600)
    assert_clean_exit(result)
    report = load_outputs(tmp_path / "out")["parse-report.json"]
    files = assert_every_file_accounted_for(report, tmp_path / "in")
    assert files["locked"]["status"] == "skipped"
    assert files["locked"]["reason"] == "unreadable: permission denied"
