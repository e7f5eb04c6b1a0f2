"""``selected-images.json`` and the volume files it points to, placed in the output folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from operator_common.errors import InputError, OutputError
from operator_common.jsonio import write_json
from operator_common.models import VolumeEntry, json_value
from series_selector.inputs import Candidate, inside, series_identity
from series_selector.selection import Outcome

SELECTED_IMAGES_FILE = "selected-images.json"
VolumeMode = Literal["place", "refer"]
VOLUME_MODES: tuple[VolumeMode, ...] = ("place", "refer")


def write_selected_images(
    outcomes: Sequence[Outcome], input_dir: Path, output_dir: Path, mode: VolumeMode = "place"
) -> Path:
    """Write ``selected-images.json``; its image paths resolve relative to ``output_dir``.

    ``place`` hard-links (else copies) each chosen volume into ``output_dir`` under its path
    in the input; ``refer`` points at the volume where it is, by a relative path.
    """
    document = {
        "selections": [
            {
                "name": outcome.selection.name,
                "series": [_series_entry(c, input_dir, output_dir, mode) for c in outcome.chosen],
            }
            for outcome in outcomes
        ]
    }
    target = output_dir / SELECTED_IMAGES_FILE
    write_json(target, document, "selected-images")
    return target


def _series_entry(
    candidate: Candidate, input_dir: Path, output_dir: Path, mode: VolumeMode
) -> dict[str, Any]:
    return {
        **series_identity(candidate),
        "Modality": json_value(candidate.series.attributes, "Modality"),
        "instance_count": len(candidate.series.instances),
        "images": [
            _image_entry(volume, input_dir, output_dir, mode) for volume in candidate.volumes
        ],
    }


def _image_entry(
    volume: VolumeEntry, input_dir: Path, output_dir: Path, mode: VolumeMode
) -> dict[str, Any]:
    if mode == "place":
        for relative in (volume.path, *data_files(input_dir, volume)):
            place(inside(input_dir, relative), output_dir / relative)
        path = volume.path
    else:
        path = Path(os.path.relpath(inside(input_dir, volume.path), output_dir)).as_posix()
    return {
        "path": path,
        "format": volume.format,
        "label": volume.label,
        "shape": list(volume.shape),
        "spacing": list(volume.spacing),
        "orientation": volume.orientation,
        "dtype": volume.dtype,
        "channels": volume.channels,
    }


def data_files(input_dir: Path, volume: VolumeEntry) -> list[str]:
    """The files a volume needs beside itself: a MetaImage header's ``ElementDataFile``."""
    if volume.format != "mhd":
        return []
    header = inside(input_dir, volume.path).read_text(encoding="latin-1")
    for line in header.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            name = value.strip()
            if name == "LOCAL":
                return []
            if not name or " " in name or name.upper() == "LIST":
                raise InputError(f"{volume.path}: unsupported ElementDataFile {name!r}")
            return [str(PurePosixPath(volume.path).parent / name)]
    raise InputError(f"{volume.path} has no ElementDataFile line")


def place(source: Path, target: Path) -> None:
    """Make ``target`` the same file as ``source``: a hard link where possible, else a copy."""
    try:
        if target.exists() and target.samefile(source):
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".placing-", dir=target.parent) as scratch:
            temporary = Path(scratch) / target.name
            _link_or_copy(source, temporary)
            temporary.replace(target)
    except OSError as error:
        raise OutputError(
            f"cannot place {source} at {target}: {error.strerror or error}"
        ) from error


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)
