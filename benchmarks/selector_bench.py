"""Time series-selector on a synthetic parser output of 10,000 series with 20 selection rules.

    python benchmarks/selector_bench.py [--folder /tmp/dicom-bench/selector] [--runs 3]
        [--against OTHER/operators] [--floor]

The parser output (dicom-metadata.json, series-images.json and one empty file per volume) is
made up directly, valid against the schemas, so it is quick to write and of any size.

``--against`` compares with the selector of another checkout (its ``operators`` folder, say a
``git worktree`` of an earlier commit): the two run by turns, so that a machine whose speed
drifts treats both alike, and the medians of their wall and CPU times are printed with their
ratio.

``--floor`` also times, after the runs, the part of the work that is done by compiled code or
the kernel and that any selector writing these outputs must do: decoding the two input files
(orjson), checking them against their schemas (jsonschema-rs), encoding and writing the two
output files of the last run (orjson, synced) and hard-linking each volume it placed. What is
left of the selector's time is its own Python work.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from measure import Measurement, measure
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from series_selection.common.jsonio import atomic_write_bytes, schema_errors, write_json
from series_selection.common.models import Rescale, VolumeEntry

SERIES_COUNT = 10_000
SERIES_PER_STUDY = 5
SELECTOR_TARGET_SECONDS = 1.0
"""Issue 13: the whole command in under 1 s."""
PARSER_OUTPUT = "parser-output-v2"
"""Where the made-up parser output is kept; renamed whenever ``write_parser_output`` changes."""
PLANES = {
    "AXIAL": [1, 0, 0, 0, 1, 0],
    "CORONAL": [1, 0, 0, 0, 0, -1],
    "SAGITTAL": [0, 1, 0, 0, 0, -1],
}
DESCRIPTIONS = {
    "CT": ["Body 1.0mm", "Body 3.0mm", "Lung 1.25mm", "Topogram", "Portal venous 5mm", "Bone"],
    "MR": ["T1 SAG MPRAGE", "T2 AX FLAIR", "DWI b1000", "T1 AX POST", "SWI", "localizer"],
    "PT": ["PET AC", "PET NAC", "MIP"],
}
STUDIES = {
    "CT": ["CT CHEST ABDOMEN PELVIS", "CT HEAD", "CT ABDOMEN W CONTRAST"],
    "MR": ["MR BRAIN W/O", "MR KNEE", "MR BRAIN W CONTRAST"],
    "PT": ["PET CT WHOLE BODY"],
}

RULES: dict[str, Any] = {
    "selections": [
        {
            "name": "CT abdomen axial",
            "conditions": {
                "Modality": "CT",
                "StudyDescription": "(?i)abdom",
                "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL", "!LOCALIZER"],
                "ImageOrientationPatient": "Axial",
                "SliceThickness": [0.5, 5.0],
            },
            "order_by": ["SliceThickness ascending", "instance_count descending"],
        },
        {"name": "thin CT", "conditions": {"Modality": "CT", "SliceThickness": [1.5, "<"]}},
        {"name": "CT lung", "conditions": {"Modality": "CT", "SeriesDescription": "(?i)lung"}},
        {"name": "CT head", "conditions": {"Modality": "CT", "StudyDescription": "HEAD"}},
        {
            "name": "CT bone kernel",
            "conditions": {
                "Modality": "CT",
                "any": [{"SeriesDescription": "(?i)bone"}, {"ConvolutionKernel": "B70f"}],
            },
        },
        {
            "name": "largest CT",
            "conditions": {"Modality": "CT", "not": {"ImageType": ["LOCALIZER"]}},
            "order_by": ["instance_count descending", "SeriesNumber"],
        },
        {
            "name": "CT contrast",
            "conditions": {"Modality": "CT", "ContrastBolusAgent": "(?i)iodine|omnipaque"},
        },
        {
            "name": "CT without contrast",
            "conditions": {"Modality": "CT", "ContrastBolusAgent": None},
        },
        {
            "name": "T1 brain",
            "conditions": {
                "Modality": "MR",
                "StudyDescription": "(?i)brain|head",
                "any": [
                    {"SeriesDescription": "\\bT1\\b"},
                    {"SeriesDescription": "(?i)mprage|spgr"},
                ],
                "RepetitionTime": [3000, "<"],
                "ImageType": ["!DERIVED"],
            },
            "order_by": ["instance_count descending"],
        },
        {"name": "T2 FLAIR", "conditions": {"Modality": "MR", "SeriesDescription": "(?i)flair"}},
        {"name": "DWI", "conditions": {"Modality": "MR", "SeriesDescription": "(?i)dwi|diffusion"}},
        {
            "name": "MR sagittal",
            "conditions": {"Modality": "MR", "ImageOrientationPatient": "Sagittal"},
        },
        {"name": "MR 3T", "conditions": {"Modality": "MR", "MagneticFieldStrength": 3.0}},
        {"name": "MR long TE", "conditions": {"Modality": "MR", "EchoTime": [80, ">="]}},
        {"name": "MR knee", "conditions": {"Modality": "MR", "BodyPartExamined": "KNEE"}},
        {
            "name": "PET attenuation corrected",
            "conditions": {
                "Modality": "PT",
                "SeriesDescription": "(?i)\\bAC\\b",
                "CorrectedImage": ["ATTN"],
            },
        },
        {
            "name": "coronal reformats",
            "conditions": {"ImageOrientationPatient": "Coronal", "ImageType": ["DERIVED"]},
        },
        {
            "name": "large matrix",
            "conditions": {"Rows": [512, ">="], "Columns": [512, ">="]},
            "order_by": ["voxel_count descending"],
        },
        {
            "name": "every original primary",
            "conditions": {"ImageType": ["ORIGINAL", "PRIMARY"]},
            "all_matched": True,
            "order_by": ["SeriesNumber"],
        },
        {
            "name": "Siemens or GE",
            "conditions": {
                "any": [{"Manufacturer": "(?i)siemens"}, {"Manufacturer": "(?i)^ge"}],
                "all": [{"not": {"SeriesDescription": "(?i)localizer|topogram"}}],
            },
        },
    ]
}


def _dataset(**values: Any) -> dict[str, Any]:
    dataset = Dataset()
    for keyword, value in values.items():
        if value is not None:
            setattr(dataset, keyword, value)
    json_dict: dict[str, Any] = dataset.to_json_dict()
    return json_dict


def write_parser_output(folder: Path, series_count: int = SERIES_COUNT, seed: int = 0) -> None:
    """A parser output folder of ``series_count`` series, ``SERIES_PER_STUDY`` per study."""
    pick = random.Random(seed)
    volumes_folder = folder / "volumes"
    volumes_folder.mkdir(parents=True, exist_ok=True)
    studies, series_images = [], {}
    for study_index in range(series_count // SERIES_PER_STUDY):
        modality = pick.choice(("CT", "CT", "MR", "MR", "PT"))
        study_uid = generate_uid(entropy_srcs=[str(seed), "study", str(study_index)])
        study_series = []
        for number in range(1, SERIES_PER_STUDY + 1):
            series_uid = generate_uid(entropy_srcs=[study_uid, str(number)])
            plane = pick.choice(list(PLANES))
            rows = pick.choice((256, 384, 512))
            slices = pick.randint(1, 400)
            thickness = pick.choice((0.625, 1.0, 1.25, 2.5, 3.0, 5.0))
            derived = pick.random() < 0.2
            attributes = _dataset(
                SeriesInstanceUID=series_uid,
                Modality=modality,
                SeriesNumber=number,
                SeriesDescription=pick.choice(DESCRIPTIONS[modality]),
                ImageType=["DERIVED" if derived else "ORIGINAL", "PRIMARY", plane],
                Manufacturer=pick.choice(("SIEMENS", "GE MEDICAL SYSTEMS", "Philips")),
                BodyPartExamined=pick.choice(("CHEST", "ABDOMEN", "HEAD", "KNEE")),
                SliceThickness=thickness,
                PixelSpacing=[0.7, 0.7],
                ImageOrientationPatient=PLANES[plane],
                Rows=rows,
                Columns=rows,
                ConvolutionKernel=pick.choice(("B30f", "B70f")) if modality == "CT" else None,
                ContrastBolusAgent="Omnipaque"
                if modality == "CT" and pick.random() < 0.5
                else None,
                MagneticFieldStrength=pick.choice((1.5, 3.0)) if modality == "MR" else None,
                EchoTime=pick.choice((2.5, 9.0, 90.0)) if modality == "MR" else None,
                RepetitionTime=pick.choice((500.0, 2300.0, 6000.0)) if modality == "MR" else None,
                CorrectedImage=["DECY", "ATTN"] if modality == "PT" else None,
            )
            instance = {
                "attributes": _dataset(SOPInstanceUID=generate_uid(entropy_srcs=[series_uid])),
                "path": f"s{series_uid}/1",
            }
            study_series.append({"attributes": attributes, "instances": [instance]})
            volume = f"volumes/{series_uid}.nii.gz"
            (folder / volume).touch()
            series_images[series_uid] = [
                VolumeEntry(
                    path=volume,
                    format="nii.gz",
                    label="",
                    distinguished_by={},
                    shape=(rows, rows, slices),
                    spacing=(0.7, 0.7, thickness),
                    origin=(0.0, 0.0, 0.0),
                    direction=((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)),
                    orientation=plane,
                    dtype="int16",
                    rescale=Rescale(slope=1.0, intercept=0.0, stored_as="applied"),
                    instance_count=slices,
                    frame_count=slices,
                ).to_json()
            ]
        studies.append(
            {
                "attributes": _dataset(
                    StudyInstanceUID=study_uid,
                    StudyDescription=pick.choice(STUDIES[modality]),
                    PatientID=f"P{study_index:05d}",
                    StudyDate="20240102",
                ),
                "series": study_series,
            }
        )
    write_json(folder / "dicom-metadata.json", {"studies": studies}, "dicom-metadata")
    write_json(folder / "series-images.json", series_images, "series-images")
    (folder / "rules.json").write_text(json.dumps(RULES, indent=1) + "\n")


def bench_selector(folder: Path, runs: int) -> list[float]:
    """Wall seconds of ``runs`` runs of series-selector over the 10,000-series parser output,
    each into an empty output folder."""
    return [m.seconds for m in _runs(folder, runs, {"this": None})["this"]]


def _runs(folder: Path, runs: int, sources: dict[str, Path | None]) -> dict[str, list[Measurement]]:
    """``runs`` runs of the selector of each source folder (``None``: the installed one), taking
    turns, each into an empty output folder of its own."""
    parser_output = folder / PARSER_OUTPUT
    if not (parser_output / "rules.json").is_file():
        write_parser_output(parser_output)
    measured: dict[str, list[Measurement]] = {name: [] for name in sources}
    for turn in range(runs):
        names = list(sources) if turn % 2 == 0 else list(reversed(sources))
        for name in names:
            selected = folder / f"selected-{name}"
            shutil.rmtree(selected, ignore_errors=True)
            source = sources[name]
            command = [sys.executable, "-m", "series_selection.selector"]
            command += ["--input", str(parser_output), "--output", str(selected)]
            command += ["--rules", str(parser_output / "rules.json"), "--log-level", "WARNING"]
            env = None if source is None else {**os.environ, "PYTHONPATH": str(source)}
            measured[name].append(measure(command, env))
            chosen = json.loads((selected / "selected-images.json").read_text())["selections"]
            if not any(selection["series"] for selection in chosen):
                raise RuntimeError("no selection chose a series: the run measured matching only")
    return measured


def floor(folder: Path) -> dict[str, float]:
    """Seconds per part of the work done in compiled code or the kernel (see ``--floor``), on
    the input and the outputs of the last run of this checkout's selector."""
    parser_output, selected = folder / PARSER_OUTPUT, folder / "selected-this"
    scratch = folder / "floor"
    shutil.rmtree(scratch, ignore_errors=True)
    seconds: dict[str, float] = {}
    gc.disable()  # as the selector runs
    try:
        start = time.perf_counter()
        inputs = {
            name: orjson.loads((parser_output / f"{name}.json").read_bytes())
            for name in ("dicom-metadata", "series-images")
        }
        seconds["decode inputs"] = time.perf_counter() - start
        start = time.perf_counter()
        if any(schema_errors(data, name) for name, data in inputs.items()):
            raise RuntimeError("the benchmark's input does not match its schemas")
        seconds["check inputs"] = time.perf_counter() - start
        outputs = [json.loads(f.read_bytes()) for f in sorted(selected.glob("*.json"))]
        start = time.perf_counter()
        for number, data in enumerate(outputs):
            atomic_write_bytes(scratch / f"{number}.json", orjson.dumps(data))
        seconds["encode and write outputs"] = time.perf_counter() - start
        volumes = [p.relative_to(selected) for p in (selected / "volumes").iterdir()]
        start = time.perf_counter()
        (scratch / "volumes").mkdir()
        for volume in volumes:
            os.lstat(parser_output / volume)
            os.link(parser_output / volume, scratch / volume)
        seconds[f"link {len(volumes):,} volumes"] = time.perf_counter() - start
    finally:
        gc.enable()
        shutil.rmtree(scratch, ignore_errors=True)
    return seconds


