"""Encodings the real scanner data lacks, generated with pydicom: deflate, colour layouts
(RGB planar configuration 0 and 1, YBR_FULL, palette colour) and MONOCHROME1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from pydicom.pixels import convert_color_space
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from series_selection.parser.cli import main
from series_selection_tools.fidelity.worldspace import in_grid_of, load_volume
from series_selection_tools.samples.synthetic import SeriesTruth, ct_series, write_series


def parse(source: Path, out: Path, fmt: str = "nii") -> list[dict[str, Any]]:
    assert (
        main(["--input", str(source), "--output", str(out), "--workers", "1", "--format", fmt]) == 0
    )
    images = json.loads((out / "series-images.json").read_text())
    return [v for volumes in images.values() for v in volumes]


def test_deflated_transfer_syntax(tmp_path: Path) -> None:
    truth = write_series(tmp_path / "plain", ct_series(slices=3))
    (tmp_path / "deflated").mkdir()
    for file in truth.files:
        dataset = pydicom.dcmread(file)
        dataset.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        dataset.save_as(tmp_path / "deflated" / file.name, enforce_file_format=True)
    (volume,) = parse(tmp_path / "deflated", tmp_path / "out")
    values = in_grid_of(load_volume(tmp_path / "out" / volume["path"]), truth.affine_lps)
    assert np.array_equal(values, truth.rescaled().transpose(2, 1, 0))


RGB = np.random.default_rng(5).integers(0, 256, (2, 6, 5, 3), dtype=np.uint8)  # k, j, i, rgb


def colour_series(folder: Path, photometric: str, planar: int = 0) -> SeriesTruth:
    """Two axial slices of RGB, stored as ``photometric`` with ``planar`` configuration; the
    truth of the grey series they were made from (its geometry is theirs)."""
    donor = write_series(
        folder.parent / f"donor-{folder.name}", ct_series(rows=6, columns=5, slices=2)
    )
    for k, file in enumerate(donor.files):
        dataset = pydicom.dcmread(file)
        pixels = RGB[k] if photometric == "RGB" else convert_color_space(RGB[k], "RGB", "YBR_FULL")
        stored = pixels.transpose(2, 0, 1) if planar else pixels
        dataset.SamplesPerPixel = 3
        dataset.PhotometricInterpretation = photometric
        dataset.PlanarConfiguration = planar
        dataset.BitsAllocated = dataset.BitsStored = 8
        dataset.HighBit = 7
        dataset.PixelRepresentation = 0
        del dataset.RescaleSlope, dataset.RescaleIntercept
        dataset.PixelData = np.ascontiguousarray(stored).tobytes()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        folder.mkdir(parents=True, exist_ok=True)
        dataset.save_as(folder / file.name, enforce_file_format=True)
    return donor


@pytest.mark.parametrize(("photometric", "planar"), [("RGB", 0), ("RGB", 1), ("YBR_FULL", 0)])
@pytest.mark.parametrize("fmt", ["nii", "mhd"])
def test_colour_layouts_give_the_same_rgb(
    tmp_path: Path, photometric: str, planar: int, fmt: str
) -> None:
    donor = colour_series(tmp_path / "in", photometric, planar)
    (volume,) = parse(tmp_path / "in", tmp_path / "out", fmt)
    assert volume["channels"] == 3 and volume["shape"] == [5, 6, 2]
    loaded = load_volume(tmp_path / "out" / volume["path"])
    values = in_grid_of(loaded, donor.affine_lps)  # i, j, k, rgb
    expected = RGB.transpose(2, 1, 0, 3).astype(float)
    tolerance = 0 if photometric == "RGB" else 2  # YBR -> RGB rounds
    assert np.max(np.abs(values - expected)) <= tolerance


def test_palette_colour_is_looked_up(tmp_path: Path) -> None:
    truth = write_series(tmp_path / "donor", ct_series(rows=4, columns=4, slices=2))
    lut = np.arange(256, dtype=np.uint16)
    red, green, blue = lut * 256, (255 - lut) * 256, np.full(256, 100 * 256, dtype=np.uint16)
    indices = np.arange(32, dtype=np.uint8).reshape(2, 4, 4)
    for k, file in enumerate(truth.files):
        dataset = pydicom.dcmread(file)
        dataset.PhotometricInterpretation = "PALETTE COLOR"
        dataset.BitsAllocated = dataset.BitsStored = 8
        dataset.HighBit = 7
        dataset.PixelRepresentation = 0
        del dataset.RescaleSlope, dataset.RescaleIntercept
        for name, table in (("Red", red), ("Green", green), ("Blue", blue)):
            setattr(dataset, f"{name}PaletteColorLookupTableDescriptor", [256, 0, 16])
            dataset[f"{name}PaletteColorLookupTableDescriptor"].VR = "US"
            setattr(dataset, f"{name}PaletteColorLookupTableData", table.tobytes())
        dataset.PixelData = indices[k].tobytes()
        (tmp_path / "in").mkdir(exist_ok=True)
        dataset.save_as(tmp_path / "in" / file.name, enforce_file_format=True)
    (volume,) = parse(tmp_path / "in", tmp_path / "out", "mhd")
    values = load_volume(tmp_path / "out" / volume["path"]).values
    index = indices.transpose(2, 1, 0).astype(int)
    assert np.array_equal(values[..., 0], red[index].astype(float))
    assert np.array_equal(values[..., 1], green[index].astype(float))


def test_monochrome1_keeps_stored_values_and_says_so(tmp_path: Path) -> None:
    truth = write_series(tmp_path / "donor", ct_series(slices=2))
    (tmp_path / "in").mkdir()
    for file in truth.files:
        dataset = pydicom.dcmread(file)
        dataset.PhotometricInterpretation = "MONOCHROME1"
        dataset.save_as(tmp_path / "in" / file.name, enforce_file_format=True)
    (volume,) = parse(tmp_path / "in", tmp_path / "out")
    assert any("MONOCHROME1" in note for note in volume["notes"])
    values = in_grid_of(load_volume(tmp_path / "out" / volume["path"]), truth.affine_lps)
    assert np.array_equal(values, truth.rescaled().transpose(2, 1, 0))
