"""Volume assembly: split a series' frames into volumes, order them, and stack their voxels.

A series becomes several volumes when its frames differ in anything that must be constant in
a volume (orientation, matrix, pixel spacing, echo, complex component). Frames repeating the
same positions become a 4D volume when every position repeats equally often.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt

from series_selection.common.errors import ConversionError, GeometryError
from series_selection.common.models import Rescale
from series_selection.parser.frames import Frame, FrameSource, StoredPixels
from series_selection.parser.geometry import (
    FloatArray,
    affine_lps,
    distances_along,
    in_plane_drift,
    in_plane_offsets,
    position_tolerance,
    regular_slice_spacing,
    slice_normal,
)
from series_selection.parser.resample import (
    Resampling,
    even_plane_step_and_count,
    even_planes,
    in_plane_grid,
)

GEOMETRY_KEYWORDS = ("ImageOrientationPatient", "Rows", "Columns", "PixelSpacing")
SAME_POSITION_MM = 1e-3
MONOCHROME1_NOTE = "MONOCHROME1: stored values kept; higher values are meant to display darker"
MAX_GAP_SPACINGS = 3.0
"""A gap between slices wider than this many nominal spacings (the median gap) is never filled:
the series is split there into stacks. Up to it, two missing slices in a row are interpolated."""
MAX_INTERPOLATED_SHARE = 0.25
"""An uneven stack is resampled only when its regular grid has at most this share of planes
more than the slices acquired (or one plane more: a single missing slice); else it is refused,
as more made up than measured."""


@dataclass(frozen=True)
class PlannedVolume:
    """Frames of one volume in storage order (time-major, then slices ascending the normal)."""

    label: str
    distinguished_by: dict[str, Any]
    frames: tuple[Frame, ...]
    time_points: int
    affine_lps: FloatArray
    notes: tuple[str, ...] = ()
    resampling: Resampling | None = None


@dataclass(frozen=True)
class RefusedVolume:
    """Frames that cannot form a geometrically correct volume, and why."""

    label: str
    reason: str
    frame_count: int


def plan_volumes(frames: Sequence[Frame]) -> list[PlannedVolume | RefusedVolume]:
    """Split ``frames`` into volumes (sorted deterministically) and plan each one's geometry;
    frames without patient position become 2D images, one per file."""
    groups: dict[tuple[tuple[str, Any], ...], list[Frame]] = defaultdict(list)
    for frame in frames:
        if frame.located:
            groups[_volume_key(frame)].append(frame)
    keys = sorted(groups, key=repr)
    labels = _labels(keys)
    plans: list[PlannedVolume | RefusedVolume] = []
    for key, (label, distinguished_by) in zip(keys, labels, strict=True):
        try:
            stacks = _regular_stacks(groups[key])
        except ConversionError as error:
            plans.append(RefusedVolume(label, str(error), len(groups[key])))
            continue
        for number, (stack, note) in enumerate(stacks, start=1):
            part = "_".join(filter(None, (label, f"stack-{number}"))) if note else label
            try:
                plans.append(_plan(stack, part, distinguished_by, note))
            except ConversionError as error:
                plans.append(RefusedVolume(part, str(error), len(stack)))
    return plans + _plane_images([frame for frame in frames if not frame.located])


def _plane_images(frames: Sequence[Frame]) -> list[PlannedVolume]:
    """One 2D image per file (a multi-frame file: 2D + time, its frames in order), placed in its
    own plane: column spacing along x, row spacing along y, origin 0, no patient position."""
    by_file: dict[str, list[Frame]] = defaultdict(list)
    for frame in frames:
        by_file[frame.source].append(frame)
    files = sorted(by_file.values(), key=lambda f: (f[0].order, f[0].source))
    images = []
    for number, file_frames in enumerate(files, start=1):
        ordered = tuple(sorted(file_frames, key=lambda f: f.index))
        first = ordered[0]
        notes = [first.spacing_note]
        if len(ordered) > 1:
            notes.append(f"2D + time: {len(ordered)} frames")
        if first.photometric == "MONOCHROME1":
            notes.append(MONOCHROME1_NOTE)
        row_spacing, column_spacing = first.pixel_spacing
        images.append(
            PlannedVolume(
                label=f"image-{number}" if len(files) > 1 else "",
                distinguished_by={},
                frames=ordered,
                time_points=len(ordered),
                affine_lps=np.diag([column_spacing, row_spacing, 1.0, 1.0]),
                notes=tuple(notes),
            )
        )
    return images


def _regular_stacks(frames: list[Frame]) -> list[tuple[list[Frame], str]]:
    """``frames`` split into stacks that need no more than a little interpolation, each with the
    note that says why (none when the frames stay whole): split where slices lie more than
    ``MAX_GAP_SPACINGS`` nominal spacings apart, and, where a regular grid would still be mostly
    made up, wherever the slice spacing changes."""
    normal = slice_normal(frames[0].orientation)
    distances = distances_along(normal, np.array([f.position for f in frames], dtype=float))
    slots = np.unique(np.round(distances / SAME_POSITION_MM)) * SAME_POSITION_MM
    if slots.size < 3:
        return [(frames, "")]
    gaps = np.diff(slots)
    nominal = float(np.median(gaps))
    cuts = set((np.flatnonzero(gaps > MAX_GAP_SPACINGS * nominal) + 1).tolist())
    reasons = []
    if cuts:
        widest = max(float(gaps[c - 1]) for c in cuts)
        reasons.append(f"gaps up to {widest:.1f} mm between slices {nominal:.3f} mm apart")
    changes = set()
    for piece in np.split(np.arange(slots.size), sorted(cuts)):
        if _mostly_made_up(slots[piece]):
            changes |= {int(piece[0]) + cut for cut in _spacing_changes(np.diff(slots[piece]))}
    if changes:
        reasons.append("slice spacing changes where a regular grid would be mostly interpolated")
    if not cuts | changes:
        return [(frames, "")]
    starts = sorted(cuts | changes)
    note = f"one of {len(starts) + 1} stacks of the series, each as acquired: " + "; ".join(reasons)
    bounds = np.array([(slots[c - 1] + slots[c]) / 2 for c in starts])
    parts: list[list[Frame]] = [[] for _ in range(len(starts) + 1)]
    for frame, distance in zip(frames, distances, strict=True):
        parts[int(np.searchsorted(bounds, distance))].append(frame)
    return [(part, note) for part in parts]


def _mostly_made_up(slot_distances: FloatArray) -> bool:
    """Whether a regular grid through these slices would have more planes than
    ``MAX_INTERPOLATED_SHARE`` allows beyond the slices themselves."""
    if slot_distances.size < 3:
        return False
    try:
        regular_slice_spacing(slot_distances)
        return False
    except GeometryError:
        _, count = even_plane_step_and_count(slot_distances)
        return count - slot_distances.size > max(1, MAX_INTERPOLATED_SHARE * count)


def _spacing_changes(gaps: FloatArray) -> list[int]:
    """Where (slice indices) a new stack starts, taking slices while their spacing stays the
    first gap's: a gap of another size ends the stack, and the next gap sets the new spacing."""
    starts = []
    spacing = None
    for index, gap in enumerate(gaps):
        if spacing is None:
            spacing = gap
        elif abs(gap - spacing) > position_tolerance(spacing):
            starts.append(index + 1)
            spacing = None
    return starts


