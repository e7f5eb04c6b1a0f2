"""What the reliability tests share: running the real ``dicom-parser`` in a child process,
checking everything it left in its output folder, and writing DICOM elements byte by byte
(hostile files are ones a well-behaved writer refuses to produce)."""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import resource
import signal
import struct
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from series_selection.common.jsonio import schema_errors
from series_selection_tools.fidelity.worldspace import LoadedVolume, in_grid_of, load_volume

REPOSITORY = Path(__file__).resolve().parent.parent
SOURCE_ROOTS = (REPOSITORY / "operators", REPOSITORY / "tools")
OUTPUTS = {
    "dicom-metadata.json": "dicom-metadata",
    "series-images.json": "series-images",
    "parse-report.json": "parse-report",
}
PIXEL_DATA = (0x7FE0, 0x0010)
LONG_LENGTH_VRS = frozenset(
    ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"]
)
"""VRs whose explicit-VR length field has 4 bytes (after 2 reserved ones)."""
PR_CAPBSET_DROP, CAP_SYS_ADMIN, CAP_SYS_RESOURCE = 24, 21, 24  # <linux/prctl.h>, capability.h
UNUSED_UID = 0x7FFF_FFF0


def parser_command(source: Path, out: Path) -> list[str]:
    """The command line of the installed parser (``python -m``: no PATH lookup needed)."""
    return [
        sys.executable,
        "-m",
        "series_selection.parser",
        "--input",
        str(source),
        "--output",
        str(out),
    ]


def parser_environment() -> dict[str, str]:
    """The caller's environment with ``operators/`` importable, also without an installed copy."""
    roots = [*map(str, SOURCE_ROOTS), os.environ.get("PYTHONPATH")]
    path = os.pathsep.join(p for p in roots if p)
    return {**os.environ, "PYTHONPATH": path}


def run_parser(
    source: Path,
    out: Path,
    *flags: str,
    timeout: float = 120,
    memory_limit: int | None = None,
    file_size_limit: int | None = None,
    process_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``dicom-parser`` in a child process, its address space capped at ``memory_limit``
    bytes, the files it writes at ``file_size_limit`` bytes (writing more fails as on a
    full disk) and its processes and threads at ``process_limit`` (``limit_processes``)."""

    def limit_memory() -> None:
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
        if process_limit is not None:
            limit_processes(process_limit)

    return subprocess.run(
        [*parser_command(source, out), *flags],
        env=parser_environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit_memory,
        check=False,
    )


def limit_processes(count: int) -> None:
    """Let this process (a child about to exec, as root) and its descendants run at most
    ``count`` processes and threads (RLIMIT_NPROC). Root is exempt from that limit, so the
    child gives up CAP_SYS_ADMIN and CAP_SYS_RESOURCE and takes a real user ID no other process
    has; its effective user ID stays root's, so it reads and writes what root does."""
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_SYS_ADMIN, CAP_SYS_RESOURCE):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")
    os.setresuid(UNUSED_UID, 0, 0)
    resource.setrlimit(resource.RLIMIT_NPROC, (count, count))


def assert_clean_exit(result: subprocess.CompletedProcess[str], code: int = 0) -> None:
    """The run ended with ``code`` and wrote no traceback."""
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == code, result.stderr[-3000:]


def load_outputs(out: Path, required: bool = True) -> dict[str, Any]:
    """The JSON outputs present in ``out``, each checked against its schema.

    Every volume ``series-images.json`` lists must lie inside ``out`` and load.
    """
    outputs: dict[str, Any] = {}
    for name, schema in OUTPUTS.items():
        path = out / name
        if not path.exists() and not required:
            continue
        data = json.loads(path.read_text(encoding="utf-8"))
        assert schema_errors(data, schema) == [], f"{name} breaks its schema"
        outputs[name] = data
    for volumes in outputs.get("series-images.json", {}).values():
        for volume in volumes:
            path = (out / volume["path"]).resolve()
            assert path.is_relative_to(out.resolve()), f"{volume['path']} leaves the output"
            shape = load_voxels(path).shape
            assert shape == tuple(volume["shape"]), f"{volume['path']}: {shape} on disk"
    return outputs


