"""Write the benchmark corpus: real DICOM files from the synthetic generator, sized by a scale.

Scale 1.0 is the reference corpus: 8 studies (6 CT, 2 MR), 22 series, 2,898 extension-less
files in nested folders, about 1.4 GB. Each CT study holds a 512 x 512 tri-plane localizer, a
512 x 512 x 300 thin series and a 512 x 512 x 100 thick series; each MR study a sagittal and an
axial 384 x 384 x 120 series. Other scales take the first ``round(8 * scale)`` studies of the
repeating pattern CT, CT, CT, MR. The same scale always writes byte-identical files.

    python benchmarks/make_corpus.py --scale 1.0 --output /tmp/dicom-bench
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from series_selection_tools.samples.synthetic import (
    SeriesSpec,
    StudySpec,
    ct_series,
    mr_series,
    write_localizer,
    write_series,
)

STUDY_PATTERN = ("CT", "CT", "CT", "MR")
STUDIES_AT_SCALE_1 = 8
DEFAULT_ROOT = Path("/tmp/dicom-bench")
CORPUS_FILE = "corpus.json"
DICOM_FOLDER = "dicom"


@dataclass(frozen=True)
class SeriesTask:
    """One series to write: where, what, and how its files are named."""

    folder: Path
    spec: SeriesSpec
    seed: int
    localizer: bool = False
    nested: bool = False


@dataclass(frozen=True)
class Corpus:
    """A written corpus and the facts a benchmark needs about it."""

    root: Path
    scale: float
    files: int
    bytes: int
    series: int
    largest_series_voxel_bytes: int

    @property
    def dicom(self) -> Path:
        """The folder holding the DICOM files (the tools' input)."""
        return self.root / DICOM_FOLDER


def corpus_tasks(dicom: Path, scale: float) -> list[SeriesTask]:
    """The series of the corpus at ``scale``, largest first (so a pool finishes evenly)."""
    count = max(1, round(STUDIES_AT_SCALE_1 * scale))
    tasks: list[SeriesTask] = []
    for index in range(count):
        modality = STUDY_PATTERN[index % len(STUDY_PATTERN)]
        study = StudySpec(
            patient_name=f"BENCH^{modality}{index:03d}",
            patient_id=f"BENCH-{index:03d}",
            study_description="CT CHEST ABDOMEN" if modality == "CT" else "MR BRAIN",
            accession_number=f"BENCH{index:04d}",
            study_date=f"2024{1 + index % 12:02d}{1 + index % 28:02d}",
        )
        folder = dicom / f"patient-{index:03d}" / f"{modality.lower()}-study"
        tasks += (
            _ct_study(folder, study, index) if modality == "CT" else _mr_study(folder, study, index)
        )
    return sorted(tasks, key=lambda task: -_voxel_bytes(task.spec))


def _ct_study(folder: Path, study: StudySpec, seed: int) -> list[SeriesTask]:
    common = {"study": study, "rows": 512, "columns": 512, "pixel_spacing": (0.7, 0.7)}
    return [
        SeriesTask(
            folder / "localizer",
            ct_series(**common, series_number=1, series_description="Topogram"),
            seed,
            localizer=True,
        ),
        SeriesTask(
            folder / "thin",
            ct_series(
                **common,
                slices=300,
                slice_spacing=1.0,
                origin=(-179.0, -179.0, -350.0),
                series_number=2,
                series_description="Body 1.0mm",
            ),
            seed,
            nested=True,
        ),
        SeriesTask(
            folder / "thick",
            ct_series(
                **common,
                slices=100,
                slice_spacing=3.0,
                origin=(-179.0, -179.0, -350.0),
                series_number=3,
                series_description="Body 3.0mm",
            ),
            seed,
        ),
    ]


def _mr_study(folder: Path, study: StudySpec, seed: int) -> list[SeriesTask]:
    common = {
        "study": study,
        "rows": 384,
        "columns": 384,
        "slices": 120,
        "pixel_spacing": (0.6, 0.6),
    }
    return [
        SeriesTask(
            folder / "t1-sagittal",
            mr_series(
                **common,
                slice_spacing=1.2,
                row_cosine=(0.0, 1.0, 0.0),
                column_cosine=(0.0, 0.0, -1.0),
                origin=(-72.0, -115.0, 115.0),
                series_number=2,
                series_description="T1 SAG",
                repetition_time=2300.0,
            ),
            seed,
        ),
        SeriesTask(
            folder / "t2-axial",
            mr_series(
                **common,
                slice_spacing=1.2,
                origin=(-115.0, -115.0, -72.0),
                series_number=3,
                series_description="T2 AX",
                echo_time=90.0,
                repetition_time=6000.0,
            ),
            seed,
        ),
    ]


def _voxel_bytes(spec: SeriesSpec) -> int:
    return spec.rows * spec.columns * spec.slices * spec.bits_allocated // 8


def write_task(task: SeriesTask) -> None:
    """Write one series of the corpus."""
    if task.localizer:
        write_localizer(task.folder, task.spec, center=(0.0, 0.0, -200.0), seed=task.seed)
    else:
        write_series(
            task.folder, task.spec, seed=task.seed, name_style="nested" if task.nested else "random"
        )


def corpus_root(root: Path, scale: float) -> Path:
    """Where the corpus of ``scale`` lives under ``root``."""
    return root / f"scale-{scale:g}"


def make_corpus(root: Path, scale: float, workers: int = 2) -> Corpus:
    """The corpus of ``scale`` under ``root``: reused when complete, else written afresh."""
    folder = corpus_root(root, scale)
    facts_file = folder / CORPUS_FILE
    if facts_file.is_file():
        facts = json.loads(facts_file.read_text())
        return Corpus(root=folder, **facts)
    shutil.rmtree(folder, ignore_errors=True)
    tasks = corpus_tasks(folder / DICOM_FOLDER, scale)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write_task, tasks))
    files = [path for path in (folder / DICOM_FOLDER).rglob("*") if path.is_file()]
    corpus = Corpus(
        root=folder,
        scale=scale,
        files=len(files),
        bytes=sum(path.stat().st_size for path in files),
        series=len(tasks),
        largest_series_voxel_bytes=max(_voxel_bytes(task.spec) for task in tasks),
    )
    facts = {key: value for key, value in vars(corpus).items() if key != "root"}
    facts_file.write_text(json.dumps(facts, indent=2) + "\n")
    return corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="1.0: the reference corpus")
    parser.add_argument("--output", type=Path, default=DEFAULT_ROOT, help="corpora go under here")
    parser.add_argument("--workers", type=int, default=2, help="processes writing series")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    corpus = make_corpus(args.output, args.scale, args.workers)
    print(
        f"{corpus.dicom}: {corpus.files} files, {corpus.series} series, {corpus.bytes / 1e9:.2f} GB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
