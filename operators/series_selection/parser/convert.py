"""Convert one series: read its files, plan its volumes, write them. Runs in a worker process."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from series_selection.common.errors import ConversionError, DicomReadError, OutputError
from series_selection.common.models import (
    IMAGE_PLANE_ONLY,
    NO_PLANE,
    PATIENT_GEOMETRY,
    Rescale,
    VolumeEntry,
)
from series_selection.common.orientation import plane_of
from series_selection.parser.assembly import (
    PlannedVolume,
    RefusedVolume,
    plan_volumes,
    rescaled_voxels,
    stack_voxels,
)
from series_selection.parser.frames import Frame, FrameSource, read_frames
from series_selection.parser.geometry import flipped_affine, nifti_flips, spacing_and_direction
from series_selection.parser.previews import write_previews
from series_selection.parser.resample import resample_values
from series_selection.parser.writers import WRITERS, publish

VOLUMES_FOLDER = "volumes"
MAX_NAME_LENGTH = 96
MAX_UID_LENGTH = 64
MAX_LABEL_LENGTH = 64
WELL_FORMED_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
SCRATCH_PREFIX = ".partial-"


@dataclass(frozen=True)
class SeriesJob:
    """What a worker needs to convert one series."""

    input_root: Path
    output_root: Path
    format: str
    study_uid: str
    series_uid: str
    paths: tuple[str, ...]
    series_uid_shared: bool = False
    """The series UID also appears in another study: file names then name the study too."""
    previews: bool = True
    """Write small pictures of each volume (``previews``)."""


@dataclass(frozen=True)
class SeriesOutcome:
    """The volumes written for a series, and why anything was not converted."""

    study_uid: str
    series_uid: str
    volumes: tuple[VolumeEntry, ...] = ()
    problems: tuple[str, ...] = ()
    has_pixels: bool = True


def safe_file_stem(series_uid: str, label: str, study_uid: str | None = None) -> str:
    """A file name stem from a series UID (and a volume label) that cannot leave its folder or
    collide with another series' stem.

    A well-formed UID (digits and dots, at most 64 characters) is used as it is. Anything else
    keeps only ``[A-Za-z0-9.-]`` (others become ``_``), is cut to a sane length, and gets a
    hash of the original; as a well-formed UID has no ``_``, no two series can share a stem.
    ``study_uid`` (for a series UID reused in several studies) adds ``_study-<hash>``. A label
    over ``MAX_LABEL_LENGTH`` (a SeriesNumber of hundreds of digits, say) is cut and hashed too.
    """
    if len(series_uid) <= MAX_UID_LENGTH and WELL_FORMED_UID.fullmatch(series_uid):
        stem = series_uid
    else:
        cleaned = re.sub(r"[^A-Za-z0-9.\-]", "_", series_uid[:MAX_NAME_LENGTH]).strip(".")
        digest = _digest(series_uid)[:16]
        stem = f"{cleaned}_{digest}" if cleaned else digest
    if study_uid is not None:
        stem += f"_study-{_digest(study_uid)[:12]}"
    if len(label) > MAX_LABEL_LENGTH:
        label = f"{label[:MAX_LABEL_LENGTH]}_{_digest(label)[:16]}"
    return f"{stem}_{label}" if label else stem


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def convert_series(job: SeriesJob) -> SeriesOutcome:
    """Read, split, check and write every volume of one series. What the files or the memory
    available cause becomes the outcome's problems; raises ``OutputError`` when the outputs
    cannot be written (the run must fail), and lets a defect of ours through."""
    try:
        return _convert(job)
    except MemoryError:
        problem = "out of memory converting it (give more memory or lower --max-series-bytes)"
    return SeriesOutcome(job.study_uid, job.series_uid, problems=(problem,))


def _convert(job: SeriesJob) -> SeriesOutcome:
    frames: list[Frame] = []
    pixels: dict[tuple[str, int], FrameSource] = {}
    failed_files: dict[str, list[str]] = defaultdict(list)
    for relative in job.paths:
        try:
            for frame, frame_pixels in read_frames(job.input_root / relative, relative):
                frames.append(frame)
                pixels[frame.key] = frame_pixels
        except ConversionError as error:
            failed_files[str(error)].append(relative)
        except DicomReadError as error:
            failed_files[f"unreadable: {error}"].append(relative)
        except MemoryError:
            failed_files["out of memory reading it"].append(relative)
        except (OSError, EOFError) as error:  # gone or cut short: not the full path OSError names
            reason = getattr(error, "strerror", None) or error
            failed_files[f"unreadable: {reason}"].append(relative)
    problems = [_files_problem(reason, files) for reason, files in failed_files.items()]
    if not frames:
        return SeriesOutcome(job.study_uid, job.series_uid, problems=tuple(problems))

    volumes: list[VolumeEntry] = []
    for plan in plan_volumes(frames):
        if isinstance(plan, PlannedVolume):
            try:
                volumes.append(_write_volume(job, plan, stack_voxels(plan, pixels)))
                continue
            except ConversionError as error:
                plan = RefusedVolume(plan.label, str(error), len(plan.frames))
        name = f"{plan.label}: " if plan.label else ""
        problems.append(f"{name}{plan.reason} ({plan.frame_count} frames not converted)")
    return SeriesOutcome(job.study_uid, job.series_uid, tuple(volumes), tuple(problems))


def _write_volume(job: SeriesJob, plan: PlannedVolume, stored: npt.NDArray[Any]) -> VolumeEntry:
    slopes = np.array([f.slope for f in plan.frames])
    intercepts = np.array([f.intercept for f in plan.frames])
    resampling = plan.resampling
    keep_scaling = job.format != "mhd" and resampling is None
    colour = plan.frames[0].colour
    if colour:  # channel values: no modality rescale
        voxels, rescale = stored, Rescale(1.0, 0.0, "identity")
    else:
        voxels, rescale = rescaled_voxels(stored, slopes, intercepts, keep_scaling)
    if resampling is not None:
        voxels = resample_values(voxels, resampling)
    stem = safe_file_stem(
        job.series_uid, plan.label, job.study_uid if job.series_uid_shared else None
    )
    file_name = f"{stem}.{job.format}"
    destination = job.output_root / VOLUMES_FOLDER
    try:
        scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=job.output_root))
    except OSError as error:
        raise OutputError(f"cannot write into {job.output_root}: {error.strerror}") from error
    located = plan.frames[0].located
    grid_shape = voxels.shape[-2::-1] if colour else voxels.shape[::-1]
    stored, affine = voxels, plan.affine_lps
    if job.format != "mhd" and located:
        flips = nifti_flips(affine)
        affine = flipped_affine(affine, grid_shape, flips)
        stored = np.flip(voxels, tuple(_array_axis(a, voxels.ndim, colour) for a in flips))
    try:
        write = WRITERS[job.format]
        written = write(scratch / file_name, stored, affine, rescale, colour, located)
        publish(written, destination)
    except OSError as error:
        raise OutputError(f"cannot write {file_name}: {error.strerror or error}") from error
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    first = plan.frames[0]
    previews = (
        write_previews(
            voxels, plan.affine_lps, rescale, colour, first.photometric,
            job.input_root / first.source, job.output_root, stem, located,
        )
        if job.previews
        else None
    )  # fmt: skip
    spacing, direction = spacing_and_direction(affine)
    return VolumeEntry(
        path=f"{VOLUMES_FOLDER}/{file_name}",
        format=job.format,
        label=plan.label,
        distinguished_by=plan.distinguished_by,
        shape=grid_shape,
        channels=3 if colour else 1,
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin=tuple(float(v) for v in affine[:3, 3]),  # type: ignore[arg-type]
        direction=tuple(tuple(float(v) for v in direction[:, a]) for a in range(3)),  # type: ignore[misc]
        orientation=plane_of(plan.frames[0].orientation) if located else NO_PLANE,
        dtype=voxels.dtype.name,  # whatever byte order was read: the files are little-endian
        rescale=rescale,
        instance_count=len({f.source for f in plan.frames}),
        frame_count=len(plan.frames),
        resampled=resampling.description if resampling else None,
        notes=plan.notes,
        study_instance_uid=job.study_uid,
        geometry=PATIENT_GEOMETRY if located else IMAGE_PLANE_ONLY,
        previews=previews,
    )


def _array_axis(axis: int, ndim: int, colour: bool) -> int:
    """The array axis of voxel axis ``axis`` (0 = i) in (k, j, i), (t, k, j, i) or colour
    (k, j, i, 3) order."""
    return 2 - axis if colour else ndim - 1 - axis


def _files_problem(reason: str, files: list[str]) -> str:
    if len(files) == 1:
        return f"{files[0]}: {reason}"
    return f"{reason} ({len(files)} files, e.g. {files[0]})"
