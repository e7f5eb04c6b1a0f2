"""Rescaled values are right or refused: whatever RescaleSlope, RescaleIntercept, stored type
and stored values a series holds, the written volume's world values are ``slope * stored +
intercept`` (exactly, or within float32 rounding where NIfTI keeps the rescale in
scl_slope/scl_inter), or the series is refused with a reason. Never a wrapped value, never a
crash."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest
import SimpleITK as sitk
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reliability_support import assert_every_file_accounted_for, load_outputs, replace_value
from series_selection.parser.cli import main
from series_selection_tools.fidelity.worldspace import RAS_TO_LPS, LoadedVolume, in_grid_of
from series_selection_tools.samples.synthetic import SeriesTruth, ct_series, write_series

SLICES, ROWS, COLUMNS = 3, 2, 3
RESCALE_SLOPE, RESCALE_INTERCEPT = (0x0028, 0x1053), (0x0028, 0x1052)
STORED_TYPES = [np.dtype(f"<{kind}{size}") for kind in "iu" for size in (1, 2, 4)]
SCL_TOLERANCE = 2.0**-24
"""NIfTI stores scl_slope and scl_inter as float32: each carries a relative error of at most
2**-24, so a world value may be off by that much of |slope * stored| + |intercept|."""
EXAMPLES = int(os.environ.get("RELIABILITY_FUZZ_EXAMPLES", "0"))
"""A longer, random campaign when set (see docs/reliability.md)."""
INTEGER_OUTPUTS = [np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64)]


def decimal_strings() -> st.SearchStrategy[str]:
    """Decimal Strings (at most 16 characters) of finite numbers, from tiny to near overflow."""
    return st.one_of(
        st.integers(-(10**14), 10**15).map(str),
        st.integers(-4096, 4096).map(str),
        st.floats(allow_nan=False, allow_infinity=False).map(lambda x: format(x, ".9g")),
        st.floats(-1e6, 1e6).map(lambda x: format(x, ".6g")),
        st.sampled_from(["1", "-1024", "0.5", "2.5", "1e16", "-1e16", "1e19", "3.5e38", "1e-50"]),
    )


def nonzero() -> st.SearchStrategy[str]:
    return decimal_strings().filter(lambda text: float(text) != 0)


def write_rescaled(
    folder: Path, stored: npt.NDArray[Any], slopes: list[str], intercepts: list[str]
) -> SeriesTruth:
    """A series of ``stored`` values (k, j, i); slice k's RescaleSlope/Intercept are the texts
    ``slopes[k]`` / ``intercepts[k]`` (or the only one given), written as they are."""
    spec = ct_series(
        slices=stored.shape[0],
        rows=stored.shape[1],
        columns=stored.shape[2],
        bits_allocated=stored.dtype.itemsize * 8,
        pixel_representation=int(stored.dtype.kind == "i"),
    )
    truth = write_series(folder, spec)
    for k, path in enumerate(truth.files):
        data = path.read_bytes()
        for tag, texts in ((RESCALE_SLOPE, slopes), (RESCALE_INTERCEPT, intercepts)):
            text = texts[k % len(texts)].encode()
            data = replace_value(data, tag, text + b" " * (len(text) % 2))
        pixels = stored[k].astype(stored.dtype.newbyteorder("<")).tobytes()
        path.write_bytes(data[: len(data) - len(pixels)] + pixels)
    return truth


def parse(source: Path, out: Path, fmt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run the parser (outputs checked against their schemas); its only series' report entry,
    and its volume (or ``{}``)."""
    code = main(["--input", str(source), "--output", str(out), "--format", fmt, "--workers", "1"])
    assert code == 0
    outputs = load_outputs(out)
    report = outputs["parse-report.json"]
    assert_every_file_accounted_for(report, source)
    (series,) = report["series"]
    volumes = outputs["series-images.json"].get(series["SeriesInstanceUID"], [{}])
    assert len(volumes) == 1, volumes
    return series, volumes[0]


def world_values(out: Path, volume: dict[str, Any], grid: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The volume's values (k, j, i) on ``grid`` (the series' LPS affine), as a reader applying
    the file's scaling sees them."""
    path = out / volume["path"]
    if volume["format"] == "mhd":
        return np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(path))))
    image: Any = nib.load(path)
    if volume["rescale"]["stored_as"] == "nifti_scl":
        values = np.asarray(image.get_fdata())
    else:
        values = np.asarray(image.dataobj)
    return in_grid_of(LoadedVolume(values, RAS_TO_LPS @ image.affine), grid).T


def exact_values(
    stored: npt.NDArray[Any], slopes: list[str], intercepts: list[str]
) -> npt.NDArray[Any] | None:
    """``slope * stored + intercept`` per slice: Python integers when slope and intercept are
    whole numbers (``None`` beyond int64), else Python floats (``None`` when not finite)."""
    values = []
    whole = all(float(text).is_integer() for text in slopes + intercepts)
    for k, plane in enumerate(stored):
        slope, intercept = float(slopes[k % len(slopes)]), float(intercepts[k % len(intercepts)])
        if whole:
            values.append(plane.astype(object) * int(slope) + int(intercept))
        else:
            values.append(plane.astype(np.float64) * slope + intercept)
    result = np.array(values)
    if result.dtype == object:
        info = np.iinfo(np.int64)
        return result if info.min <= result.min() and result.max() <= info.max else None
    return result if np.isfinite(result).all() else None


