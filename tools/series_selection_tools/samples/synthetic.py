"""Synthetic DICOM series whose geometry and voxel values are known exactly.

The geometry follows the Image Plane module (DICOM PS3.3 C.7.6.2.1.1): the patient position (LPS,
mm) of the pixel in row ``r``, column ``c`` of a slice is::

    ImagePositionPatient + c * PixelSpacing[1] * row_cosine + r * PixelSpacing[0] * column_cosine

where ``row_cosine`` is ImageOrientationPatient[0:3] (the direction along a row, i.e. of increasing
column index) and ``column_cosine`` is ImageOrientationPatient[3:6]. Everything is derived from the
specification and a seed, so the same call writes byte-identical files.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    PositronEmissionTomographyImageStorage,
    generate_uid,
)

Vector = tuple[float, float, float]
NameStyle = Literal["random", "dcm", "nested"]

SOP_CLASSES = {
    "CT": CTImageStorage,
    "MR": MRImageStorage,
    "PT": PositronEmissionTomographyImageStorage,
}
IMPLEMENTATION_CLASS_UID = generate_uid(entropy_srcs=["sample_studies implementation"])
IMPLEMENTATION_VERSION_NAME = "SAMPLE_STUDIES"
MARKER = 1000  # added to the voxels next to (i, j, k) = (1, 2, 3)


@dataclass(frozen=True)
class StudySpec:
    """Patient and study attributes shared by every series of a study."""

    patient_name: str = "SYNTHETIC^PATIENT"
    patient_id: str = "SYN0001"
    patient_birth_date: str = "19700101"
    patient_sex: str = "O"
    study_description: str = "SYNTHETIC STUDY"
    accession_number: str = "ACC0001"
    study_id: str = "1"
    study_date: str = "20240102"
    study_time: str = "081500"
    study_uid: str | None = None  # derived from the seed when None


@dataclass(frozen=True)
class SeriesSpec:
    """One stack of parallel single-frame slices; slice k lies at ``origin + offset_k * normal``."""

    study: StudySpec = field(default_factory=StudySpec)
    modality: str = "CT"
    rows: int = 64
    columns: int = 48
    slices: int = 20
    pixel_spacing: tuple[float, float] = (0.8, 0.6)  # (between rows, between columns)
    slice_positions: tuple[float, ...] | None = None  # offsets along the normal; k * slice_spacing
    slice_spacing: float = 2.5  # negative: slices run against the normal
    slice_thickness: float | None = None  # abs(slice_spacing) when None
    row_cosine: Vector = (1.0, 0.0, 0.0)
    column_cosine: Vector = (0.0, 1.0, 0.0)
    origin: Vector = (-20.0, -30.0, 40.0)  # ImagePositionPatient of slice 0
    tilt_shift: Vector = (0.0, 0.0, 0.0)  # extra shift of slice k by k * tilt_shift (gantry tilt)
    patient_position: str = "HFS"
    rescale_slope: float = 1.0
    rescale_intercept: float = 0.0
    bits_allocated: int = 16
    pixel_representation: int = 1  # 1: signed
    value_offset: int = 0  # added to every voxel value
    series_description: str = "SYNTHETIC SERIES"
    series_number: int = 1
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    acquisition_number: int | None = 1
    echo_numbers: int | None = None
    echo_time: float | None = None
    repetition_time: float | None = None
    magnetic_field_strength: float | None = None
    series_uid: str | None = None  # derived from the seed when None
    first_instance_number: int = 1


@dataclass(frozen=True)
class SeriesTruth:
    """What a correct conversion of the written series must reproduce."""

    stored: npt.NDArray[np.integer]  # stored values [k, j, i] = [slice, row, column]
    affine_lps: npt.NDArray[np.float64]  # (i, j, k, 1) -> LPS mm; exact for evenly spaced slices
    positions: npt.NDArray[np.float64]  # ImagePositionPatient of each slice k, as written
    rescale_slope: float
    rescale_intercept: float
    files: list[Path]  # file of slice k
    series_uid: str

    def rescaled(self) -> npt.NDArray[np.float64]:
        """Modality values: ``stored * slope + intercept``."""
        return self.stored.astype(np.float64) * self.rescale_slope + self.rescale_intercept


def ct_series(**changes: Any) -> SeriesSpec:
    """A CT series: Hounsfield rescale (intercept -1024), signed stored values."""
    return replace(SeriesSpec(rescale_intercept=-1024.0), **changes)


def mr_series(**changes: Any) -> SeriesSpec:
    """An MR series: unsigned stored values, echo and field strength attributes."""
    base = SeriesSpec(
        modality="MR",
        pixel_representation=0,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND"),
        echo_numbers=1,
        echo_time=2.5,
        repetition_time=2000.0,
        magnetic_field_strength=3.0,
    )
    return replace(base, **changes)


def _stored_dtype(spec: SeriesSpec) -> np.dtype[Any]:
    return np.dtype(f"<{'i' if spec.pixel_representation else 'u'}{spec.bits_allocated // 8}")


def voxel_positions(spec: SeriesSpec) -> npt.NDArray[np.float64]:
    """The patient position (LPS, mm) of every voxel [k, j, i] of ``spec``, by the Image Plane
    formula from its ImagePositionPatient, ImageOrientationPatient and PixelSpacing."""
    row, column = np.asarray(spec.row_cosine, float), np.asarray(spec.column_cosine, float)
    normal = np.cross(row, column)
    normal = normal / np.linalg.norm(normal)
    offsets = spec.slice_positions or tuple(k * spec.slice_spacing for k in range(spec.slices))
    k, j, i = np.indices((spec.slices, spec.rows, spec.columns), dtype=np.float64)
    origin = np.asarray(spec.origin, float) + np.asarray(offsets)[:, None, None, None] * normal
    origin = origin + k[..., None] * np.asarray(spec.tilt_shift, float)
    positions: npt.NDArray[np.float64] = (
        origin
        + i[..., None] * spec.pixel_spacing[1] * row
        + j[..., None] * spec.pixel_spacing[0] * column
    )
    return positions


def voxel_values(spec: SeriesSpec) -> npt.NDArray[np.integer]:
    """Stored values [k, j, i]: distinct gradients per axis plus a marker next to voxel (1, 2, 3).

    No flip, transpose or reordering of the axes maps the pattern onto itself. Values are wrapped
    into the range of the stored type.
    """
    dtype = np.dtype(f"<{'i' if spec.pixel_representation else 'u'}{spec.bits_allocated // 8}")
    k, j, i = np.indices((spec.slices, spec.rows, spec.columns), dtype=np.int64)
    values = 5 * i + 11 * j + 37 * k + (i * j + 3 * k) % 13 + spec.value_offset
    values += MARKER * ((i - 1) ** 2 + (j - 2) ** 2 + (k - 3) ** 2 <= 1)
    if spec.pixel_representation:
        values -= 500  # some negative values catch a signed/unsigned mix-up
    low, high = np.iinfo(dtype).min, np.iinfo(dtype).max
    wrapped: npt.NDArray[np.integer] = ((values - low) % (high - low + 1) + low).astype(dtype)
    return wrapped


def write_series(
    folder: Path,
    spec: SeriesSpec,
    *,
    seed: int = 0,
    shuffle_files: bool = True,
    shuffle_instance_numbers: bool = False,
    name_style: NameStyle = "random",
    values: npt.NDArray[np.integer] | None = None,
) -> SeriesTruth:
    """Write one single-frame file per slice of ``spec`` into ``folder``; return the truth.

    With ``shuffle_files`` file names follow a random permutation of the slices, and with
    ``shuffle_instance_numbers`` so do the InstanceNumbers, so neither reveals the spatial order.
    ``values`` (stored values [k, j, i]) replaces the pattern of ``voxel_values``.
    """
    if spec.modality not in SOP_CLASSES:
        raise ValueError(f"modality {spec.modality!r}: choose one of {', '.join(SOP_CLASSES)}")
    offsets = spec.slice_positions or tuple(k * spec.slice_spacing for k in range(spec.slices))
    if len(offsets) != spec.slices:
        raise ValueError(f"{len(offsets)} slice positions for {spec.slices} slices")
    study_uid = _study_uid(spec.study, seed)
    series_uid = _series_uid(spec, seed)
    row_cosine = _written(spec.row_cosine)
    column_cosine = _written(spec.column_cosine)
    pixel_spacing = _written(spec.pixel_spacing)
    normal = np.cross(np.asarray(spec.row_cosine, float), np.asarray(spec.column_cosine, float))
    normal = normal / np.linalg.norm(normal)
    positions = np.array(
        [
            _written(np.add(spec.origin, offset * normal + k * np.asarray(spec.tilt_shift)))
            for k, offset in enumerate(offsets)
        ]
    )
    stored = voxel_values(spec) if values is None else values.astype(_stored_dtype(spec))
    order = random.Random(f"{seed}/{series_uid}/{spec.first_instance_number}")
    file_numbers = _numbering(spec, order, shuffle_files)
    instance_numbers = _numbering(spec, order, shuffle_instance_numbers)
    files = []
    for k in range(spec.slices):
        sop_uid = _uid(series_uid, spec.first_instance_number + k)
        ds = _image_dataset(spec, study_uid, series_uid, sop_uid, seed)
        ds.InstanceNumber = instance_numbers[k]
        ds.ImagePositionPatient = [_ds(x) for x in positions[k]]
        ds.ImageOrientationPatient = [_ds(x) for x in row_cosine + column_cosine]
        ds.PixelSpacing = [_ds(x) for x in pixel_spacing]
        ds.SliceLocation = _ds(float(np.dot(positions[k], normal)))
        ds.PixelData = stored[k].tobytes()
        path = folder / _file_name(name_style, file_numbers[k], sop_uid)
        _save(ds, path)
        files.append(path)
    step = (
        (positions[-1] - positions[0]) / (spec.slices - 1)
        if spec.slices > 1
        else normal * spec.slice_spacing
    )
    affine = np.eye(4)
    affine[:3, 0] = np.asarray(row_cosine) * pixel_spacing[1]
    affine[:3, 1] = np.asarray(column_cosine) * pixel_spacing[0]
    affine[:3, 2] = step
    affine[:3, 3] = positions[0]
    return SeriesTruth(
        stored=stored,
        affine_lps=affine,
        positions=positions,
        rescale_slope=spec.rescale_slope,
        rescale_intercept=spec.rescale_intercept,
        files=files,
        series_uid=series_uid,
    )


def write_localizer(
    folder: Path,
    spec: SeriesSpec,
    *,
    center: Vector = (0.0, 0.0, 0.0),
    seed: int = 0,
    name_style: NameStyle = "random",
) -> list[SeriesTruth]:
    """A localizer: one axial, one coronal and one sagittal slice through ``center``, one series."""
    planes = (  # (row cosine, column cosine) of the axial, coronal and sagittal slice
        ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
        ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
        ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    )
    series_uid = _series_uid(spec, seed)
    truths = []
    for number, (row_cosine, column_cosine) in enumerate(planes, start=1):
        half_width = np.multiply(row_cosine, spec.pixel_spacing[1] * (spec.columns - 1) / 2)
        half_height = np.multiply(column_cosine, spec.pixel_spacing[0] * (spec.rows - 1) / 2)
        origin = np.subtract(center, half_width + half_height)
        plane = replace(
            spec,
            slices=1,
            slice_positions=None,
            row_cosine=row_cosine,
            column_cosine=column_cosine,
            origin=(float(origin[0]), float(origin[1]), float(origin[2])),
            image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
            series_uid=series_uid,
            first_instance_number=number,
        )
        truths.append(write_series(folder, plane, seed=seed, name_style=name_style))
    return truths


def write_multi_echo(
    folder: Path,
    spec: SeriesSpec,
    *,
    echo_times: tuple[float, ...] = (2.5, 9.0),
    seed: int = 0,
    name_style: NameStyle = "random",
) -> list[SeriesTruth]:
    """One series holding a full stack per echo (EchoNumbers 1, 2, ...) at the same positions."""
    series_uid = _series_uid(spec, seed)
    return [
        write_series(
            folder,
            replace(
                spec,
                echo_numbers=echo,
                echo_time=echo_time,
                value_offset=spec.value_offset + 1500 * (echo - 1),
                series_uid=series_uid,
                first_instance_number=1 + (echo - 1) * spec.slices,
            ),
            seed=seed,
            name_style=name_style,
        )
        for echo, echo_time in enumerate(echo_times, start=1)
    ]


def write_text_report(
    folder: Path, study: StudySpec, *, series_number: int = 900, seed: int = 0
) -> Path:
    """A Basic Text SR document: a valid DICOM object of the study without any pixel data."""
    study_uid = _study_uid(study, seed)
    series_uid = _uid(seed, "series", study_uid, series_number)
    sop_uid = _uid(series_uid, 1)
    ds = _common_dataset(study, study_uid, series_uid, sop_uid, BasicTextSRStorage)
    ds.Modality = "SR"
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "Report"
    ds.InstanceNumber = 1
    ds.ReferencedPerformedProcedureStepSequence = []
    ds.PerformedProcedureCodeSequence = []
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = [_code("18748-4", "LN", "Diagnostic imaging report")]
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    finding = Dataset()
    finding.RelationshipType = "CONTAINS"
    finding.ValueType = "TEXT"
    finding.ConceptNameCodeSequence = [_code("121071", "DCM", "Finding")]
    finding.TextValue = "Synthetic study; no findings."
    ds.ContentSequence = [finding]
    path = folder / f"SR{series_number:04d}"
    _save(ds, path)
    return path


def _study_uid(study: StudySpec, seed: int) -> str:
    return study.study_uid or _uid(seed, "study", study.patient_id, study.accession_number)


def _series_uid(spec: SeriesSpec, seed: int) -> str:
    return spec.series_uid or _uid(seed, "series", _study_uid(spec.study, seed), spec.series_number)


def _uid(*parts: object) -> UID:
    return generate_uid(entropy_srcs=[str(part) for part in parts])


def _ds(value: float) -> str:
    """A Decimal String with at most six decimals (and no "-0")."""
    return f"{round(float(value), 6) + 0.0:.6f}".rstrip("0").rstrip(".")


def _written(values: npt.ArrayLike) -> tuple[float, ...]:
    """The values exactly as the file states them."""
    return tuple(float(_ds(x)) for x in np.asarray(values, dtype=np.float64))


def _numbering(spec: SeriesSpec, order: random.Random, shuffle: bool) -> list[int]:
    numbers = list(range(spec.first_instance_number, spec.first_instance_number + spec.slices))
    if shuffle:
        order.shuffle(numbers)
    return numbers


def _file_name(style: NameStyle, number: int, sop_uid: str) -> str:
    if style == "dcm":
        return f"IM{number:04d}.dcm"
    if style == "nested":
        return f"part{number % 3}/IM{number:04d}"
    return hashlib.sha256(sop_uid.encode()).hexdigest()[:16].upper()


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    code = Dataset()
    code.CodeValue = value
    code.CodingSchemeDesignator = scheme
    code.CodeMeaning = meaning
    return code


def _common_dataset(
    study: StudySpec, study_uid: str, series_uid: str, sop_uid: str, sop_class: str
) -> Dataset:
    """Patient, study, series identity and SOP common attributes, with file meta information."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = UID(sop_uid)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = IMPLEMENTATION_CLASS_UID
    ds.file_meta.ImplementationVersionName = IMPLEMENTATION_VERSION_NAME
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.ContentDate = study.study_date
    ds.StudyTime = ds.ContentTime = study.study_time
    ds.AccessionNumber = study.accession_number
    ds.Manufacturer = "SYNTHETIC"
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = study.study_description
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = study.study_id
    return ds


