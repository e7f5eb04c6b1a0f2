"""Benchmark dicom-parser against dcm2niix, SimpleITK and dicom2nifti on a generated corpus.

    python benchmarks/run.py --scale 1.0 --runs 3 [--parts tools,scan,scaling,selector]

Prints markdown tables to stdout (and, with --json, writes every measurement to a file). Every
tool converts the same corpus into a fresh folder; the page cache is warm (the corpus is read
once before the first run). Times are medians of --runs; memory is the largest peak of the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import dcm2niix
from make_corpus import DEFAULT_ROOT, Corpus, make_corpus
from measure import CommandError, Summary, measure
from selector_bench import SELECTOR_TARGET_SECONDS, bench_selector

from series_selection.parser.scan import list_files, scan_file

FORMATS = ("nii", "nii.gz", "mhd")
PARTS = ("tools", "scan", "scaling", "selector", "previews")
PEERS_SCRIPT = Path(__file__).with_name("peers.py")
SCAN_TARGET = 1500.0  # files/s
UNCOMPRESSED_TARGET = 1.5  # wall time at most this times dcm2niix's
PREVIEWS_TARGET = 1.10  # the parser with previews at most this times its time without
COMPRESSED_TARGET = 3.0  # .nii.gz at least this many times faster than dcm2niix
SIZE_TARGET = 1.05  # .nii.gz output at most this times dcm2niix's
MEMORY_MARGIN = 300e6  # peak memory <= 2 x largest series + this
MB = 1e6


@dataclass(frozen=True)
class Tool:
    """A converter: its name, the formats it writes and its command line."""

    name: str
    formats: tuple[str, ...]
    command: Callable[[Path, Path, str], list[str]]
    env: dict[str, str] | None = None


def _ours(source: Path, output: Path, fmt: str) -> list[str]:
    return ["dicom-parser", "--input", str(source), "--output", str(output), "--format", fmt]


def _dcm2niix(source: Path, output: Path, fmt: str) -> list[str]:
    compress = "y" if fmt == "nii.gz" else "n"
    return [dcm2niix.bin, "-z", compress, "-f", "%j", "-o", str(output), str(source)]


def _peer(name: str, source: Path, output: Path, fmt: str) -> list[str]:
    return [sys.executable, str(PEERS_SCRIPT), name, str(source), str(output), fmt]


def _path_without_pigz() -> dict[str, str]:
    """The environment with every PATH folder holding pigz left out: dcm2niix then compresses
    with its internal zlib, its fastest way (pigz at its default level is slower here)."""
    folders = os.environ.get("PATH", "").split(os.pathsep)
    kept = [folder for folder in folders if not (Path(folder) / "pigz").exists()]
    return {**os.environ, "PATH": os.pathsep.join(kept)}


TOOLS = (
    Tool("dicom-parser", FORMATS, _ours),
    Tool("dcm2niix", ("nii", "nii.gz"), _dcm2niix, _path_without_pigz()),
    Tool("SimpleITK", FORMATS, partial(_peer, "simpleitk")),
    Tool("dicom2nifti", ("nii", "nii.gz"), partial(_peer, "dicom2nifti")),
)


@dataclass(frozen=True)
class Result:
    """One tool writing one format: its runs, output size, or why it failed."""

    tool: str
    format: str
    summary: Summary | None
    output_bytes: int = 0
    error: str = ""


def run_tool(tool: Tool, fmt: str, corpus: Corpus, work: Path, runs: int) -> Result:
    """``runs`` conversions of the corpus by ``tool``, each into an empty folder."""
    output = work / f"{tool.name}-{fmt}"
    measurements = []
    for _ in range(runs):
        shutil.rmtree(output, ignore_errors=True)
        output.mkdir(parents=True)
        try:
            measurements.append(measure(tool.command(corpus.dicom, output, fmt), tool.env))
        except CommandError as failure:
            return Result(tool.name, fmt, None, error=str(failure))
    size = sum(path.stat().st_size for path in _volume_files(output, fmt))
    shutil.rmtree(output, ignore_errors=True)
    return Result(tool.name, fmt, Summary(tuple(measurements)), size)


def _volume_files(folder: Path, fmt: str) -> Iterator[Path]:
    suffixes = (".mhd", ".raw") if fmt == "mhd" else (f".{fmt}",)
    return (p for p in folder.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def warm_cache(corpus: Corpus) -> None:
    """Read every corpus file once so that every tool starts with the same warm page cache."""
    for path in corpus.dicom.rglob("*"):
        if path.is_file():
            path.read_bytes()


def tools_table(results: list[Result], corpus: Corpus) -> str:
    """Tool, format, median wall time, throughput, peak memory and time relative to dcm2niix."""
    reference = {r.format: r.summary.seconds for r in results if r.tool == "dcm2niix" and r.summary}
    lines = [
        "| tool | format | median wall s | files/s | MB/s | peak PSS MB | time / dcm2niix |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for result in results:
        if result.summary is None:
            lines.append(f"| {result.tool} | {result.format} | failed: {result.error} | | | | |")
            continue
        seconds = result.summary.seconds
        peer = reference.get(result.format) or reference.get("nii")
        ratio = f"{seconds / peer:.2f}" if peer else "-"
        if result.format == "mhd" and peer:
            ratio += " (vs its .nii)"
        lines.append(
            f"| {result.tool} | {result.format} | {seconds:.1f} | {corpus.files / seconds:.0f} "
            f"| {corpus.bytes / MB / seconds:.0f} | {result.summary.peak_memory / MB:.0f} "
            f"| {ratio} |"
        )
    return "\n".join(lines)


def scan_rate(corpus: Corpus, workers: int, runs: int) -> float:
    """Files per second of the parser's header scan: listing plus ``scan_file`` (header read
    without pixel data, turned into DICOM JSON) over a pool of ``workers`` processes."""
    timings = []
    for _ in range(runs):
        start = time.perf_counter()
        files = [path for path, problem in list_files(corpus.dicom) if problem is None]
        scan = partial(scan_file, corpus.dicom)
        if workers > 1:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                scanned = list(pool.map(scan, files, chunksize=32))
        else:
            scanned = [scan(path) for path in files]
        timings.append(time.perf_counter() - start)
        if any(s.header is None for s in scanned):
            raise SystemExit("the header scan skipped files of the corpus")
    return len(files) / statistics.median(timings)


@dataclass(frozen=True)
class ScalePoint:
    """The parser on one corpus size."""

    corpus: Corpus
    summary: Summary


def scaling_table(points: list[ScalePoint], fmt: str) -> str:
    """Time per GB and peak memory of the parser at each corpus size."""
    lines = [
        f"| scale | files | series | GB | median wall s ({fmt}) | s per GB | peak PSS MB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for point in points:
        corpus, seconds = point.corpus, point.summary.seconds
        lines.append(
            f"| {corpus.scale:g} | {corpus.files} | {corpus.series} | {corpus.bytes / 1e9:.2f} "
            f"| {seconds:.1f} | {seconds / (corpus.bytes / 1e9):.1f} "
            f"| {point.summary.peak_memory / MB:.0f} |"
        )
    return "\n".join(lines)


def targets(
    results: list[Result], scan: float | None, selector: float | None, corpus: Corpus
) -> list[str]:
    """The product's performance targets, each with its measured value and whether it is met."""
    found = {(r.tool, r.format): r for r in results if r.summary}
    lines = []

    def check(name: str, met: bool, measured: str) -> None:
        lines.append(
            f"- [{'x' if met else ' '}] {name}: {measured} — {'met' if met else 'NOT met'}"
        )

    def seconds(tool: str, fmt: str) -> float | None:
        result = found.get((tool, fmt))
        return result.summary.seconds if result and result.summary else None

    reference_nii, reference_gz = seconds("dcm2niix", "nii"), seconds("dcm2niix", "nii.gz")
    for fmt in ("nii", "mhd"):
        ours = seconds("dicom-parser", fmt)
        if ours and reference_nii:
            ratio = ours / reference_nii
            check(
                f"{fmt} wall time <= {UNCOMPRESSED_TARGET}x dcm2niix .nii",
                ratio <= UNCOMPRESSED_TARGET,
                f"{ratio:.2f}x ({ours:.1f} s vs {reference_nii:.1f} s)",
            )
    ours_gz = seconds("dicom-parser", "nii.gz")
    if ours_gz and reference_gz:
        speedup = reference_gz / ours_gz
        check(
            f".nii.gz at least {COMPRESSED_TARGET:g}x faster than dcm2niix",
            speedup >= COMPRESSED_TARGET,
            f"{speedup:.2f}x ({ours_gz:.1f} s vs {reference_gz:.1f} s)",
        )
        size = (
            found[("dicom-parser", "nii.gz")].output_bytes
            / found[("dcm2niix", "nii.gz")].output_bytes
        )
        check(
            f".nii.gz output at most {SIZE_TARGET - 1:.0%} larger than dcm2niix's",
            size <= SIZE_TARGET,
            f"{size:.3f}x its size",
        )
    if scan is not None:
        check(
            f"header scan >= {SCAN_TARGET:,.0f} files/s",
            scan >= SCAN_TARGET,
            f"{scan:,.0f} files/s",
        )
    ours_runs = [r.summary for r in results if r.tool == "dicom-parser" and r.summary]
    if ours_runs:
        limit = 2 * corpus.largest_series_voxel_bytes + MEMORY_MARGIN
        peak = max(s.peak_memory for s in ours_runs)
        check(
            "peak memory <= 2 x largest series voxels + 300 MB",
            peak <= limit,
            f"{peak / MB:.0f} MB vs limit {limit / MB:.0f} MB",
        )
    if selector is not None:
        check(
            f"selector, 10,000 series x 20 rules < {SELECTOR_TARGET_SECONDS:g} s",
            selector < SELECTOR_TARGET_SECONDS,
            f"{selector:.2f} s",
        )
    return lines