def assert_exact_or_refused(
    folder: Path, stored: npt.NDArray[Any], slopes: list[str], intercepts: list[str], fmt: str
) -> None:
    """Parse a series of ``stored`` values so rescaled; check its values or its refusal."""
    source, out = folder / "in", folder / "out"
    truth = write_rescaled(source, stored, slopes, intercepts)
    series, volume = parse(source, out, fmt)
    expected = exact_values(stored, slopes, intercepts)
    if expected is None:
        assert not volume
        assert "no type holds" in series["reason"]
        return
    assert volume, series.get("reason")
    world = world_values(out, volume, truth.affine_lps)
    dtype = np.dtype(volume["dtype"])
    if expected.dtype == object:  # whole numbers: an integer type, the first that holds them
        holds = [
            t
            for t in [stored.dtype, *INTEGER_OUTPUTS]
            if np.iinfo(t).min <= expected.min() and expected.max() <= np.iinfo(t).max
        ]
        assert dtype == holds[0].newbyteorder("=")
        assert (world.astype(object) == expected).all()
    elif volume["rescale"]["stored_as"] == "nifti_scl":
        slope, intercept = float(slopes[0]), float(intercepts[0])
        scale = np.abs(stored.astype(np.float64) * slope) + abs(intercept)
        assert np.all(np.abs(world - expected) <= SCL_TOLERANCE * scale)
    else:
        assert dtype.kind == "f"
        assert np.array_equal(world, expected)


@settings(
    max_examples=EXAMPLES or 60,
    deadline=None,
    derandomize=not EXAMPLES,  # CI explores the same examples every run
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    dtype=st.sampled_from(STORED_TYPES),
    per_slice=st.booleans(),
    fmt=st.sampled_from(["nii", "mhd"]),
    data=st.data(),
)
def test_rescaled_values_are_exact_or_refused(
    dtype: np.dtype[Any], per_slice: bool, fmt: str, data: st.DataObject
) -> None:
    count = SLICES if per_slice else 1
    stored = data.draw(hnp.arrays(dtype, (SLICES, ROWS, COLUMNS)), label="stored")
    slopes = data.draw(st.lists(nonzero(), min_size=count, max_size=count), label="slopes")
    intercepts = data.draw(
        st.lists(decimal_strings(), min_size=count, max_size=count), label="intercepts"
    )
    with tempfile.TemporaryDirectory() as folder:
        assert_exact_or_refused(Path(folder), stored, slopes, intercepts, fmt)


@pytest.mark.parametrize(
    ("stored", "slope", "intercept"),
    [
        pytest.param(np.full(5, 1100, "<u2"), "1", "-1024", id="unsigned CT above 1024"),
        pytest.param(np.arange(5, dtype="<i2") * 300, "1e16", "0", id="slope 1e16"),
        pytest.param(np.array([0, 65535], "<u2"), "-1", "-70000", id="all negative, int32"),
        pytest.param(np.array([1, 2], "<u4"), "1e-50", "0", id="slope below float32"),
        pytest.param(np.array([1, 2], "<u1"), "0.5", "1e300", id="intercept above float32"),
        pytest.param(np.array([4, 5], "<i1"), "1.5", "1.7e308", id="float64 overflow"),
        pytest.param(np.array([-128], "<i1"), "1.5e306", "0", id="whole numbers beyond float64"),
    ],
)
@pytest.mark.parametrize("fmt", ["nii.gz", "mhd"])
def test_rescale_edge_cases(
    tmp_path: Path, stored: npt.NDArray[Any], slope: str, intercept: str, fmt: str
) -> None:
    planes = np.resize(stored, (SLICES, ROWS, COLUMNS)).astype(stored.dtype)
    assert_exact_or_refused(tmp_path, planes, [slope], [intercept], fmt)


@pytest.mark.parametrize(
    ("slope", "intercept", "reason"),
    [
        ("0", "-1024", "RescaleSlope 0"),
        ("-0", "0", "RescaleSlope -0"),
        ("nan", "0", "RescaleSlope nan"),
        ("inf", "0", "RescaleSlope inf"),
        ("1e999", "0", "RescaleSlope 1e999"),
        ("one", "0", "RescaleSlope one"),
        ("1", "nan", "RescaleIntercept nan"),
        ("1", "-inf", "RescaleIntercept -inf"),
        ("1", "minus", "RescaleIntercept minus"),
    ],
)
def test_impossible_rescale_is_refused_with_its_value(
    tmp_path: Path, slope: str, intercept: str, reason: str
) -> None:
    stored = np.arange(SLICES * ROWS * COLUMNS, dtype="<i2").reshape(SLICES, ROWS, COLUMNS)
    write_rescaled(tmp_path / "in", stored, [slope], [intercept])
    series, volume = parse(tmp_path / "in", tmp_path / "out", "nii.gz")
    assert not volume
    assert reason in series["reason"]


def test_one_impossible_slice_is_refused_and_named(tmp_path: Path) -> None:
    stored = np.arange(SLICES * ROWS * COLUMNS, dtype="<i2").reshape(SLICES, ROWS, COLUMNS)
    truth = write_rescaled(tmp_path / "in", stored, ["1", "0", "1"], ["0"])
    series, volume = parse(tmp_path / "in", tmp_path / "out", "nii.gz")
    assert truth.files[1].name in series["reason"]
    assert "RescaleSlope 0" in series["reason"]
    assert volume["frame_count"] == SLICES - 1
