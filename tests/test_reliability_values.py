"""Values the standard allows but no scanner writes, file names of any bytes, files that vanish
during the run: each becomes a reported reason, never a traceback, a lost run or a wrong volume."""

from __future__ import annotations

import io
import json
import logging
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pydicom
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reliability_support import (
    assert_every_file_accounted_for,
    entries_on_disk,
    insert_element,
    load_outputs,
    replace_value,
)
from series_selection.parser.cli import main
from series_selection.parser.dicom_json import MAX_SEQUENCE_DEPTH, TOO_DEEP
from series_selection.pipeline.cli import main as pipeline
from series_selection.selector.cli import main as selector
from series_selection_tools.fidelity.worldspace import in_grid_of, load_volume
from series_selection_tools.samples.synthetic import ct_series, write_series
from test_reliability_corpus import nested_sequences

SLICES = 3
SLICE_CHOICES = [tuple(range(SLICES)), *((index,) for index in range(SLICES))]
"""A value goes into every slice, or into one."""
GEOMETRY_LIMIT_MM = 1e6


class Files(list[bytes]):
    """Files as bytes, shown briefly in a failing example; ``grid``: their series' LPS affine."""

    grid: npt.NDArray[np.float64]

    def __repr__(self) -> str:
        return f"<{len(self)} files>"


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """The files of a small three-slice CT series, as bytes."""
    folder = tmp_path_factory.mktemp("series")
    truth = write_series(folder, ct_series(rows=6, columns=5, slices=SLICES), seed=3)
    files = Files(path.read_bytes() for path in truth.files)
    files.grid = truth.affine_lps
    return files


