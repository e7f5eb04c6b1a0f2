"""Run the parser on each case of a reference data set and compare with its references."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from series_selection.common.models import REPORT_FILE, SERIES_IMAGES_FILE
from series_selection.parser.run import parse_folder
from series_selection_tools.fidelity.dicom_truth import compare_with_dicom, read_slices
from series_selection_tools.fidelity.worldspace import (
    Comparison,
    LoadedVolume,
    compare,
    load_volume,
)

REFERENCE_SUFFIXES = (".nii", ".nii.gz")


@dataclass(frozen=True)
class ReferenceResult:
    """The best agreement any of our volumes reached with one reference volume."""

    reference: str
    volume: str | None
    comparison: Comparison | None
    tolerance: float

    @property
    def matches(self) -> bool:
        return self.comparison is not None and self.comparison.agrees(self.tolerance)


@dataclass(frozen=True)
class CaseResult:
    """What the parser made of one case, and how it compares with the references."""

    case: str
    volumes: tuple[str, ...]
    refused: tuple[str, ...]
    references: tuple[ReferenceResult, ...] = field(default_factory=tuple)
    resampled: tuple[str, ...] = ()
    """How resampled volumes were made (their ``resampled`` text)."""
    dicom_agreement: tuple[int, float] | None = None
    """For resampled classic stacks: points compared with DICOM-defined values, max difference."""
    duplicates: tuple[str, ...] = ()
    """Files skipped as duplicates although their content differs (evaluated one by one)."""

    @property
    def matches(self) -> bool:
        return bool(self.references) and all(r.matches for r in self.references)


def load_cases(root: Path) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((root / "cases.json").read_text())["cases"]
    return cases


def reference_volumes(case: dict[str, Any]) -> list[str]:
    """The case's reference NIfTI files (colour references are not comparable to grayscale)."""
    return [r for r in case["references"] if r.endswith(REFERENCE_SUFFIXES)]


def evaluate_case(root: Path, case: dict[str, Any], workdir: Path, workers: int = 1) -> CaseResult:
    """Convert ``case`` into ``workdir`` and pair every reference with our closest volume."""
    source = root / case["input"]
    if source.is_file():  # the parser reads folders
        (workdir / "in").mkdir(parents=True)
        shutil.copy(source, workdir / "in")
        source = workdir / "in"
    parse_folder(source, workdir / "all", "nii", workers)
    images, report = _outputs(workdir / "all")
    duplicates = tuple(
        f["path"]
        for f in report["files"]
        if f["status"] == "duplicate" and "different content" in f["reason"]
    )
    ours = _volumes(workdir, "all", images)
    for number, duplicate in enumerate(duplicates):
        alone = workdir / f"duplicate-{number}"
        (alone / "in").mkdir(parents=True)
        shutil.copy(source / duplicate, alone / "in")
        parse_folder(alone / "in", alone / "out", "nii", workers)
        ours.update(_volumes(workdir, f"{alone.name}/out", _outputs(alone / "out")[0]))
    refused = tuple(s["reason"] for s in report["series"] if "reason" in s)
    results = []
    for reference in reference_volumes(case):
        loaded = load_volume(root / reference)
        results.append(_best_match(reference, loaded, _tolerance(root / reference, loaded), ours))
    resampled = tuple(v["resampled"] for vs in images.values() for v in vs if v["resampled"])
    agreement = None
    if resampled and len(images) == 1:  # one series: each of its volumes against DICOM
        (volumes,) = images.values()
        files = [source / f["path"] for f in report["files"] if f["status"] == "used"]
        slices = read_slices(files)
        each = [
            compare_with_dicom(load_volume(workdir / "all" / v["path"]), slices) for v in volumes
        ]
        agreement = (sum(c for c, _ in each), max(d for _, d in each))
    return CaseResult(
        case["input"],
        tuple(sorted(ours)),
        refused,
        tuple(results),
        resampled,
        agreement,
        duplicates,
    )


def _outputs(folder: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    images = json.loads((folder / SERIES_IMAGES_FILE).read_text())
    report = json.loads((folder / REPORT_FILE).read_text())
    return images, report


def _volumes(workdir: Path, output: str, images: dict[str, Any]) -> dict[str, LoadedVolume]:
    """Our volumes in ``workdir/output``, keyed by their path below ``workdir``."""
    return {
        f"{output}/{v['path']}": load_volume(workdir / output / v["path"])
        for vs in images.values()
        for v in vs
    }


def _tolerance(path: Path, loaded: LoadedVolume) -> float:
    """Half the reference's quantisation step (its scl_slope, or 1 for unscaled integers);
    for floating-point references, 1e-4 of their largest value."""
    header: Any = nib.load(path).header  # the header only: the voxels are in ``loaded``
    slope, _ = header.get_slope_inter()
    if header.get_data_dtype().kind == "f":
        return 1e-4 * float(np.max(np.abs(loaded.values)) or 1.0)
    return 0.5 * abs(slope) if slope else 0.5


def _best_match(
    reference: str, loaded: LoadedVolume, tolerance: float, ours: dict[str, LoadedVolume]
) -> ReferenceResult:
    expected = _squeeze(loaded)
    best: ReferenceResult = ReferenceResult(reference, None, None, tolerance)
    for path, volume in ours.items():
        candidate = _squeeze(volume)
        if candidate.values.shape[3:] != expected.values.shape[3:]:
            continue
        comparison = compare(candidate, expected)
        if best.comparison is None or _rank(comparison) < _rank(best.comparison):
            best = ReferenceResult(reference, path, comparison, tolerance)
    return best


def _squeeze(volume: LoadedVolume) -> LoadedVolume:
    """Drop trailing length-1 axes beyond the third (a 4D file of one volume is 3D)."""
    values = volume.values
    while values.ndim > 3 and values.shape[-1] == 1:
        values = values[..., 0]
    return LoadedVolume(values, volume.affine_lps)


def _rank(comparison: Comparison) -> tuple[bool, float, float, float]:
    """Aligned grids first, then values that are a linear rescale of the reference's, then
    the smallest difference."""
    return (
        comparison.compared_voxels == 0,
        round(comparison.max_grid_offset_voxels, 3),
        round(comparison.max_linear_residual, 6),
        comparison.max_abs_difference,
    )
