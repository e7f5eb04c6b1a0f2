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
from series_selector.inputs import Candidate, InputFolder, series_identity
from series_selector.selection import Outcome

SELECTED_IMAGES_FILE = "selected-images.json"
VolumeMode = Literal["place", "refer"]
VOLUME_MODES: tuple[VolumeMode, ...] = ("place", "refer")


def write_selected_images(
    outcomes: Sequence[Outcome], input_dir: Path, output_dir: Path, mode: VolumeMode = "place"
) -> Path:
    """Write ``selected-images.json``; its image paths resolve relative to ``output_dir``.

    ``place`` hard-links (else copies) each chosen volume into ``output_dir`` under its path
    in the input; ``refer`` points at the volume where it is, by a relative path. A volume
    chosen by several selections is checked and placed once.
    """
    entries = _SeriesEntries(InputFolder(input_dir), output_dir, mode)
    document = {
        "selections": [
            {
                "name": outcome.selection.name,
                "series": [entries.entry(candidate) for candidate in outcome.chosen],
            }
            for outcome in outcomes
        ]
    }
    target = output_dir / SELECTED_IMAGES_FILE
    write_json(target, document, "selected-images")
    return target


class _SeriesEntries:
    """The entry of each chosen series, made (and its volumes placed) once however many
    selections choose it."""

    def __init__(self, input_folder: InputFolder, output_dir: Path, mode: VolumeMode) -> None:
        self.input_folder = input_folder
        self.output_dir = output_dir
        self.mode = mode
        self._made: dict[int, dict[str, Any]] = {}

    def entry(self, candidate: Candidate) -> dict[str, Any]:
        made = self._made.get(id(candidate))
        if made is None:
            made = self._made[id(candidate)] = {
                **series_identity(candidate),
                "Modality": json_value(candidate.series.attributes, "Modality"),
                "instance_count": len(candidate.series.instances),
                "images": [self._image_entry(volume) for volume in candidate.volumes],
            }
        return made

    def _image_entry(self, volume: VolumeEntry) -> dict[str, Any]:
        if self.mode == "place":
            for relative in (volume.path, *data_files(self.input_folder, volume)):
                place(self.input_folder.file(relative), self.output_dir / relative)
            path = volume.path
        else:
            located = self.input_folder.file(volume.path)
            path = Path(os.path.relpath(located, self.output_dir)).as_posix()
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


def data_files(input_folder: InputFolder, volume: VolumeEntry) -> list[str]:
    """The files a volume needs beside itself: a MetaImage header's ``ElementDataFile``."""
    if volume.format != "mhd":
        return []
    header = input_folder.file(volume.path).read_text(encoding="latin-1")
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
    """Make ``target`` the same file as ``source``: a hard link where possible, else a copy.

    A new hard link appears whole or not at all; a copy, or a link replacing another file, is
    made beside ``target`` and then renamed over it.
    """
    try:
        if _linked(source, target):
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


def _linked(source: Path, target: Path) -> bool:
    """Whether ``target`` is, or has just been made, a hard link to ``source``."""
    try:
        target.hardlink_to(source)
    except FileExistsError:
        return target.exists() and target.samefile(source)
    except OSError:  # no folder yet, another file system, or links not allowed here
        return False
    return True


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)