def _volume_key(frame: Frame) -> tuple[tuple[str, Any], ...]:
    return (
        *frame.split,
        ("ImageOrientationPatient", tuple(round(v, 4) for v in frame.orientation)),
        ("Rows", frame.rows),
        ("Columns", frame.columns),
        ("PixelSpacing", tuple(round(v, 4) for v in frame.pixel_spacing)),
    )


def _labels(
    keys: Sequence[tuple[tuple[str, Any], ...]],
) -> list[tuple[str, dict[str, Any]]]:
    """A short label and the distinguishing values of each group, from what varies between them.

    Labels read like ``series-3``, ``echo-2``, ``phase`` or ``stack-2`` (a distinct geometry),
    joined by ``_`` when several things vary.
    """
    if len(keys) == 1:
        return [("", {})]
    observed: dict[str, set[Any]] = defaultdict(set)
    for key in keys:
        for keyword, value in key:
            observed[keyword].add(value)
    # A value some groups lack varies too: else a group without it would share another's label.
    varying = [
        k for k, v in observed.items() if len(v) > 1 or any(k not in dict(key) for key in keys)
    ]
    ranks = {k: sorted(observed[k], key=repr) for k in ("EffectiveEchoTime",)}
    geometries = sorted({_geometry(key) for key in keys}, key=repr)
    result = []
    for key in keys:
        fields = dict(key)
        parts = [
            _LABELS[k](fields[k], ranks.get(k)) for k in _LABELS if k in varying and k in fields
        ]
        if any(k in varying for k in GEOMETRY_KEYWORDS):
            parts.append(f"stack-{geometries.index(_geometry(key)) + 1}")
        distinguished = {k: _plain(fields[k]) for k in varying if k in fields}
        result.append(("_".join(parts), distinguished))
    return result


