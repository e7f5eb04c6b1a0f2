"""2D images without patient position (radiographs, mammograms, ultrasound cine, secondary
captures) become 2D images of their own plane, with the pixel spacing the file gives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from series_selection.parser.cli import main as parse
from series_selection.selector.cli import main as select

SOP_CLASSES = {
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",  # Digital X-Ray Image Storage, for presentation
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
    "US": "1.2.840.10008.5.1.4.1.1.3.1",  # Ultrasound Multi-frame Image Storage
    "CT": "1.2.840.10008.5.1.4.1.1.2",
}
IMAGE_PLANE_ONLY = "image plane only: no patient position"


def write_image(
    path: Path, modality: str, rows: int = 6, columns: int = 5, frames: int = 1, **values: Any
) -> np.ndarray[Any, Any]:
    """A 16-bit image without ImagePositionPatient; returns its pixels (frames, rows, columns)."""
    pixels = np.arange(frames * rows * columns, dtype=np.uint16).reshape(frames, rows, columns)
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    dataset.SOPClassUID = SOP_CLASSES[modality]
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID
    dataset.StudyInstanceUID = values.pop("StudyInstanceUID", "1.2.826.0.1.3680043.8.498.1")
    dataset.SeriesInstanceUID = values.pop("SeriesInstanceUID", generate_uid())
    dataset.Modality = modality
    dataset.SeriesNumber = 1
    dataset.Rows, dataset.Columns = rows, columns
    dataset.SamplesPerPixel = 1
    dataset.PhotometricInterpretation = "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 16, 15
    dataset.PixelRepresentation = 0
    if frames > 1:
        dataset.NumberOfFrames = frames
    for keyword, value in values.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = pixels.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(path, enforce_file_format=True)
    return pixels


def parse_one(tmp_path: Path, fmt: str = "nii") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    out = tmp_path / "out"
    assert parse(["--input", str(tmp_path / "in"), "--output", str(out), "--format", fmt]) == 0
    images = json.loads((out / "series-images.json").read_text())
    report = json.loads((out / "parse-report.json").read_text())
    return [volume for volumes in images.values() for volume in volumes], report


def test_a_radiograph_is_a_2d_image_with_the_magnification_corrected_spacing(
    tmp_path: Path,
) -> None:
    pixels = write_image(
        tmp_path / "in" / "dx.dcm",
        "DX",
        ImagerPixelSpacing=[0.15, 0.18],
        EstimatedRadiographicMagnificationFactor=1.2,
        ViewPosition="PA",
        PhotometricInterpretation="MONOCHROME1",
    )
    (volume,), _ = parse_one(tmp_path)
    assert volume["geometry"] == IMAGE_PLANE_ONLY
    assert volume["orientation"] == "NONE"
    assert volume["shape"] == [5, 6, 1]
    assert volume["spacing"] == pytest.approx([0.15, 0.125, 1.0])  # columns, rows
    assert any("EstimatedRadiographicMagnificationFactor 1.2" in n for n in volume["notes"])
    assert any(n.startswith("MONOCHROME1: stored values kept") for n in volume["notes"])
    image: Any = nib.load(tmp_path / "out" / volume["path"])
    assert (int(image.header["qform_code"]), int(image.header["sform_code"])) == (0, 0)
    assert image.header.get_zooms() == pytest.approx((0.15, 0.125, 1.0))
    assert np.array_equal(np.asarray(image.dataobj)[:, :, 0], pixels[0].T)  # as stored


@pytest.mark.parametrize(
    ("values", "spacing", "note"),
    [
        ({"PixelSpacing": [0.07, 0.05]}, [0.05, 0.07], "from PixelSpacing"),
        ({"ImagerPixelSpacing": [0.1, 0.1]}, [0.1, 0.1], "at the detector, not magnified"),
        ({}, [1.0, 1.0], "no pixel spacing in the file: 1 mm assumed"),
    ],
)
def test_the_pixel_spacing_says_where_it_came_from(
    tmp_path: Path, values: dict[str, Any], spacing: list[float], note: str
) -> None:
    write_image(tmp_path / "in" / "mg.dcm", "MG", **values)
    (volume,), _ = parse_one(tmp_path)
    assert volume["spacing"][:2] == pytest.approx(spacing)
    assert any(note in n for n in volume["notes"])


def test_ultrasound_cine_is_2d_plus_time_and_metaimage_says_the_orientation_is_unknown(
    tmp_path: Path,
) -> None:
    pixels = write_image(tmp_path / "in" / "us.dcm", "US", frames=4, PixelSpacing=[0.3, 0.3])
    (volume,), _ = parse_one(tmp_path, "mhd")
    assert volume["shape"] == [5, 6, 1, 4]
    assert "2D + time: 4 frames" in volume["notes"]
    header = (tmp_path / "out" / volume["path"]).read_text()
    assert "AnatomicalOrientation = ????" in header
    image = sitk.ReadImage(str(tmp_path / "out" / volume["path"]))
    values = sitk.GetArrayFromImage(image)  # (t, k, j, i)
    assert np.array_equal(values[:, 0], pixels)


def test_several_radiographs_of_a_series_are_images_of_their_own(tmp_path: Path) -> None:
    series = generate_uid()
    for number, view in enumerate(("PA", "LL"), start=1):
        write_image(
            tmp_path / "in" / f"{view}.dcm", "DX", SeriesInstanceUID=series, InstanceNumber=number
        )
    volumes, _ = parse_one(tmp_path)
    assert [v["label"] for v in volumes] == ["image-1", "image-2"]


def test_a_ct_slice_without_position_is_still_refused(tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "ct.dcm", "CT", PixelSpacing=[0.5, 0.5])
    volumes, report = parse_one(tmp_path)
    assert volumes == []
    (series,) = report["series"]
    assert "no usable ImagePositionPatient" in series["reason"]


def test_a_rule_chooses_the_pa_radiograph(tmp_path: Path) -> None:
    write_image(tmp_path / "in" / "pa.dcm", "DX", ViewPosition="PA", SeriesDescription="PA")
    write_image(tmp_path / "in" / "ll.dcm", "DX", ViewPosition="LL", SeriesDescription="LL")
    parse_one(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "selections:\n  - name: chest PA\n    conditions: {Modality: DX, ViewPosition: PA}\n"
    )
    out = tmp_path / "selected"
    assert (
        select(["--input", str(tmp_path / "out"), "--output", str(out), "--rules", str(rules)]) == 0
    )
    (selection,) = json.loads((out / "selected-images.json").read_text())["selections"]
    ((series,),) = [selection["series"]]
    assert series["SeriesDescription"] == "PA"
    (image,) = series["images"]
    assert image["geometry"] == IMAGE_PLANE_ONLY


@pytest.mark.shared_data
def test_real_radiograph_and_screen_captures(shared_data: Path, tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "dx.dcm").write_bytes(
        (shared_data / "highdicom" / "dx_image.dcm").read_bytes()
    )
    (volume,), _ = parse_one(tmp_path)
    dataset = pydicom.dcmread(shared_data / "highdicom" / "dx_image.dcm")
    assert volume["geometry"] == IMAGE_PLANE_ONLY
    assert volume["shape"][:2] == [dataset.Columns, dataset.Rows]
    captures = shared_data / "dcm_qa_ct" / "In" / "Philips" / "S21610" / "S4010"
    out = tmp_path / "captures"
    assert parse(["--input", str(captures), "--output", str(out)]) == 0
    images = json.loads((out / "series-images.json").read_text())
    planar = [v for vs in images.values() for v in vs if v["geometry"] == IMAGE_PLANE_ONLY]
    assert len(planar) == 3  # the three screens without ImagePositionPatient
    report = json.loads((out / "parse-report.json").read_text())
    (series,) = report["series"]
    assert "secondary capture images (screens, documents) that do not stack" in series["reason"]


def test_the_preview_of_an_image_without_position_is_named_image_not_a_plane(
    tmp_path: Path,
) -> None:
    write_image(tmp_path / "in" / "dx.dcm", "DX", ViewPosition="PA")
    (volume,), _ = parse_one(tmp_path)
    assert list(volume["previews"]) == ["image"]
    assert (tmp_path / "out" / volume["previews"]["image"]).is_file()