def _image_dataset(
    spec: SeriesSpec, study_uid: str, series_uid: str, sop_uid: str, seed: int
) -> Dataset:
    """Every attribute of a slice except its position, instance number and pixels."""
    ds = _common_dataset(spec.study, study_uid, series_uid, sop_uid, SOP_CLASSES[spec.modality])
    ds.ImageType = list(spec.image_type)
    ds.Modality = spec.modality
    ds.SeriesDescription = spec.series_description
    ds.SeriesNumber = spec.series_number
    ds.AcquisitionNumber = spec.acquisition_number
    ds.PatientPosition = spec.patient_position
    ds.FrameOfReferenceUID = _uid(seed, "frame of reference", study_uid)
    ds.PositionReferenceIndicator = ""
    ds.SliceThickness = _ds(
        abs(spec.slice_spacing) if spec.slice_thickness is None else spec.slice_thickness
    )
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = spec.rows
    ds.Columns = spec.columns
    ds.BitsAllocated = ds.BitsStored = spec.bits_allocated
    ds.HighBit = spec.bits_allocated - 1
    ds.PixelRepresentation = spec.pixel_representation
    ds.RescaleIntercept = _ds(spec.rescale_intercept)
    ds.RescaleSlope = _ds(spec.rescale_slope)
    if spec.modality == "CT":
        ds.RescaleType = "HU"
        ds.KVP = "120"
        tilt = np.degrees(np.arctan2(np.linalg.norm(spec.tilt_shift), abs(spec.slice_spacing)))
        ds.GantryDetectorTilt = _ds(float(tilt))
    if spec.modality == "MR":
        ds.ScanningSequence = "GR"
        ds.SequenceVariant = "SP"
        ds.ScanOptions = ""
        ds.MRAcquisitionType = "2D"
        ds.EchoTrainLength = 1
        ds.ImagedNucleus = "1H"
    if spec.modality == "PT":
        ds.SeriesType = ["STATIC", "IMAGE"]
        ds.Units = "BQML"
        ds.CountsSource = "EMISSION"
        ds.DecayCorrection = "START"
        ds.CorrectedImage = ["DECY", "ATTN"]
    if spec.echo_numbers is not None:
        ds.EchoNumbers = spec.echo_numbers
    if spec.echo_time is not None:
        ds.EchoTime = _ds(spec.echo_time)
    if spec.repetition_time is not None:
        ds.RepetitionTime = _ds(spec.repetition_time)
    if spec.magnetic_field_strength is not None:
        ds.MagneticFieldStrength = _ds(spec.magnetic_field_strength)
    return ds


def _save(ds: Dataset, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
