"""The parser's run: scan -> hierarchy -> convert each image series -> write the JSON outputs."""

from __future__ import annotations

import filecmp
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any

from pydicom import config

from series_selection.common.errors import InputError
from series_selection.common.folders import OutputFolder, check_apart
from series_selection.common.jsonio import write_json
from series_selection.common.models import (
    METADATA_FILE,
    REPORT_FILE,
    SERIES_IMAGES_FILE,
    SeriesImages,
    VolumeEntry,
)
from series_selection.common.progress import Progress
from series_selection.parser.bounds import default_max_series_bytes, size_text
from series_selection.parser.convert import (
    SeriesJob,
    SeriesOutcome,
    convert_series,
)
from series_selection.parser.hierarchy import (
    Duplicate,
    HeaderSummary,
    SeriesGroup,
    StudyGroup,
    group_headers,
)
from series_selection.parser.metadata import HeaderStore, write_metadata
from series_selection.parser.scan import ScannedFile, list_files, scan_file
from series_selection.parser.workers import Workers

log = logging.getLogger(__name__)

OWNER = "dicom-parser"
LOST = " (by the out-of-memory killer, say)"


@dataclass(frozen=True)
class ParseSummary:
    """Counts for the closing log line and the report."""

    files: int
    used: int
    duplicate: int
    skipped: int
    studies: int
    series: int
    volumes: int
    series_without_volume: int
    format: str

    def line(self) -> str:
        return (
            f"{self.studies} studies, {self.series} series, {self.volumes} volumes "
            f"({self.format}); {self.files} files: {self.used} used, {self.duplicate} duplicate, "
            f"{self.skipped} skipped"
        )


def parse_folder(
    input_dir: Path,
    output_dir: Path,
    fmt: str,
    workers: int,
    max_series_bytes: int | None = None,
    progress_bar: bool = False,
    previews: bool = True,
) -> ParseSummary:
    """Run the whole parser from ``input_dir`` into ``output_dir``.

    A series whose headers claim more than ``max_series_bytes`` of pixel data (by default
    ``default_max_series_bytes()``) is refused before any of it is read. Outputs are staged and
    published together at the end. Progress goes to the log every few seconds, or to a bar
    on standard error with ``progress_bar``.
    """
    input_root, output_root = _check_folders(input_dir, output_dir)
    if max_series_bytes is None:
        max_series_bytes = default_max_series_bytes()
    # Hospital data is full of values a little outside their VR's rules (long UIDs, text in IS).
    # The parser checks the values it uses where it uses them; pydicom's own check of every
    # value read only costs time and repeats the same warning. The workers, forked inside
    # this block, keep the setting.
    with config.disable_value_validation(), OutputFolder(output_root, OWNER) as output:
        summary, published = _parse(
            input_root, output.staging, fmt, workers, max_series_bytes, progress_bar, previews
        )
        output.publish(published)
    return summary


def _parse(
    input_root: Path,
    staging: Path,
    fmt: str,
    workers: int,
    max_series_bytes: int,
    bar: bool,
    previews: bool = True,
) -> tuple[ParseSummary, list[str]]:
    """Write every output into ``staging``; return the summary and the files written."""
    listed = list(list_files(input_root))
    log.info("found %d files under %s; %d worker process(es)", len(listed), input_root, workers)
    skipped = {path: problem for path, problem in listed if problem is not None}
    readable = [path for path, problem in listed if problem is None]
    headers: list[HeaderSummary] = []
    # One pool for both stages, its workers forked now, while this process is small: forked
    # later they would inherit (and, as Python touches it, copy) every header read so far.
    with Workers(workers) as pool, HeaderStore(staging) as store:
        scan = partial(scan_file, input_root, max_bytes=max_series_bytes)
        with Progress("reading headers", len(readable), "files", bar) as progress:
            for scanned in pool.map(scan, readable, _scan_lost, chunksize=32):
                progress.advance()
                if scanned.summary is None or scanned.header is None:
                    skipped[scanned.path] = scanned.skip_reason or "unreadable"
                else:
                    headers.append(scanned.summary)
                    store.put(scanned.path, scanned.header)
        if not headers:
            log.warning("no DICOM file found under %s (%d files)", input_root, len(listed))
        studies, duplicates = group_headers(headers)
        jobs, no_volume = _plan_jobs(studies, input_root, staging, fmt, max_series_bytes)
        jobs = [replace(job, previews=previews) for job in jobs]
        outcomes = _convert_all(pool, jobs, studies, staging / METADATA_FILE, store, bar)
    for study, series in _all_series(studies):
        reason = no_volume.get((study.uid, series.uid))
        if reason is not None:
            outcome = SeriesOutcome(study.uid, series.uid, problems=(reason,), has_pixels=False)
            outcomes[study.uid, series.uid] = outcome
            _log_outcome(series, outcome)
    volumes: dict[str, tuple[VolumeEntry, ...]] = {}
    for study, series in _all_series(studies):
        outcome = outcomes[study.uid, series.uid]
        if outcome.volumes:
            volumes[series.uid] = volumes.get(series.uid, ()) + outcome.volumes
    series_images = SeriesImages(volumes)
    report = _report(listed, skipped, headers, duplicates, studies, outcomes, input_root, fmt)
    write_json(staging / SERIES_IMAGES_FILE, series_images.to_json(), "series-images")
    write_json(staging / REPORT_FILE, report, "parse-report")
    published = [METADATA_FILE, SERIES_IMAGES_FILE, REPORT_FILE, *_volume_files(series_images)]
    return ParseSummary(**report["summary"]), published


