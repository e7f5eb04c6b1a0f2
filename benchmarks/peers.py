"""Convert a DICOM folder with a Python peer, one process, as its users would script it.

python benchmarks/peers.py simpleitk|dicom2nifti INPUT OUTPUT nii|nii.gz|mhd
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path

PEERS = {"simpleitk": ("nii", "nii.gz", "mhd"), "dicom2nifti": ("nii", "nii.gz")}


def convert_with_simpleitk(source: Path, output: Path, fmt: str) -> None:
    """Every series with SimpleITK's ImageSeriesReader (GDCM sorts the files), one file each."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    folders: dict[str, set[str]] = defaultdict(set)
    for folder, _, files in os.walk(source):
        if files:
            for uid in reader.GetGDCMSeriesIDs(folder):
                folders[uid].add(folder)
    for uid, places in sorted(folders.items()):
        common = os.path.commonpath(sorted(places))
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(common, uid, False, len(places) > 1))
        sitk.WriteImage(reader.Execute(), str(output / f"{uid}.{fmt}"))


def convert_with_dicom2nifti(source: Path, output: Path, fmt: str) -> None:
    """dicom2nifti's folder conversion, without its optional reorientation (its fastest mode)."""
    import dicom2nifti

    logging.disable(logging.WARNING)
    dicom2nifti.convert_directory(
        str(source), str(output), compression=fmt == "nii.gz", reorient=False
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("format", choices=("nii", "nii.gz", "mhd"))
    args = parser.parse_args(argv)
    if args.format not in PEERS[args.peer]:
        parser.error(f"{args.peer} does not write {args.format}")
    args.output.mkdir(parents=True, exist_ok=True)
    convert = convert_with_simpleitk if args.peer == "simpleitk" else convert_with_dicom2nifti
    convert(args.input, args.output, args.format)
    return 0


if __name__ == "__main__":
    sys.exit(main())
