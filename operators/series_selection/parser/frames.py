"""Frames: the 2D images of a file (one for classic objects, many for enhanced multi-frame),
each with the geometry and the values that decide which volume it belongs to."""

from __future__ import annotations

import reprlib
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut
from pydicom.pixels.utils import get_expected_length
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from series_selection.common.errors import ConversionError, DicomReadError
from series_selection.parser.bounds import decoded_pixels
from series_selection.parser.geometry import MAX_MM, MIN_SPACING_MM
from series_selection.parser.mosaic import UIH_VFRAME, is_mosaic, is_uih_vframe, mosaic_tiles
from series_selection.parser.reading import (
    file_errors,
    finite_number,
    read_dataset,
    read_header,
    stored_pixel_bytes,
)

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
"""Prefix of the Secondary Capture SOP classes (screen captures, scanned documents)."""
PLANAR_MODALITIES = frozenset({"CR", "DX", "MG", "IO", "PX", "US", "XA", "RF"})
"""Modalities whose images are 2D by nature (projection radiographs, ultrasound, angiography):
without a patient position they become images of their plane, not refused."""
COMPLEX_COMPONENTS = {
    "M": "MAGNITUDE", "MAGNITUDE": "MAGNITUDE", "P": "PHASE", "PHASE": "PHASE",
    "R": "REAL", "REAL": "REAL", "I": "IMAGINARY", "IMAGINARY": "IMAGINARY",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Frame:
    """One 2D image and everything needed to place it in a volume."""

    source: str
    index: int
    position: tuple[float, float, float]
    orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int
    slope: float
    intercept: float
    split: tuple[tuple[str, Any], ...]
    """Values that must agree within one volume, as (DICOM keyword, value) pairs."""
    order: tuple[float, ...]
    """How frames at one position are ordered in time (4D); ties mean no order is known."""
    thickness: float | None = None
    secondary_capture: bool = False
    photometric: str = "MONOCHROME2"
    colour: bool = False
    located: bool = True
    """False for a 2D image without patient position: ``position`` and ``orientation`` are then
    the image plane's own axes (origin 0), never a place in the patient."""
    spacing_note: str = ""
    """How the pixel spacing of an image without patient position was found."""

    @property
    def key(self) -> tuple[str, int]:
        """Which frame of which file: the key of its pixels."""
        return self.source, self.index


PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
NATIVE_LITTLE_ENDIAN = (ImplicitVRLittleEndian, ExplicitVRLittleEndian)


@dataclass(frozen=True, slots=True)
class StoredPixels:
    """Uncompressed grayscale pixel data left in its file, to be read straight into a volume."""

    path: Path
    offset: int
    shape: tuple[int, int]
    dtype: np.dtype[Any]
    unused_bits: int
    """Bits Allocated - Bits Stored: the high bits that do not belong to the value."""

    def read_into(self, out: npt.NDArray[Any]) -> None:
        """Fill ``out`` (this frame's shape, C-contiguous) as pydicom's pixel_array would."""
        if out.dtype != self.dtype:  # a frame of another type: cast as numpy assigns
            out[...] = self.read()
            return
        with self.path.open("rb") as file:
            file.seek(self.offset)
            if file.readinto(out.data.cast("B")) != out.nbytes:
                raise ConversionError(f"{self.path.name}: pixel data ends early")
        if self.unused_bits:  # like pydicom: drop the unused high bits, extending the sign
            np.left_shift(out, self.unused_bits, out=out)
            np.right_shift(out, self.unused_bits, out=out)

    def read(self) -> npt.NDArray[Any]:
        pixels = np.empty(self.shape, self.dtype)
        self.read_into(pixels)
        return pixels


FrameSource = npt.NDArray[Any] | StoredPixels
FramePixels = list[tuple["Frame", FrameSource]]


def read_frames(path: Path, source: str) -> FramePixels:
    """The frames of one file with their pixels: uncompressed single-frame grayscale pixels are
    left in the file (``StoredPixels``); everything else is decoded by pydicom now.

    Raises ``ConversionError`` for a file that cannot give frames, ``DicomReadError`` for one
    pydicom (or a decoder) cannot read."""
    with file_errors(""):
        with path.open("rb") as file:
            header = read_header(file)
            stored = _stored_pixels(header, path, file)
        if stored is None:
            return frames_of(read_dataset(path), source)
        return [(_frame(header, source, 0, False, None, None), stored)]


def _stored_pixels(header: Dataset, path: Path, file: Any) -> StoredPixels | None:
    """Where the pixels of a plain image sit, when its file holds them uncompressed, complete
    and little-endian; ``None`` otherwise. ``file`` is positioned after the header."""
    try:
        with file_errors(""):
            plain = (
                getattr(header.file_meta, "TransferSyntaxUID", None) in NATIVE_LITTLE_ENDIAN
                and int(header.get("NumberOfFrames", 1) or 1) == 1
                and "PerFrameFunctionalGroupsSequence" not in header
                and "SharedFunctionalGroupsSequence" not in header
                and _samples(header) == 1
                and header.get("PhotometricInterpretation") in ("MONOCHROME1", "MONOCHROME2")
                and header.get("BitsAllocated") in (8, 16, 32)
                and header.get("PixelRepresentation") in (0, 1)
                and not is_mosaic(header)
                and not is_uih_vframe(header)
            )
            if not plain:
                return None
            bits = int(header.BitsAllocated)
            stored_bits = int(header.get("BitsStored") or bits)
            shape = (int(header.Rows), int(header.Columns))
    except (TypeError, ValueError, OverflowError):  # unreadable values: the decoded path says why
        return None
    size = stored_pixel_bytes(*shape, 1, 1, bits)
    if not 0 < stored_bits <= bits or size <= 0:
        return None
    start = file.tell()
    head = file.read(12)
    implicit = header.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    if len(head) < 12 or head[:4] != PIXEL_DATA_TAG:
        return None
    length = struct.unpack("<I", head[4:8] if implicit else head[8:12])[0]
    offset = start + (8 if implicit else 12)
    if length not in (size, size + 1) or file.seek(0, 2) < offset + size:
        return None
    kind = "i" if header.PixelRepresentation == 1 else "u"
    return StoredPixels(path, offset, shape, np.dtype(f"<{kind}{bits // 8}"), bits - stored_bits)


def frames_of(dataset: Dataset, source: str) -> FramePixels:
    """The frames of one instance, each with its pixels (stored values, before rescale):
    (j, i), or (j, i, 3) for colour."""
    problem = unsupported_reason(dataset)
    if problem:
        raise ConversionError(problem)
    try:
        with file_errors(""):
            pixels = decoded_pixels(dataset)
            if _is_palette(dataset):
                pixels = apply_color_lut(pixels, dataset)
    except DicomReadError as error:
        raise ConversionError(f"pixel data cannot be decoded: {error}") from error
    colour = _samples(dataset) == 3 or _is_palette(dataset)
    if is_mosaic(dataset):
        tiles, positions = mosaic_tiles(dataset, pixels)
        whole = _frame(dataset, source, 0, colour, None, None)
        return [
            (
                replace(
                    whole, index=n, position=positions[n], rows=tile.shape[0], columns=tile.shape[1]
                ),
                tile,
            )
            for n, tile in enumerate(tiles)
        ]
    count = int(dataset.get("NumberOfFrames", 1) or 1)
    plane = pixels.shape[-3:] if colour else pixels.shape[-2:]
    stack = pixels.reshape((count, *plane))
    per_frame = dataset.get("PerFrameFunctionalGroupsSequence")
    shared = _first(dataset.get("SharedFunctionalGroupsSequence"))
    return [
        (
            _frame(dataset, source, index, colour, per_frame[index] if per_frame else None, shared),
            stack[index],
        )
        for index in range(count)
    ]


def unsupported_reason(dataset: Dataset) -> str | None:
    """Why this instance cannot be part of a grayscale volume, or ``None``."""
    if not any(keyword in dataset for keyword in PIXEL_DATA_KEYWORDS):
        return "no pixel data"
    if is_uih_vframe(dataset):
        return UIH_VFRAME
    for keyword in ("Rows", "Columns", "BitsAllocated"):
        try:
            with file_errors(""):
                int(dataset.get(keyword))
        except (TypeError, ValueError, OverflowError):  # missing, or a value pydicom cannot read
            return f"{keyword} is missing or unreadable"
    if _samples(dataset) not in (1, 3):
        return f"{_samples(dataset)} samples per pixel: neither grayscale nor colour"
    return _length_problem(dataset)


def _length_problem(dataset: Dataset) -> str | None:
    """Why uncompressed pixel data does not fit the image its header describes, or ``None``."""
    try:
        with file_errors(""):
            native = not dataset.file_meta.TransferSyntaxUID.is_encapsulated
            length, expected = len(dataset.PixelData), get_expected_length(dataset)
    except DicomReadError:  # no PixelData or transfer syntax, unreadable values: pydicom says
        return None
    if native and length not in (expected, expected + 1):  # + 1: padded to an even length
        return f"pixel data holds {length} bytes where its header describes {expected}"
    return None


def _samples(dataset: Dataset) -> int:
    return int(dataset.get("SamplesPerPixel", 1) or 1)


def _is_palette(dataset: Dataset) -> bool:
    return bool(dataset.get("PhotometricInterpretation") == "PALETTE COLOR")


def _frame(
    dataset: Dataset,
    source: str,
    index: int,
    colour: bool,
    frame_groups: Dataset | None,
    shared: Dataset | None,
) -> Frame:
    def lookup(macro: str, keyword: str) -> Any:
        for groups in (frame_groups, shared):
            item = _first(groups.get(macro)) if groups is not None else None
            if item is not None and keyword in item:
                return item[keyword].value
        return dataset.get(keyword)

    position = lookup("PlanePositionSequence", "ImagePositionPatient")
    orientation = lookup("PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = lookup("PixelMeasuresSequence", "PixelSpacing")
    secondary_capture = str(dataset.get("SOPClassUID", "")).startswith(SECONDARY_CAPTURE)
    planar = secondary_capture or str(dataset.get("Modality", "")).upper() in PLANAR_MODALITIES
    unlocated = position is None or orientation is None
    if planar and unlocated:
        spacing, spacing_note = _plane_spacing(dataset, source)
        position, orientation = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    else:
        spacing_note = ""
    for keyword, value, size in (
        ("ImagePositionPatient", position, 3),
        ("ImageOrientationPatient", orientation, 6),
        ("PixelSpacing", spacing, 2),
    ):
        if value is None or len(_as_list(value)) != size:
            raise ConversionError(f"no usable {keyword}: no patient geometry")
    slope = lookup("PixelValueTransformationSequence", "RescaleSlope")
    intercept = lookup("PixelValueTransformationSequence", "RescaleIntercept")
    thickness = lookup("PixelMeasuresSequence", "SliceThickness")
    return Frame(
        source=source,
        index=index,
        position=_floats(position, source, "ImagePositionPatient"),  # type: ignore[arg-type]
        orientation=_floats(orientation, source, "ImageOrientationPatient"),
        pixel_spacing=_floats(spacing, source, "PixelSpacing"),  # type: ignore[arg-type]
        rows=int(dataset.Rows),
        photometric=str(dataset.get("PhotometricInterpretation", "")),
        columns=int(dataset.Columns),
        slope=_rescale(slope, "RescaleSlope", 1.0),
        intercept=_rescale(intercept, "RescaleIntercept", 0.0),
        split=_split_values(dataset, lookup),
        order=_time_order(dataset, lookup, index),
        thickness=_length(thickness),
        secondary_capture=secondary_capture,
        colour=colour,
        located=not (planar and unlocated),
        spacing_note=spacing_note,
    )


def _plane_spacing(dataset: Dataset, source: str) -> tuple[tuple[float, ...], str]:
    """The pixel spacing of an image without patient position (mm, rows then columns), and
    where it came from: PixelSpacing; else ImagerPixelSpacing, divided by the
    EstimatedRadiographicMagnificationFactor where given; else 1 mm."""
    spacing = dataset.get("PixelSpacing")
    if spacing is not None and len(_as_list(spacing)) == 2:
        return _spacing(spacing, source, "PixelSpacing"), "pixel spacing from PixelSpacing"
    imager = dataset.get("ImagerPixelSpacing")
    if imager is None or len(_as_list(imager)) != 2:
        return (1.0, 1.0), "no pixel spacing in the file: 1 mm assumed"
    at_detector = _spacing(imager, source, "ImagerPixelSpacing")
    factor = finite_number(dataset.get("EstimatedRadiographicMagnificationFactor"), 0.0)
    if factor <= 0:
        return at_detector, "pixel spacing from ImagerPixelSpacing: at the detector, not magnified"
    keyword = "ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor"
    corrected = _spacing(tuple(v / factor for v in at_detector), source, keyword)
    return corrected, (
        f"pixel spacing from ImagerPixelSpacing divided by the EstimatedRadiographic"
        f"MagnificationFactor {factor:g}"
    )


def _spacing(value: Any, source: str, keyword: str) -> tuple[float, ...]:
    """A pixel spacing: two numbers, each at least ``MIN_SPACING_MM``."""
    numbers = _floats(value, source, keyword)
    if min(numbers) < MIN_SPACING_MM:
        raise ConversionError(f"{keyword} must be at least {MIN_SPACING_MM:g} mm: {list(numbers)}")
    return numbers


def _split_values(dataset: Dataset, lookup: Any) -> tuple[tuple[str, Any], ...]:
    samples = 3 if _is_palette(dataset) else _samples(dataset)
    values: list[tuple[str, Any]] = [("SamplesPerPixel", samples)]
    series_number = finite_number(dataset.get("SeriesNumber"), float("nan"))
    if np.isfinite(series_number):
        values.append(("SeriesNumber", int(series_number)))
    echo_time = lookup("MREchoSequence", "EffectiveEchoTime")
    echo = dataset.get("EchoNumbers")
    if echo_time is not None and "PerFrameFunctionalGroupsSequence" in dataset:
        values.append(("EffectiveEchoTime", round(float(echo_time), 4)))
    elif echo is not None and str(echo).strip():
        values.append(("EchoNumbers", int(_as_list(echo)[0])))
    component = lookup("MRImageFrameTypeSequence", "ComplexImageComponent")
    if component is None:
        types = [str(v).upper() for v in _as_list(dataset.get("ImageType"))[2:]]
        component = next((COMPLEX_COMPONENTS[t] for t in types if t in COMPLEX_COMPONENTS), None)
    if component is not None:
        values.append(("ComplexImageComponent", str(component).upper()))
    return tuple(values)


def _time_order(dataset: Dataset, lookup: Any, index: int) -> tuple[float, ...]:
    keys = (
        lookup("FrameContentSequence", "TemporalPositionIndex"),
        dataset.get("TemporalPositionIdentifier"),
        dataset.get("AcquisitionNumber"),
        dataset.get("TriggerTime"),
        _seconds(lookup("FrameContentSequence", "FrameAcquisitionDateTime")),
        _seconds(dataset.get("AcquisitionTime")),
        dataset.get("InstanceNumber"),
    )
    frame_number = float(index) if "PerFrameFunctionalGroupsSequence" in dataset else -1.0
    return (*(finite_number(k, -1.0) for k in keys), frame_number)


def _seconds(value: Any) -> float | None:
    """Seconds since midnight of a DICOM TM, or of the time part of a DT."""
    text = str(value or "").strip()
    if len(text) >= 14 and text[:8].isdigit():
        text = text[8:]
    digits = text.replace(":", "")
    try:
        hours, minutes, seconds = digits[0:2], digits[2:4] or "0", digits[4:] or "0"
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds.split("+")[0].split("-")[0])
    except ValueError:
        return None


def _first(sequence: Any) -> Dataset | None:
    return sequence[0] if sequence else None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _floats(value: Any, source: str, keyword: str) -> tuple[float, ...]:
    """Geometry values in mm, each within ``MAX_MM`` of zero."""
    shown = reprlib.repr(", ".join(str(v) for v in _as_list(value)))
    try:
        numbers = tuple(float(v) for v in _as_list(value))
    except (TypeError, ValueError, OverflowError) as error:
        raise ConversionError(f"{keyword} is not numeric: {shown}") from error
    if not all(abs(number) <= MAX_MM for number in numbers):  # also false for NaN
        raise ConversionError(
            f"{keyword} is out of range (not finite, or beyond {MAX_MM:g} mm): {shown}"
        )
    return numbers


def _rescale(value: Any, keyword: str, default: float) -> float:
    """A RescaleSlope or RescaleIntercept, ``default`` when absent; refused when it is not a
    finite number, or a slope of 0 (every voxel would be the intercept)."""
    text = str(value if value is not None else "").strip()
    if not text:
        return default
    number = finite_number(value, float("nan"))
    if not np.isfinite(number):
        raise ConversionError(f"{keyword} {text[:40]} is not a finite number")
    if number == 0 and keyword == "RescaleSlope":
        raise ConversionError(f"{keyword} {text[:40]}: every voxel would be the intercept")
    return number


def _length(value: Any) -> float | None:
    """A length in mm, ``None`` when missing or out of the range geometry accepts."""
    number = finite_number(value, 0.0)
    return number if MIN_SPACING_MM <= number <= MAX_MM else None
