"""The pictures of the page: the parser's previews, hard-linked (copied where a link cannot be
made) into the report's folder."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path, PurePosixPath

from PIL import Image

from series_selection.common.errors import InputError, OutputError

PICTURES_FOLDER = "pictures"


def place_picture(parser_dir: Path, relative: str, staging: Path) -> tuple[str, tuple[int, int]]:
    """Bring the picture ``relative`` (to ``parser_dir``) into ``staging/pictures``; return its
    path relative to the report and its size in pixels. A path leaving the parser's folder, or
    a picture that is not a plain PNG file, is refused with an ``InputError``."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or "\\" in relative:
        raise InputError(f"picture path {relative!r} leaves {parser_dir}")
    source = parser_dir / path
    try:
        info = source.lstat()
    except OSError as error:
        raise InputError(f"picture {source} cannot be read: {error.strerror}") from error
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"picture {source} is not a plain file")
    try:
        with Image.open(source) as image:
            if image.format != "PNG":
                raise InputError(f"picture {source} is not a PNG file")
            size = image.size
    except (OSError, SyntaxError) as error:  # Pillow's errors for a broken file
        raise InputError(f"picture {source} is not a readable PNG file: {error}") from error
    target_relative = f"{PICTURES_FOLDER}/{path.name}"
    target = staging / target_relative
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except FileExistsError:  # placed already: a series listed in two studies
            if not target.samefile(source):
                raise
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, target)
    except OSError as error:
        raise OutputError(f"cannot write {target_relative}: {error.strerror or error}") from error
    return target_relative, size