_LABELS: dict[str, Any] = {
    "SamplesPerPixel": lambda value, _: "colour" if value == 3 else "grayscale",
    "SeriesNumber": lambda value, _: f"series-{value}",
    "EchoNumbers": lambda value, _: f"echo-{value}",
    "EffectiveEchoTime": lambda value, ranked: f"echo-{ranked.index(value) + 1}",
    "ComplexImageComponent": lambda value, _: str(value).lower(),
}


def _geometry(key: tuple[tuple[str, Any], ...]) -> tuple[Any, ...]:
    fields = dict(key)
    return tuple(fields.get(k) for k in GEOMETRY_KEYWORDS)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _plan(
    frames: list[Frame], label: str, distinguished_by: dict[str, Any], note: str = ""
) -> PlannedVolume:
    first = frames[0]
    normal = slice_normal(first.orientation)
    positions = np.array([f.position for f in frames], dtype=float)
    distances = distances_along(normal, positions)
    slots: dict[int, list[int]] = defaultdict(list)
    for index, distance in enumerate(distances):
        slots[round(distance / SAME_POSITION_MM)].append(index)
    slice_keys = sorted(slots)
    repeats = {len(members) for members in slots.values()}
    if len(repeats) != 1:
        counts = sorted(len(m) for m in slots.values())
        raise ConversionError(
            f"slice positions repeat unevenly ({len(slots)} positions, {counts[0]} to "
            f"{counts[-1]} frames each): not one 3D or 4D volume"
        )
    time_points = repeats.pop()
    if first.secondary_capture and (len(slots) < 2 or time_points > 1):
        raise ConversionError(
            "secondary capture images (screens, documents) that do not stack into slices"
        )
    by_time = [sorted(slots[k], key=lambda i: frames[i].order) for k in slice_keys]
    for members in by_time:
        orders = [frames[i].order for i in members]
        if time_points > 1 and len(set(orders)) < len(orders):
            raise ConversionError(
                "frames repeat a position with nothing to order them in time "
                "(no temporal position, acquisition number, time, instance or frame number differs)"
            )
    ordered = [frames[by_time[k][t]] for t in range(time_points) for k in range(len(slice_keys))]
    first_slices = np.array([frames[members[0]].position for members in by_time])
    notes = [note] if note else []
    if first.photometric == "MONOCHROME1":
        notes.append(MONOCHROME1_NOTE)
    resampling = None
    if len(slice_keys) > 1:
        slice_distances = np.array([distances[m[0]] for m in by_time])
        spacing, resampling = _regular_grid(first, normal, slice_distances, first_slices)
        if resampling is not None and first.colour:
            raise ConversionError(
                f"colour stack that would need resampling: {resampling.description}"
            )
    else:
        spacing = first.thickness or 1.0
        notes.append(
            f"single slice: slice spacing {spacing:g} mm taken from "
            + ("SliceThickness" if first.thickness else "a default of 1 mm")
        )
    origin = first_slices[0]
    if resampling is not None and resampling.grid is not None:
        start = resampling.grid.start
        origin = affine_lps(first.orientation, first.pixel_spacing, origin, normal) @ (
            start[0],
            start[1],
            0,
            1,
        )
    affine = affine_lps(first.orientation, first.pixel_spacing, origin[:3], spacing * normal)
    return PlannedVolume(
        label=label,
        distinguished_by=distinguished_by,
        frames=tuple(ordered),
        time_points=time_points,
        affine_lps=affine,
        notes=tuple(notes),
        resampling=resampling,
    )


