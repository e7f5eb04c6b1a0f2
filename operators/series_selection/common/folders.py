"""Operator folders: kept apart, locked while in use, and published in one step.

An operator writes its outputs into a staging folder inside its output folder, then publishes
them: each file is moved into place and the files the previous run published and this one did
not are deleted. A manifest (``.<owner>.manifest``, one relative path a line) records what was
published, so a run deletes only files an earlier run of the same operator provably wrote.
Publishing starts by writing the new manifest as a journal (``.<owner>.publishing``) and ends by
renaming it over the manifest: a run killed half-way through leaves the journal, which the next
run finishes and which readers refuse.

Writers hold an exclusive ``flock`` on the output folder for their whole run, readers a shared
one, so a reader sees all of the previous outputs or all of the new ones, never a mix.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from types import TracebackType

from series_selection.common.errors import InputError, OutputError

log = logging.getLogger(__name__)


def check_apart(input_dir: Path, output_dir: Path) -> None:
    """Raise ``InputError`` when either folder is, or lies inside, the other."""
    source, target = input_dir.resolve(), output_dir.resolve()
    if source == target:
        raise InputError(f"the output folder {output_dir} is the input folder")
    if target.is_relative_to(source):
        raise InputError(f"the output folder {output_dir} lies inside the input {input_dir}")
    if source.is_relative_to(target):
        raise InputError(f"the input folder {input_dir} lies inside the output {output_dir}")


@contextmanager
def reading(folder: Path) -> Iterator[None]:
    """Hold a shared lock on ``folder`` while reading it: a writer of ``folder`` waits, or is
    waited for. Refuse a folder whose last publication was interrupted."""
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError) as error:
        raise InputError(f"input folder {folder} does not exist or is not a folder") from error
    except OSError as error:
        raise InputError(f"cannot open input folder {folder}: {error.strerror}") from error
    try:
        _lock(descriptor, fcntl.LOCK_SH, folder)
        interrupted = sorted(p.name for p in folder.glob(".*.publishing"))
        if interrupted:
            raise InputError(
                f"{folder} holds outputs whose publication was interrupted ({interrupted[0]}): "
                "run the operator that wrote them again"
            )
        yield
    finally:
        os.close(descriptor)


class OutputFolder:
    """``root`` as the output folder of ``owner``: locked, staged and published in one step.

    Use as a context manager; write into ``staging``, then call ``publish``. Leaving the block
    without publishing leaves the previous outputs as they were.
    """

    def __init__(self, root: Path, owner: str) -> None:
        self.root = root
        self.owner = owner
        self.staging = root / f".{owner}.staging"
        self._manifest = root / f".{owner}.manifest"
        self._journal = root / f".{owner}.publishing"
        self._descriptor: int | None = None

    def __enter__(self) -> OutputFolder:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self._descriptor = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as error:
            raise OutputError(f"cannot use output folder {self.root}: {error.strerror}") from error
        try:
            _lock(self._descriptor, fcntl.LOCK_EX, self.root)
            if self._journal.exists():
                log.warning("finishing the interrupted publication of %s", self.root)
                self._finish_publication()
            self._remove_staging()
            self.staging.mkdir()
        except OSError as error:
            self._release()
            raise OutputError(f"cannot prepare {self.staging}: {error.strerror}") from error
        except BaseException:
            self._release()
            raise
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            self._remove_staging()
        finally:
            self._release()

    def publish(self, files: Iterable[str]) -> None:
        """Move ``files`` (paths relative to ``staging``) into place; delete what the previous
        run published and this one does not."""
        paths = sorted(set(files))
        for path in paths:
            _check_relative(path)
        for folder in sorted({_folder_of(path) for path in paths}):
            self._check_no_link(folder)
        try:
            _write_synced(self._journal, "".join(f"{path}\n" for path in paths))
            self._finish_publication()
        except OSError as error:
            raise OutputError(f"cannot publish into {self.root}: {error.strerror}") from error

    def _finish_publication(self) -> None:
        """Carry out the journal: idempotent, so a rerun completes a killed publication."""
        published = _read_list(self._journal)
        ready: set[str] = set()
        moved = {
            folder
            for folder in {path.split("/")[0] for path in published if "/" in path}
            if self._moved_whole(folder, {p for p in published if p.startswith(f"{folder}/")})
        }
        for path in published:
            if path.split("/")[0] in moved:
                continue
            source = self.staging / path
            if not _plain_file(source):  # moved already, or never written
                continue
            folder = _folder_of(path)
            if folder not in ready:
                self._check_no_link(folder)
                (self.root / folder).mkdir(parents=True, exist_ok=True)
                ready.add(folder)
            source.replace(self.root / path)
        manifest = self._manifest
        previous = _read_list(manifest) if _plain_file(manifest) else []
        for path in sorted(set(previous) - set(published)):
            self._delete(path)
        self._journal.replace(self._manifest)
        sync_folder(self.root)

    def _moved_whole(self, folder: str, files: set[str]) -> bool:
        """Move the staged ``folder`` into place with one rename, when the output has no such
        folder yet and the staged one holds exactly ``files``, all plain files; whether it did."""
        staged, target = self.staging / folder, self.root / folder
        if target.exists() or target.is_symlink() or staged.is_symlink() or not staged.is_dir():
            return False
        if _plain_files(staged, f"{folder}/") != files:
            return False
        staged.replace(target)
        return True

    def _delete(self, path: str) -> None:
        """Delete a file a previous run published, and the folders it leaves empty."""
        try:
            _check_relative(path)
            self._check_no_link(_folder_of(path))
        except OutputError:  # a doctored manifest: never delete through it
            return
        target = self.root / path
        if target.is_symlink() or target.is_file():
            target.unlink()
        folder = _folder_of(path)
        while folder:
            try:
                (self.root / folder).rmdir()
            except OSError:  # not empty, or gone
                break
            folder = _folder_of(folder)

    def _check_no_link(self, folder: str) -> None:
        """Refuse ``folder`` (relative to ``root``) when it, or a folder above it inside
        ``root``, is a symbolic link."""
        inside = self.root
        for part in PurePosixPath(folder).parts:
            inside = inside / part
            if inside.is_symlink():
                raise OutputError(
                    f"{inside} is a symbolic link: outputs are never written through one"
                )

    def _remove_staging(self) -> None:
        if self.staging.is_symlink() or self.staging.is_file():
            self.staging.unlink()
        elif self.staging.exists():
            shutil.rmtree(self.staging)

    def _release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)  # releases the lock
            self._descriptor = None


def withdraw(folder: Path) -> None:
    """Delete every output an operator published in ``folder`` (nothing else)."""
    for manifest in sorted(folder.glob(".*.manifest")) if folder.is_dir() else []:
        with OutputFolder(folder, manifest.name[1 : -len(".manifest")]) as output:
            output.publish([])


def _lock(descriptor: int, kind: int, folder: Path) -> None:
    """Take the lock, saying so when another process makes us wait."""
    try:
        fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("waiting for another process using %s to finish", folder)
        fcntl.flock(descriptor, kind)


def _plain_files(folder: Path, prefix: str) -> set[str] | None:
    """The files under ``folder``, as ``prefix`` + their path inside it; ``None`` when anything
    there is neither a plain file nor a folder."""
    found: set[str] = set()
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                inner = _plain_files(Path(entry.path), f"{prefix}{entry.name}/")
                if inner is None:
                    return None
                found |= inner
            elif entry.is_file(follow_symlinks=False):
                found.add(prefix + entry.name)
            else:
                return None
    return found


def _check_relative(path: str) -> None:
    if not path or path.startswith("/") or ".." in path.split("/") or "\\" in path:
        raise OutputError(f"not a path inside the output folder: {path!r}")


def _folder_of(path: str) -> str:
    """The folder part of a relative POSIX path (``""`` for a file in the root)."""
    return path.rpartition("/")[0]


def _plain_file(path: Path) -> bool:
    """Whether ``path`` is a regular file itself, not a symbolic link to one."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _read_list(file: Path) -> list[str]:
    text = file.read_text(encoding="utf-8", errors="surrogateescape")
    return [line for line in text.splitlines() if line]


def _write_synced(file: Path, text: str) -> None:
    """Write ``file`` and flush it to disk; a symbolic link in its place is not followed."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
    with os.fdopen(os.open(file, flags, 0o644), "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def sync_folder(folder: Path) -> None:
    """Flush ``folder``'s entries to disk: a file created, renamed or linked into it stays."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