def parse(source: Path, out: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run the parser in this process; it must exit 0 without a traceback."""
    code = main(["--input", str(source), "--output", str(out), "--workers", "1"])
    assert "Traceback" not in capsys.readouterr().err
    assert code == 0
    return load_outputs(out)


def padded(text: str) -> bytes:
    raw = text.encode("ascii")
    return raw + b" " if len(raw) % 2 else raw


# Numbers: anything a decimal or integer string can hold, in the values geometry and
# rescale are made of.

FLOATS = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [1e300, -1e300, 1e-300, 5e-324, 1e6, 1.0000001e6, 1e-7, 0.0]
)
LONG_DECIMALS = st.integers(min_value=10**100, max_value=10**400).map(str) | st.integers(
    min_value=10**100, max_value=10**400
).map(lambda n: f"-{n}.{n}")
NUMBERS = FLOATS.map(repr) | LONG_DECIMALS | st.sampled_from(["1e999", "-1e999", "nan", ""])
FIELDS = {
    "ImagePositionPatient": ((0x0020, 0x0032), 3),
    "PixelSpacing": ((0x0028, 0x0030), 2),
    "SliceThickness": ((0x0018, 0x0050), 1),
    "RescaleSlope": ((0x0028, 0x1053), 1),
    "RescaleIntercept": ((0x0028, 0x1052), 1),
}
INTEGER_FIELDS = {
    "SeriesNumber": (0x0020, 0x0011),
    "InstanceNumber": (0x0020, 0x0013),
    "AcquisitionNumber": (0x0020, 0x0012),
}


@st.composite
def hostile_values(draw: st.DrawFn) -> tuple[tuple[int, int], bytes]:
    """An element of a file and a hostile value for it."""
    if draw(st.booleans()):
        tag, count = FIELDS[draw(st.sampled_from(sorted(FIELDS)))]
        values = [draw(NUMBERS) for _ in range(count)]
        return tag, padded("\\".join(values))
    tag = INTEGER_FIELDS[draw(st.sampled_from(sorted(INTEGER_FIELDS)))]
    return tag, padded(draw(LONG_DECIMALS | st.integers().map(str)))


def finite_geometry(volume: dict[str, Any]) -> bool:
    numbers = [*volume["spacing"], *volume["origin"]]
    return all(math.isfinite(n) and abs(n) <= 2 * GEOMETRY_LIMIT_MM for n in numbers)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # a numpy overflow must not slip through
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@example(changes=[((2,), ((0x0020, 0x0011), padded("9" * 310)))])  # its volume's label clashed
@example(changes=[((0,), ((0x0020, 0x0032), padded("0.0\\1000000.0\\0.0")))])  # a 1e6-row grid
@given(changes=st.lists(st.tuples(st.sampled_from(SLICE_CHOICES), hostile_values()), max_size=3))
def test_hostile_numbers_are_refused_with_a_reason(
    tmp_path_factory: pytest.TempPathFactory,
    series: list[bytes],
    changes: list[tuple[tuple[int, ...], tuple[tuple[int, int], bytes]]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path_factory.mktemp("numbers")
    files = list(series)
    for slices, (tag, value) in changes:
        for index in slices:
            files[index] = replace_value(files[index], tag, value)
    (root / "in").mkdir()
    for index, data in enumerate(files):
        (root / "in" / f"slice-{index}").write_bytes(data)

    outputs = parse(root / "in", root / "out", capsys)

    report = outputs["parse-report.json"]
    assert_every_file_accounted_for(report, root / "in")
    for entry in report["series"]:
        assert entry["volumes"] or entry["reason"]
        assert "conversion failed" not in entry.get("reason", ""), entry["reason"]
    for volumes in outputs["series-images.json"].values():
        assert all(finite_geometry(volume) for volume in volumes)


@pytest.mark.parametrize(
    ("tag", "value", "reason"),
    [
        ((0x0020, 0x0032), "1e300\\0\\0", "ImagePositionPatient is out of range"),
        ((0x0020, 0x0032), "1" * 300 + "\\0\\0", "ImagePositionPatient is out of range"),
        ((0x0028, 0x0030), "1e300\\1e300", "PixelSpacing is out of range"),
        ((0x0028, 0x0030), "1e-300\\1e-300", "PixelSpacing must be at least"),
    ],
)
def test_a_geometry_value_beyond_any_scanner_is_a_reason(
    tmp_path: Path,
    series: list[bytes],
    tag: tuple[int, int],
    value: str,
    reason: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "in").mkdir()
    for index, data in enumerate(series):
        (tmp_path / "in" / f"{index}.dcm").write_bytes(replace_value(data, tag, padded(value)))
    (entry,) = parse(tmp_path / "in", tmp_path / "out", capsys)["parse-report.json"]["series"]
    assert entry["volumes"] == 0
    assert reason in entry["reason"]
    assert len(entry["reason"]) < 500


# File names: any bytes but "/" and NUL, up to the 255 a name may have.

NAMES = st.binary(min_size=1, max_size=255).filter(
    lambda name: b"/" not in name and b"\0" not in name and name not in (b".", b"..")
) | st.sampled_from([b"DICOM\\IM0001", b"..\\..\\x", b"caf\xe9.dcm", b"\xff" * 255, b"n" * 255])


def shown(name: bytes) -> str:
    """How the outputs name a file: its UTF-8 name, each byte that is not UTF-8 as ``\\xHH``."""
    return name.decode("utf-8", "backslashreplace")


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(NAMES, min_size=SLICES, max_size=SLICES, unique_by=shown))
def test_files_of_any_name_are_used_and_reported(
    tmp_path_factory: pytest.TempPathFactory,
    series: list[bytes],
    names: list[bytes],
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = tmp_path_factory.mktemp("names")
    source = root / "in"
    (source / "sub").mkdir(parents=True)
    for index, (name, data) in enumerate(zip(names, series, strict=True)):
        folder = source / "sub" if index else source
        (folder / os.fsdecode(name)).write_bytes(data)

    outputs = parse(source, root / "out", capsys)

    for name in outputs:  # strict UTF-8, readable by any JSON parser
        (root / "out" / name).read_bytes().decode("utf-8")
    report = outputs["parse-report.json"]
    paths = {shown(os.fsencode(path)) for path in entries_on_disk(source)}
    assert {f["path"] for f in report["files"]} == paths
    assert {f["status"] for f in report["files"]} == {"used"}
    (volumes,) = outputs["series-images.json"].values()
    assert volumes[0]["shape"][2] == SLICES
    instances = outputs["dicom-metadata.json"]["studies"][0]["series"][0]["instances"]
    assert {i["path"] for i in instances} == paths


# Files that vanish while the parser runs.


class DeleteAt(logging.Handler):
    """Deletes ``files`` when the run logs a message starting with ``stage``: a moment of
    the real run, not a stand-in for it."""

    def __init__(self, stage: str, files: list[Path]) -> None:
        super().__init__()
        self.stage = stage
        self.files = files

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith(self.stage):
            for path in self.files:
                path.unlink(missing_ok=True)


@pytest.mark.parametrize("stage", ["found", "writing dicom-metadata.json"])
@pytest.mark.parametrize("which", ["a slice", "a duplicate", "the kept file of a duplicate"])
def test_a_file_that_vanishes_during_the_run_is_reported(
    tmp_path: Path, series: list[bytes], stage: str, which: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for index, data in enumerate(series):
        (source / f"{index}.dcm").write_bytes(data)
    (source / "copy.dcm").write_bytes(series[0])  # a duplicate of 0.dcm
    vanishing = {
        "a slice": "1.dcm",
        "a duplicate": "copy.dcm",
        "the kept file of a duplicate": "0.dcm",
    }
    handler = DeleteAt(stage, [source / vanishing[which]])
    logging.getLogger("series_selection.parser").addHandler(handler)
    try:
        code = main(["--input", str(source), "--output", str(tmp_path / "out"), "--workers", "1"])
    finally:
        logging.getLogger("series_selection.parser").removeHandler(handler)

    assert "Traceback" not in capsys.readouterr().err
    assert code == 0
    report = load_outputs(tmp_path / "out")["parse-report.json"]
    files = {f["path"]: f for f in report["files"]}
    assert set(files) == {"0.dcm", "1.dcm", "2.dcm", "copy.dcm"}
    gone = files[vanishing[which]]
    reasons = [gone.get("reason", ""), *(s.get("reason", "") for s in report["series"])]
    assert any("No such file" in reason for reason in reasons), reasons
    assert not any(str(tmp_path) in reason for reason in reasons), "a reason names the full path"


# Pixel data that does not fit its header.


def pixel_variant(data: bytes, change: Callable[[pydicom.Dataset], None]) -> bytes:
    """``data`` changed by ``change``, as the only instance of a series of its own."""
    dataset = pydicom.dcmread(io.BytesIO(data))
    dataset.SeriesInstanceUID = pydicom.uid.generate_uid()
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = (
        pydicom.uid.generate_uid()
    )
    change(dataset)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def longer_pixel_data(dataset: pydicom.Dataset) -> None:
    dataset.PixelData = dataset.PixelData * 2


def no_frame_count(dataset: pydicom.Dataset) -> None:
    dataset.Rows = 3  # half the image: the pixel data holds twice that


@pytest.mark.parametrize("change", [longer_pixel_data, no_frame_count])
def test_pixel_data_longer_than_its_header_says_is_a_reason(
    tmp_path: Path,
    series: list[bytes],
    change: Callable[[pydicom.Dataset], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "odd.dcm").write_bytes(pixel_variant(series[0], change))
    (entry,) = parse(tmp_path / "in", tmp_path / "out", capsys)["parse-report.json"]["series"]
    assert entry["volumes"] == 0
    expected = 30 * 2 if change is longer_pixel_data else 15 * 2
    assert entry["reason"] == (
        f"odd.dcm: pixel data holds {2 * expected} bytes where its header describes {expected}"
    )


@pytest.mark.parametrize(
    ("keyword", "bits"), [("FloatPixelData", 32), ("DoubleFloatPixelData", 64)]
)
def test_float_pixel_data_keeps_its_fractions(
    tmp_path: Path, series: list[bytes], keyword: str, bits: int, capsys: pytest.CaptureFixture[str]
) -> None:
    values = np.linspace(-2.5, 2.5, SLICES * 30, dtype=f"<f{bits // 8}").reshape(SLICES, 6, 5)
    uid = pydicom.uid.generate_uid()

    def floats(index: int) -> Callable[[pydicom.Dataset], None]:
        def change(dataset: pydicom.Dataset) -> None:
            del dataset.PixelData
            dataset.SeriesInstanceUID = uid
            dataset.BitsAllocated = dataset.BitsStored = bits
            dataset.HighBit = bits - 1
            setattr(dataset, keyword, values[index].tobytes())

        return change

    (tmp_path / "in").mkdir()
    for index, data in enumerate(series):
        (tmp_path / "in" / f"{index}.dcm").write_bytes(pixel_variant(data, floats(index)))
    outputs = parse(tmp_path / "in", tmp_path / "out", capsys)
    (volumes,) = outputs["series-images.json"].values()
    image = load_volume(tmp_path / "out" / volumes[0]["path"])
    on_grid = in_grid_of(image, series.grid)
    assert np.array_equal(on_grid, values.transpose(2, 1, 0).astype(float) - 1024)


# Sequences nested deep: refused past a depth the JSON writers and readers handle.


@pytest.mark.parametrize(
    ("depth", "used"), [(MAX_SEQUENCE_DEPTH - 1, True), (180, False), (5000, False)]
)
def test_deeply_nested_sequences_are_read_or_refused(
    tmp_path: Path, series: list[bytes], depth: int, used: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "in").mkdir()
    nested = insert_element(pixel_variant(series[0], lambda dataset: None), nested_sequences(depth))
    (tmp_path / "in" / "nested.dcm").write_bytes(nested)
    (record,) = parse(tmp_path / "in", tmp_path / "out", capsys)["parse-report.json"]["files"]
    if used:
        assert record["status"] == "used"
        assert selector(["--input", str(tmp_path / "out"), "--output", str(tmp_path / "sel")]) == 0
    else:
        assert record["reason"] == f"malformed DICOM header: {TOO_DEEP}"


# The whole pipeline: one hostile file among good ones.

HOSTILE_FILES: dict[str, tuple[bytes, tuple[int, int], str]] = {
    "spacing 1e300": (b"spacing", (0x0028, 0x0030), "1e300\\1e300"),
    "SeriesNumber of 400 digits": (b"series-number", (0x0020, 0x0011), "9" * 400),
    "name not UTF-8": (b"caf\xe9", (0x0008, 0x103E), "LATIN-1 NAME"),
    "name with a backslash": (b"DICOM\\IM0001", (0x0008, 0x103E), "WINDOWS ZIP"),
}


@pytest.mark.slow
def test_hostile_files_among_good_ones_do_not_stop_the_pipeline(
    tmp_path: Path, series: list[bytes]
) -> None:
    source = tmp_path / "in"
    source.mkdir()
    for index, data in enumerate(series):
        (source / f"{index}.dcm").write_bytes(data)
    for file_name, tag, value in HOSTILE_FILES.values():
        hostile = pixel_variant(series[0], lambda dataset: None)
        (source / os.fsdecode(file_name)).write_bytes(replace_value(hostile, tag, padded(value)))

    assert pipeline(["run", "--input", str(source), "--output", str(tmp_path / "out")]) == 0

    selections = tmp_path / "out" / "series-selector" / "selections"
    chosen = json.loads((selections / "selected-images.json").read_text())["selections"][0]
    assert SLICES in {image["shape"][2] for s in chosen["series"] for image in s["images"]}
    report = load_outputs(tmp_path / "out" / "dicom-parser")["parse-report.json"]
    assert len(report["files"]) == SLICES + len(HOSTILE_FILES)


def test_text_attributes_sent_as_sequences_are_selected_on_as_text(
    tmp_path: Path, series: list[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    """Explicit VR lets a file give SeriesDescription and Modality as sequences: the parser
    keeps them as such, and the selector matches, labels and writes them as their text."""
    item = pydicom.Dataset()
    item.CodeValue = "X"
    (tmp_path / "in").mkdir()
    for number, data in enumerate(series):
        dataset = pydicom.dcmread(io.BytesIO(data))
        for tag in (0x0008103E, 0x00080060):  # SeriesDescription, Modality
            del dataset[tag]
            dataset.add_new(tag, "SQ", pydicom.Sequence([item]))
        dataset.save_as(tmp_path / "in" / f"{number}.dcm", enforce_file_format=True)
    parse(tmp_path / "in", tmp_path / "out", capsys)
    rules = tmp_path / "rules.json"
    as_text = {"SeriesDescription": "00080100", "Modality": "'X'"}  # CodeValue's tag and value
    rules.write_text(json.dumps({"selections": [{"name": "s", "conditions": as_text}]}))
    arguments = ["--input", str(tmp_path / "out"), "--output", str(tmp_path / "sel")]
    assert selector([*arguments, "--rules", str(rules)]) == 0
    assert "Traceback" not in capsys.readouterr().err
    (chosen,) = json.loads((tmp_path / "sel" / "selected-images.json").read_text())["selections"]
    (entry,) = chosen["series"]
    assert entry["SeriesDescription"].startswith("{'00080100'")
    assert entry["Modality"].startswith("{'00080100'")
