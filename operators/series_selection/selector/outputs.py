"""``selected-images.json`` and the volume files it points to, placed in the output folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Literal

from series_selection.common.errors import InputError, OutputError
from series_selection.common.jsonio import check_output, write_formatted
from series_selection.common.models import (
    SELECTED_IMAGES_FILE,
    ChosenSeries,
    ImageEntry,
    SelectedImages,
    SelectionImages,
    VolumeEntry,
)
from series_selection.selector.inputs import Candidate, InputFolder
from series_selection.selector.selection import Outcome

SCHEMA = "selected-images"
SERIES_SCHEMA = "/$defs/series"
VolumeMode = Literal["place", "refer"]
VOLUME_MODES: tuple[VolumeMode, ...] = ("place", "refer")
MAX_HEADER_BYTES = 1 << 20
"""How much of a MetaImage header is read for its ElementDataFile line, the header's last (a
few hundred bytes in practice; with ``LOCAL`` the voxels follow it in the same file)."""


def write_selected_images(
    outcomes: Sequence[Outcome],
    input_dir: Path,
    output_dir: Path,
    mode: VolumeMode = "place",
    staging: Path | None = None,
) -> list[str]:
    """Write ``selected-images.json`` into ``staging`` (by default ``output_dir``); its image
    paths resolve relative to ``output_dir``. Returns the files written, relative to ``staging``.

    ``place`` hard-links (else copies) each chosen volume beside it under its path in the
    input; ``refer`` points at the volume where it is, by a relative path. A series chosen by
    several selections has its volumes checked and placed, and its entry made, checked against
    the schema and formatted, once.
    """
    staging = staging or output_dir
    target = staging / SELECTED_IMAGES_FILE
    chosen = _ChosenSeries(InputFolder(input_dir), output_dir, mode, staging)
    selected = SelectedImages(
        tuple(SelectionImages(o.selection.name, tuple(map(chosen.of, o.chosen))) for o in outcomes)
    )
    document = selected.to_json()
    entries = {id(e): e for s in document["selections"] for e in s["series"]}
    for entry in entries.values():
        check_output(entry, target, SCHEMA, SERIES_SCHEMA)
    skeleton = [{"name": s["name"], "series": []} for s in document["selections"]]
    check_output({"selections": skeleton}, target, SCHEMA)
    write_formatted(target, document, reuse=True)
    return [SELECTED_IMAGES_FILE, *chosen.placed]


class _ChosenSeries:
    """The model of each chosen series, made (its volumes placed) once however many selections
    choose it."""

    def __init__(
        self, input_folder: InputFolder, output_dir: Path, mode: VolumeMode, staging: Path
    ) -> None:
        self.input_folder = input_folder
        self.output_dir = output_dir
        self.mode = mode
        self.staging = staging
        self.placed: list[str] = []
        self._made: dict[int, ChosenSeries] = {}

    def of(self, candidate: Candidate) -> ChosenSeries:
        made = self._made.get(id(candidate))
        if made is None:
            made = self._made[id(candidate)] = ChosenSeries(
                study_instance_uid=candidate.study.uid,
                series_instance_uid=candidate.series.uid,
                series_number=candidate.number,
                series_description=candidate.description,
                modality=candidate.modality,
                instance_count=len(candidate.series.instances),
                images=tuple(self._image(volume) for volume in candidate.volumes),
            )
        return made

    def _image(self, volume: VolumeEntry) -> ImageEntry:
        """The entry of one volume, placed with the files it needs beside it (``place``) or
        pointed at where it is (``refer``); in both modes each of those files must be inside
        the input folder."""
        files = [(volume.path, self.input_folder.located(volume.path))]
        for relative in data_files(files[0][1], volume):
            files.append((relative, self.input_folder.located(relative)))
        if self.mode == "place":
            for relative, located in files:
                place(located, f"{self.staging}/{relative}")
                self.placed.append(relative)
            path = volume.path
        else:
            located = str(self.input_folder.folder / volume.path)
            path = Path(os.path.relpath(located, self.output_dir)).as_posix()
        return ImageEntry(
            path=path,
            format=volume.format,
            label=volume.label,
            shape=volume.shape,
            spacing=volume.spacing,
            orientation=volume.orientation,
            geometry=volume.geometry,
            dtype=volume.dtype,
            channels=volume.channels,
        )


def data_files(header: str, volume: VolumeEntry) -> list[str]:
    """The files a volume needs beside itself: a MetaImage header's ``ElementDataFile``, read
    from the file ``header`` (the volume's, located)."""
    if volume.format != "mhd":
        return []
    with Path(header).open("rb") as file:  # LOCAL: the voxels follow
        text = file.read(MAX_HEADER_BYTES).decode("latin-1")
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "ElementDataFile":
            name = value.strip()
            if name == "LOCAL":
                return []
            if not name or " " in name or name.upper() == "LIST":
                raise InputError(f"{volume.path}: unsupported ElementDataFile {name!r}")
            return [str(PurePosixPath(volume.path).parent / name)]
    raise InputError(
        f"{volume.path} has no ElementDataFile line in its first {MAX_HEADER_BYTES >> 20} MiB"
    )


def place(source: str, target: str) -> None:
    """Make ``target`` the same file as ``source`` (a file, not a symbolic link): a hard link
    where possible, else a copy.

    A new hard link appears whole or not at all; a copy, or a link replacing another file, is
    made beside ``target`` and then renamed over it.
    """
    try:
        if _linked(source, target):
            return
        placed = Path(target)
        placed.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".placing-", dir=placed.parent) as scratch:
            temporary = Path(scratch) / placed.name
            _link_or_copy(source, temporary)
            temporary.replace(placed)
    except OSError as error:
        raise OutputError(
            f"cannot place {source} at {target}: {error.strerror or error}"
        ) from error


def _linked(source: str, target: str) -> bool:
    """Whether ``target`` is, or has just been made, a hard link to ``source``."""
    try:
        os.link(source, target)
    except FileExistsError:
        return Path(target).exists() and Path(target).samefile(source)
    except OSError:  # no folder yet, another file system, or links not allowed here
        return False
    return True


def _link_or_copy(source: str, target: Path) -> None:
    try:
        target.hardlink_to(source)
    except OSError:
        shutil.copy2(source, target)