def _regular_grid(
    first: Frame, normal: FloatArray, distances: FloatArray, origins: FloatArray
) -> tuple[float, Resampling | None]:
    """The slice spacing of the output grid, and how to resample onto it (``None``: no need)."""
    problems = []
    planes = None
    try:
        spacing = regular_slice_spacing(distances)
    except GeometryError as uneven:
        _, count = even_plane_step_and_count(distances)
        extra = count - distances.size
        if extra > max(1, MAX_INTERPOLATED_SHARE * count):
            raise ConversionError(
                f"{uneven}; a regular grid would need {count} planes for {distances.size} "
                f"slices: more than {MAX_INTERPOLATED_SHARE:.0%} of the volume made up"
            ) from None
        planes = even_planes(distances)
        spacing = float(planes[1] - planes[0])
        problems.append(
            f"{uneven}; linearly interpolated onto {len(planes)} planes {spacing:.3f} mm apart"
        )
    grid = None
    drift = in_plane_drift(normal, origins)
    if drift > position_tolerance(spacing):
        offsets = in_plane_offsets(first.orientation, first.pixel_spacing, origins)
        grid = in_plane_grid(offsets, first.rows, first.columns)
        if grid.shape[0] * grid.shape[1] > 2 * first.rows * first.columns:
            raise ConversionError(
                f"slice origins drift up to {drift:.1f} mm within the image plane: a common "
                f"{grid.shape[1]}x{grid.shape[0]} grid for {first.columns}x{first.rows} images "
                "would lie mostly outside every slice"
            )
        problems.append(
            f"gantry tilt: slice origins drift up to {drift:.2f} mm within the image plane; "
            f"each slice shifted onto a common {grid.shape[1]}x{grid.shape[0]} grid (bilinear)"
        )
    if not problems:
        return spacing, None
    return spacing, Resampling(distances, planes, grid, "; ".join(problems))


def stack_voxels(
    plan: PlannedVolume, pixels: dict[tuple[str, int], FrameSource]
) -> npt.NDArray[Any]:
    """Stored values as an array (k, j, i), or (t, k, j, i) for 4D; colour adds a last axis.

    Each frame's pixels are taken out of ``pixels`` as they are copied (or read from their
    file straight into place), so a series is held about once, not twice.
    """
    first = pixels[plan.frames[0].key]
    voxels = np.empty((len(plan.frames), *first.shape), dtype=first.dtype)
    for slot, frame in enumerate(plan.frames):
        source = pixels.pop(frame.key)
        if isinstance(source, StoredPixels):
            source.read_into(voxels[slot])
        else:
            voxels[slot] = source
    if plan.time_points > 1:
        slices = len(plan.frames) // plan.time_points
        voxels = voxels.reshape((plan.time_points, slices, *voxels.shape[1:]))
    return voxels