def _convert_all(
    pool: Workers,
    jobs: list[SeriesJob],
    studies: Sequence[StudyGroup],
    metadata: Path,
    store: HeaderStore,
    bar: bool,
) -> dict[tuple[str, str], SeriesOutcome]:
    """Convert every job in the workers while ``dicom-metadata.json`` is written here, in a
    thread; each series' line is logged as its conversion arrives."""
    groups = {(study.uid, series.uid): series for study, series in _all_series(studies)}
    outcomes: dict[tuple[str, str], SeriesOutcome] = {}
    log.info("writing %s while the series convert", METADATA_FILE)
    writing = _Background(partial(write_metadata, metadata, studies, store))
    with Progress("converting", len(jobs), "series", bar) as progress:
        for outcome in pool.map(convert_series, jobs, _conversion_lost):
            progress.advance()
            key = outcome.study_uid, outcome.series_uid
            outcomes[key] = outcome
            _log_outcome(groups[key], outcome)
    writing.wait()
    return outcomes


class _Background:
    """``job`` run in a daemon thread: a run that fails or is interrupted does not wait for it
    (its staging folder, which the job writes into, is discarded). Where the system refuses a
    thread (a process limit), the job runs at once, in this one."""

    def __init__(self, job: Callable[[], None]) -> None:
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = threading.Thread(
            target=self._run, args=(job,), daemon=True
        )
        try:
            self._thread.start()
        except RuntimeError:  # "can't start new thread"
            self._thread = None
            job()

    def _run(self, job: Callable[[], None]) -> None:
        try:
            job()
        except BaseException as error:  # handed to wait(), in the thread that waits
            self._error = error

    def wait(self) -> None:
        """Wait for the job; raise what stopped it (a full disk, say)."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error


def _scan_lost(relative: str) -> ScannedFile:
    return ScannedFile(relative, skip_reason=f"reading it killed the worker process twice{LOST}")


def _conversion_lost(job: SeriesJob) -> SeriesOutcome:
    problem = f"converting it killed the worker process twice{LOST}"
    return SeriesOutcome(job.study_uid, job.series_uid, problems=(problem,))


def _check_folders(input_dir: Path, output_dir: Path) -> tuple[Path, Path]:
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    check_apart(input_dir, output_dir)
    if next(list_files(input_dir), None) is None:  # e.g. a mistyped path Docker created empty
        raise InputError(f"input folder {input_dir} holds no files")
    return input_dir.resolve(), output_dir.resolve()


def _all_series(studies: Iterable[StudyGroup]) -> Iterator[tuple[StudyGroup, SeriesGroup]]:
    for study in studies:
        for series in study.series:
            yield study, series


def _plan_jobs(
    studies: Iterable[StudyGroup], input_root: Path, output_root: Path, fmt: str, max_bytes: int
) -> tuple[list[SeriesJob], dict[tuple[str, str], str]]:
    """A conversion job per image series; the reason each other series gets no volume (both
    keyed by study and series UID)."""
    jobs: list[SeriesJob] = []
    no_volume: dict[tuple[str, str], str] = {}
    pairs = list(_all_series(studies))
    uses = Counter(series.uid for _, series in pairs)
    for study, series in pairs:
        claimed = sum(header.pixel_bytes for header in series.headers)
        if claimed > max_bytes:
            no_volume[study.uid, series.uid] = (
                f"its headers claim {size_text(claimed)} of pixel data, over the "
                f"{size_text(max_bytes)} limit set by the memory available (--max-series-bytes): "
                "not read"
            )
            continue
        if not any(header.has_image for header in series.headers):
            modality = series.first.modality or "unknown modality"
            no_volume[study.uid, series.uid] = (
                f"no image data ({modality}): listed in the metadata only"
            )
            continue
        paths = tuple(header.path for header in series.headers)
        shared = uses[series.uid] > 1
        jobs.append(SeriesJob(input_root, output_root, fmt, study.uid, series.uid, paths, shared))
    return jobs, no_volume


def _log_outcome(series: SeriesGroup, outcome: SeriesOutcome) -> None:
    first = series.first
    name = (
        f"series {first.series_number} {first.modality or '?'} "
        f"'{first.series_description or ''}' ({len(series.headers)} files)"
    )
    shapes = ", ".join("x".join(str(n) for n in v.shape) for v in outcome.volumes)
    if outcome.volumes:
        log.info("%s: %d volume(s) %s", name, len(outcome.volumes), shapes)
    level = logging.WARNING if outcome.has_pixels else logging.INFO
    for problem in outcome.problems:
        log.log(level, "%s: not converted: %s", name, problem)


def _report(
    listed: list[tuple[str, str | None]],
    skipped: dict[str, str],
    headers: list[HeaderSummary],
    duplicates: tuple[Duplicate, ...],
    studies: tuple[StudyGroup, ...],
    outcomes: dict[tuple[str, str], SeriesOutcome],
    input_root: Path,
    fmt: str,
) -> dict[str, Any]:
    duplicate_of = {d.path: d for d in duplicates}
    sop_instance_uid = {header.path: header.sop_instance_uid for header in headers}
    files = []
    for path, _ in listed:
        reason = skipped.get(path)
        if reason:
            files.append({"path": path, "status": "skipped", "reason": reason})
        elif path in duplicate_of:
            duplicate = duplicate_of[path]
            files.append(
                {
                    "path": path,
                    "status": "duplicate",
                    "reason": "same SOPInstanceUID as the kept file, "
                    + _compared(input_root / path, input_root / duplicate.kept),
                    "SOPInstanceUID": duplicate.sop_instance_uid,
                    "duplicate_of": duplicate.kept,
                }
            )
        else:
            files.append({"path": path, "status": "used", "SOPInstanceUID": sop_instance_uid[path]})

    series_entries = []
    for study in studies:
        for series in study.series:
            outcome = outcomes[study.uid, series.uid]
            first = series.first
            entry: dict[str, Any] = {
                "StudyInstanceUID": study.uid,
                "SeriesInstanceUID": series.uid,
                "Modality": first.modality or "",
                "SeriesNumber": first.series_number,
                "SeriesDescription": first.series_description or "",
                "instances": len(series.headers),
                "volumes": len(outcome.volumes),
            }
            if outcome.problems:
                entry["reason"] = "; ".join(outcome.problems)
            series_entries.append(entry)

    statuses = [f["status"] for f in files]
    all_series = [(study.uid, s.uid) for study in studies for s in study.series]
    return {
        "summary": {
            "files": len(files),
            "used": statuses.count("used"),
            "duplicate": statuses.count("duplicate"),
            "skipped": statuses.count("skipped"),
            "studies": len(studies),
            "series": len(all_series),
            "volumes": sum(len(o.volumes) for o in outcomes.values()),
            "series_without_volume": sum(1 for key in all_series if not outcomes[key].volumes),
            "format": fmt,
        },
        "files": files,
        "series": series_entries,
    }


def _compared(path: Path, kept: Path) -> str:
    """How a duplicate's content compares with the kept file's (either may have vanished)."""
    try:
        return "byte-identical" if filecmp.cmp(path, kept, shallow=False) else "different content"
    except OSError as error:
        return f"content not compared: {error.strerror or error}"


def _volume_files(series_images: SeriesImages) -> list[str]:
    """The files of every listed volume (a MetaImage header and its ``.raw``) and its
    previews."""
    files = []
    for volumes in series_images.volumes.values():
        for volume in volumes:
            path = PurePosixPath(volume.path)
            files += (
                [str(path), str(path.with_suffix(".raw"))]
                if volume.format == "mhd"
                else [str(path)]
            )
            files += (volume.previews or {}).values()
    return files