def load_voxels(path: Path, grid: np.ndarray[Any, Any] | None = None) -> np.ndarray[Any, Any]:
    """A written volume's voxels as stored, indexed (i, j, k[, t]); on ``grid`` (an LPS
    affine), where given: axes the writer stored reversed are turned back (``in_grid_of``)."""
    if path.name.endswith(".mhd"):
        voxels = np.asarray(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).T
    else:
        voxels = np.asarray(nib.load(path).dataobj)  # type: ignore[attr-defined]
    if grid is None:
        return voxels
    return in_grid_of(LoadedVolume(voxels, load_volume(path).affine_lps), grid)


def tree_digest(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` by relative path: a file's SHA-256, a link's target, a
    folder's ``/``."""
    digests = {}
    for path in sorted(folder.rglob("*")):
        if path.is_symlink():
            digests[path.relative_to(folder).as_posix()] = f"-> {path.readlink()}"
        elif path.is_dir():
            digests[path.relative_to(folder).as_posix()] = "/"
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            digests[path.relative_to(folder).as_posix()] = digest
    return digests


def entries_on_disk(folder: Path) -> set[str]:
    """What the parser must account for: every entry under ``folder`` but plain folders.

    Symbolic links count as entries (to folders too) and are never entered.
    """
    found = set()
    for parent, dirs, files in os.walk(folder):
        here = Path(parent)
        for name in files + [d for d in dirs if (here / d).is_symlink()]:
            found.add((here / name).relative_to(folder).as_posix())
    return found


def assert_every_file_accounted_for(report: dict[str, Any], source: Path) -> dict[str, Any]:
    """Each entry under ``source`` is in the report once; skipped and duplicate ones say why."""
    files = {f["path"]: f for f in report["files"]}
    assert len(files) == len(report["files"]), "a file is reported twice"
    assert set(files) == entries_on_disk(source)
    for record in files.values():
        if record["status"] != "used":
            assert record.get("reason"), f"{record['path']}: {record['status']} without a reason"
    summary = report["summary"]
    assert summary["files"] == len(files)
    assert summary["used"] + summary["duplicate"] + summary["skipped"] == summary["files"]
    return files


def explicit_element(
    tag: tuple[int, int], vr: bytes, value: bytes, length: int | None = None
) -> bytes:
    """One data element in explicit VR little endian; ``length`` may lie about ``value``."""
    stated = len(value) if length is None else length
    if vr.decode() in LONG_LENGTH_VRS:
        head = struct.pack("<HH2sHI", tag[0], tag[1], vr, 0, stated)
    else:
        head = struct.pack("<HH2sH", tag[0], tag[1], vr, stated)
    return head + value


def insert_element(data: bytes, extra: bytes, before: tuple[int, int] = PIXEL_DATA) -> bytes:
    """``data`` with the encoded elements ``extra`` inserted just before the element ``before``
    (the last occurrence of its tag: pixel data comes last)."""
    at = data.rindex(struct.pack("<HH", *before))
    return data[:at] + extra + data[at:]


def replace_value(data: bytes, tag: tuple[int, int], value: bytes) -> bytes:
    """``data`` with the (short-length, explicit VR) element ``tag`` holding ``value`` instead."""
    key = struct.pack("<HH", *tag)
    at = data.index(key)
    (old_length,) = struct.unpack_from("<H", data, at + 6)
    vr = data[at + 4 : at + 6]
    return data[:at] + explicit_element(tag, vr, value) + data[at + 8 + old_length :]


class HangError(Exception):
    """The code under test ran past its time limit."""


@contextmanager
def time_limit(seconds: int) -> Iterator[None]:
    def expire(signum: int, frame: FrameType | None) -> None:
        raise HangError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