def _print_floor(folder: Path, selector_seconds: float) -> None:
    parts = floor(folder)
    total = sum(parts.values())
    listed = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in parts.items())
    print(f"floor (compiled code and kernel): {total:.2f} s ({listed})")
    print(f"this selector's median / floor: {selector_seconds / total:.1f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/dicom-bench/selector"))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--against", type=Path, help="the operators folder of another checkout")
    parser.add_argument(
        "--floor", action="store_true", help="also time the part done in compiled code and kernel"
    )
    args = parser.parse_args(argv)
    title = f"series-selector, {SERIES_COUNT:,} series x {len(RULES['selections'])} rules"
    if args.against is None:
        seconds = bench_selector(args.folder, args.runs)
        runs = ", ".join(f"{s:.2f}" for s in seconds)
        print(f"{title}: median {statistics.median(seconds):.2f} s (runs: {runs})")
        if args.floor:
            _print_floor(args.folder, statistics.median(seconds))
        return 0
    this = Path(__file__).resolve().parent.parent / "operators"
    measured = _runs(args.folder, args.runs, {"this": this, "other": args.against})
    medians = {}
    for name, source in (("this", this), ("other", args.against)):
        wall = [m.seconds for m in measured[name]]
        cpu = [m.cpu_seconds for m in measured[name]]
        medians[name] = statistics.median(wall)
        print(
            f"{title}, {source}: wall median {medians[name]:.2f} s "
            f"({min(wall):.2f}-{max(wall):.2f}), CPU median {statistics.median(cpu):.2f} s "
            f"({min(cpu):.2f}-{max(cpu):.2f})"
        )
    print(f"wall time, this / other: {medians['this'] / medians['other']:.2f}")
    if args.floor:
        _print_floor(args.folder, medians["this"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