def preview_cpu_seconds(corpus: Corpus, work: Path) -> tuple[float, float, int]:
    """The CPU time the previews take, measured alone: the parser's CPU time (process tree)
    for the corpus without previews, and the summed CPU time of ``write_previews`` on each of
    its volumes, loaded back, in this process; and the number of volumes. Both are CPU times,
    which a busy machine disturbs much less than wall times."""
    import nibabel
    import numpy as np

    from series_selection.common.models import VolumeEntry
    from series_selection.parser.previews import write_previews

    output = work / "previews-probe"
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    environment = {**os.environ, "DICOM_PARSER_PREVIEWS": "off"}
    parser_cpu = measure(_ours(corpus.dicom, output, "nii"), environment).cpu_seconds
    metadata = json.loads((output / "dicom-metadata.json").read_text())
    first_file = {
        series["attributes"]["0020000E"]["Value"][0]: series["instances"][0]["path"]
        for study in metadata["studies"]
        for series in study["series"]
    }
    listed = json.loads((output / "series-images.json").read_text())
    previews_cpu, count = 0.0, 0
    for uid, volumes in listed.items():
        for entry in volumes:
            volume = VolumeEntry.from_json(entry)
            image = nibabel.load(output / volume.path)
            voxels = np.asarray(image.dataobj).T  # (i, j, k) on disk -> (k, j, i) as converted
            affine = np.eye(4)
            affine[:3, :3] = np.array(volume.direction).T * np.array(volume.spacing)
            affine[:3, 3] = volume.origin
            start = time.process_time()
            write_previews(
                voxels, affine, volume.rescale, volume.channels == 3, "MONOCHROME2",
                corpus.dicom / first_file[uid], output, f"probe-{count}",
            )  # fmt: skip
            previews_cpu += time.process_time() - start
            count += 1
    shutil.rmtree(output, ignore_errors=True)
    return parser_cpu, previews_cpu, count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="corpus size; 1.0 ~ 1.4 GB")
    parser.add_argument("--runs", type=int, default=3, help="runs per measurement")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_ROOT, help="where corpora go")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    parser.add_argument("--tools", default=",".join(t.name for t in TOOLS), help="tools to run")
    parser.add_argument("--formats", default=",".join(FORMATS), help="formats to write")
    parser.add_argument("--scales", default="0.25,0.5,1.0", help="corpus sizes of the scaling part")
    parser.add_argument("--scaling-format", default="nii.gz", choices=FORMATS)
    parser.add_argument("--json", type=Path, help="also write the measurements here")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if unknown := parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if shutil.which("dicom-parser") is None:
        parser.error("dicom-parser is not on PATH: pip install -e . first")

    workers = os.cpu_count() or 1
    corpus = make_corpus(args.corpus, args.scale)
    work = args.corpus / "outputs"
    print(
        f"corpus: {corpus.files} files, {corpus.series} series, {corpus.bytes / 1e9:.2f} GB; "
        f"largest series {corpus.largest_series_voxel_bytes / MB:.0f} MB of voxels; "
        f"{workers} CPUs; median of {args.runs} runs, warm cache; "
        f"load average before: {os.getloadavg()[0]:.1f}\n"
    )
    report: dict[str, Any] = {"corpus": {k: v for k, v in vars(corpus).items() if k != "root"}}
    warm_cache(corpus)

    results: list[Result] = []
    if "tools" in parts:
        chosen_tools = set(args.tools.split(","))
        chosen_formats = args.formats.split(",")
        for tool in TOOLS:
            for fmt in chosen_formats:
                if tool.name in chosen_tools and fmt in tool.formats:
                    print(f"running {tool.name} {fmt} ...", file=sys.stderr, flush=True)
                    results.append(run_tool(tool, fmt, corpus, work, args.runs))
        print(tools_table(results, corpus) + "\n")
        report["tools"] = [
            {
                "tool": r.tool,
                "format": r.format,
                "seconds": [m.seconds for m in r.summary.runs] if r.summary else None,
                "peak_memory": r.summary.peak_memory if r.summary else None,
                "output_bytes": r.output_bytes,
                "error": r.error,
            }
            for r in results
        ]

    scan = None
    if "scan" in parts:
        one = scan_rate(corpus, 1, args.runs)
        scan = scan_rate(corpus, workers, args.runs)
        print(
            f"header scan (list + scan_file to DICOM JSON): {one:,.0f} files/s in one process, "
            f"{scan:,.0f} files/s with {workers} processes\n"
        )
        report["scan_files_per_second"] = {"1": one, str(workers): scan}

    if "scaling" in parts:
        points = []
        ours = TOOLS[0]
        for scale in (float(s) for s in args.scales.split(",")):
            sized = make_corpus(args.corpus, scale)
            warm_cache(sized)
            result = run_tool(ours, args.scaling_format, sized, work, args.runs)
            if result.summary is None:
                raise SystemExit(result.error)
            points.append(ScalePoint(sized, result.summary))
        print(scaling_table(points, args.scaling_format) + "\n")
        report["scaling"] = [
            {
                "scale": p.corpus.scale,
                "bytes": p.corpus.bytes,
                "seconds": p.summary.seconds,
                "peak_memory": p.summary.peak_memory,
            }
            for p in points
        ]

    if "previews" in parts:
        report["previews"] = []
        for fmt in args.formats.split(","):
            timed = {}
            for setting in ("off", "on"):
                print(f"running dicom-parser {fmt} previews {setting} ...", file=sys.stderr)
                environment = {**os.environ, "DICOM_PARSER_PREVIEWS": setting}
                tool = Tool(f"dicom-parser-previews-{setting}", FORMATS, _ours, environment)
                result = run_tool(tool, fmt, corpus, work, args.runs)
                if result.summary is None:
                    raise SystemExit(result.error)
                timed[setting] = result.summary
            ratio = timed["on"].seconds / timed["off"].seconds
            cpu = {k: statistics.median(m.cpu_seconds for m in v.runs) for k, v in timed.items()}
            print(
                f"dicom-parser {fmt}: {timed['off'].seconds:.2f} s without previews, "
                f"{timed['on'].seconds:.2f} s with them: x {ratio:.3f} "
                f"(target <= {PREVIEWS_TARGET}: {'met' if ratio <= PREVIEWS_TARGET else 'MISSED'})"
                f"; CPU {cpu['off']:.2f} s and {cpu['on']:.2f} s: x {cpu['on'] / cpu['off']:.3f}"
            )
            report["previews"].append(
                {
                    "format": fmt,
                    "seconds_without": [m.seconds for m in timed["off"].runs],
                    "seconds_with": [m.seconds for m in timed["on"].runs],
                    "cpu_seconds_without": [m.cpu_seconds for m in timed["off"].runs],
                    "cpu_seconds_with": [m.cpu_seconds for m in timed["on"].runs],
                    "ratio": ratio,
                    "cpu_ratio": cpu["on"] / cpu["off"],
                }
            )
        parser_cpu, previews_cpu, count = preview_cpu_seconds(corpus, work)
        print(
            f"previews alone: {previews_cpu:.2f} CPU s for {count} volumes, against "
            f"{parser_cpu:.2f} CPU s for the parser without them (.nii): "
            f"+{100 * previews_cpu / parser_cpu:.1f} %\n"
        )
        report["previews_cpu"] = {
            "parser_cpu_seconds": parser_cpu,
            "previews_cpu_seconds": previews_cpu,
            "volumes": count,
        }

    selector = None
    if "selector" in parts:
        selector_runs = bench_selector(args.corpus / "selector", args.runs)
        selector = statistics.median(selector_runs)
        print(f"series-selector, 10,000 series x 20 rules: {selector:.2f} s (median wall)\n")
        report["selector_seconds"] = selector_runs

    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    print("targets:\n" + "\n".join(targets(results, scan, selector, corpus)))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
