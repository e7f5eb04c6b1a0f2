"""Shared fixtures: the real scanner data beside the repository, when it is there, and the
check that every NIfTI file the parser writes in a test has a qform as exact as its sform."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pytest

if TYPE_CHECKING:
    from docker.client import DockerClient
from nibabel.filebasedimages import ImageFileError

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
COMPOSE_FILE = REPO / "docker/compose.yaml"
IMAGE_USER = (10001, 10001)
"""The non-root user of the project's images (docker/*.Dockerfile)."""


@pytest.fixture(scope="session")
def engine() -> DockerClient:
    """The Docker engine, or a skip where none answers."""
    from docker.client import DockerClient
    from docker.errors import DockerException

    try:
        client = DockerClient.from_env()
        client.ping()
    except DockerException as error:
        pytest.skip(f"no Docker engine answers: {error}")
    return client


@pytest.fixture(scope="session")
def images(engine: DockerClient) -> None:
    """The base (unless present) and the four images, built offline once per test session."""
    result = subprocess.run(
        [str(REPO / "docker/build-images.sh"), "--local-base"],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module", params=["docker-compose", "docker compose"])
def compose(request: pytest.FixtureRequest, images: None) -> list[str]:
    """Each compose implementation installed: docker-compose 1.29 and the v2 plugin."""
    command: list[str] = request.param.split()
    probe = subprocess.run([*command, "version"], capture_output=True, check=False)
    if shutil.which(command[0]) is None or probe.returncode != 0:
        pytest.skip(f"'{request.param}' is not installed here")
    return command


def image_writable(folder: Path) -> Path:
    """``folder``, made, and writable by the images' user: handed to it when we are root, open
    to all otherwise."""
    folder.mkdir()
    if os.getuid() == 0:
        os.chown(folder, *IMAGE_USER)
    else:
        folder.chmod(0o777)
    return folder


@pytest.fixture
def output_folder(tmp_path: Path) -> Path:
    """A host folder for the selections, writable by the containers' user."""
    return image_writable(tmp_path / "out")


@pytest.fixture
def report_folder(tmp_path: Path) -> Path:
    """A host folder for series-report, writable by the containers' user."""
    return image_writable(tmp_path / "report")


@pytest.fixture
def compose_project(
    compose: list[str], output_folder: Path, report_folder: Path
) -> Iterator[tuple[list[str], dict[str, str]]]:
    """The compose command for a project of this test, and its environment; removed after."""
    command = [*compose, "--file", str(COMPOSE_FILE), "--project-name", f"selection{os.getpid()}"]
    environment = {
        **os.environ,
        "INPUT": str(REPO / "samples"),
        "OUTPUT": str(output_folder),
        "REPORT": str(report_folder),
    }
    if os.getuid() != 0:
        environment["PIPELINE_USER"] = f"{os.getuid()}:{os.getgid()}"
    yield command, environment
    subprocess.run([*command, "down", "--volumes"], env=environment, capture_output=True)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real scanner DICOM with reference conversions), or a skip."""
    if not (SHARED_DATA / "cases.json").is_file():
        pytest.skip(f"real scanner data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def shared_cases(shared_data: Path) -> dict[str, dict[str, Any]]:
    """The cases of ``cases.json`` keyed by their input path."""
    cases = json.loads((shared_data / "cases.json").read_text())["cases"]
    return {case["input"]: case for case in cases}


QFORM_TOLERANCE_MM = 1e-4


def qform_error_mm(path: Path) -> float:
    """How far a NIfTI file's qform puts its corner voxels from where its sform does (mm)."""
    header: Any = nib.load(path).header
    corners = np.array(list(product(*[(0, n - 1) for n in header.get_data_shape()[:3]])))
    homogeneous = np.c_[corners, np.ones(len(corners))].T
    return float(np.max(np.abs((header.get_qform() - header.get_sform()) @ homogeneous)))


@pytest.fixture(autouse=True)
def every_written_qform_is_exact(request: pytest.FixtureRequest) -> Iterator[None]:
    """After each test: every NIfTI file the parser wrote under its ``tmp_path`` has a qform
    that places the corners within 1e-4 mm of the sform (readers such as FSL use the qform)."""
    yield
    folder = request.node.funcargs.get("tmp_path") if hasattr(request.node, "funcargs") else None
    if folder is None:
        return
    for path in [*folder.rglob("*.nii"), *folder.rglob("*.nii.gz")]:
        if not path.is_file() or path.is_symlink():
            continue
        try:
            header: Any = nib.load(path).header
        except (ImageFileError, OSError, ValueError):  # a test's own broken file
            continue
        if header["descrip"].tobytes().rstrip(b"\0") != b"dicom-parser":
            continue
        if int(header["qform_code"]) > 0:
            assert qform_error_mm(path) <= QFORM_TOLERANCE_MM, f"{path}: qform off the sform"