def rescaled_voxels(
    stored: npt.NDArray[Any], slopes: FloatArray, intercepts: FloatArray, keep_scaling: bool
) -> tuple[npt.NDArray[Any], Rescale]:
    """Apply the modality rescale exactly, in the narrowest type that holds every value.

    ``slopes`` (finite, non-zero) and ``intercepts`` (finite) hold one value per frame, in
    storage order; ``stored`` may be rescaled in place. Whole-number rescales of integers give
    integers: the stored type, else int16, int32 or int64, the first holding every value.
    Others give float32 where it holds every value exactly, else float64; with
    ``keep_scaling`` (NIfTI) a rescale shared by all frames whose numbers float32 holds is not
    applied but returned as ``nifti_scl``, for the writer's scl_slope/scl_inter. Values that
    no type holds exactly raise ``ConversionError``.
    """
    slope, intercept = float(slopes[0]), float(intercepts[0])
    shared = bool(np.all(slopes == slope) and np.all(intercepts == intercept))
    if shared and slope == 1.0 and intercept == 0.0:
        return stored, Rescale(1.0, 0.0, "identity")
    applied = Rescale(slope, intercept, "applied") if shared else Rescale(None, None, "applied")
    integers = stored.dtype.kind in "iu"
    if integers and all(float(v).is_integer() for v in (*slopes, *intercepts)):
        low, high = _value_range(stored, slopes, intercepts, int)
        target = _integer_type(low, high, stored.dtype)
        if target is None:
            raise _unholdable(low, high)
        return _whole_rescale(stored, slopes, intercepts, target), applied
    if integers:
        low, high = _value_range(stored, slopes, intercepts, float)
        if not np.isfinite([low, high]).all():
            raise _unholdable(low, high)
        if keep_scaling and shared and all(map(_float32_holds, (slope, intercept, low, high))):
            return stored, Rescale(slope, intercept, "nifti_scl")
    per_frame = (*stored.shape[:-2], 1, 1)
    values = stored.astype(np.float64) * slopes.reshape(per_frame) + intercepts.reshape(per_frame)
    return _exact_float(values), applied


def _value_range(
    stored: npt.NDArray[Any], slopes: FloatArray, intercepts: FloatArray, number: type
) -> tuple[Any, Any]:
    """The lowest and highest ``slope * stored + intercept``, frame by frame, in Python
    integers or floats (``number``)."""
    frames = stored.reshape(len(slopes), -1)
    ends = [
        number(slope) * number(value) + number(intercept)
        for slope, intercept, low, high in zip(
            slopes, intercepts, frames.min(axis=1), frames.max(axis=1), strict=True
        )
        for value in (low, high)
    ]
    return min(ends), max(ends)


def _unholdable(low: float, high: float) -> ConversionError:
    low_text, high_text = (f"{Decimal(end):.6g}" for end in (low, high))  # ints beyond float too
    return ConversionError(
        f"rescaled values (RescaleSlope * stored + RescaleIntercept) run from {low_text} to "
        f"{high_text}: no type holds them exactly"
    )


def _whole_rescale(
    stored: npt.NDArray[Any], slopes: FloatArray, intercepts: FloatArray, target: np.dtype[Any]
) -> npt.NDArray[Any]:
    """``stored * slope + intercept`` in ``target``, which holds every result.

    Computed modulo 2**bits in the unsigned type of ``target``'s size, where numpy's integers
    wrap around by definition: intermediate values may wrap, the results come out exact.
    """
    unsigned = np.dtype(f"u{target.itemsize}")
    same_size = stored.dtype.itemsize == target.itemsize
    values = stored.view(unsigned) if same_size else stored.astype(unsigned)

    def residues(numbers: FloatArray) -> npt.NDArray[Any]:
        modulus = 1 << 8 * target.itemsize
        per_frame = (*stored.shape[:-2], 1, 1)
        return np.array([int(n) % modulus for n in numbers], unsigned).reshape(per_frame)

    if np.any(slopes != 1):
        np.multiply(values, residues(slopes), out=values)
    if np.any(intercepts != 0):
        np.add(values, residues(intercepts), out=values)
    return values.view(target)


FLOAT32 = np.finfo(np.float32)


def _float32_holds(value: float) -> bool:
    """float32 keeps ``value`` to its own precision: zero, or within its normal range."""
    return value == 0 or float(FLOAT32.smallest_normal) <= abs(value) <= float(FLOAT32.max)


def _exact_float(values: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
    """float32 when it holds every value exactly, else float64."""
    with np.errstate(over="ignore"):  # beyond float32: not equal, so float64
        narrow = values.astype(np.float32)
    return narrow if np.array_equal(narrow.astype(np.float64), values) else values


def _integer_type(low: int, high: int, stored: np.dtype[Any]) -> np.dtype[Any] | None:
    """The stored type if it holds [low, high], else the narrowest signed type that does."""
    for candidate in (stored, np.dtype(np.int16), np.dtype(np.int32), np.dtype(np.int64)):
        if np.iinfo(candidate).min <= low <= high <= np.iinfo(candidate).max:
            return candidate
    return None
