"""Running operators as containers on a Docker engine, hardened the same way as compose.yaml."""

from __future__ import annotations

import logging
import os
from contextlib import suppress
from typing import IO, Any

from series_selection.common.errors import InputError
from series_selection.common.processes import process_identity, process_running

try:
    from docker.client import DockerClient
    from docker.errors import DockerException, ImageNotFound, NotFound
    from docker.models.images import Image
    from docker.types import DeviceRequest
except ModuleNotFoundError as missing:
    raise InputError(
        f"--engine docker needs the Python package {missing.name!r}: "
        "pip install 'dicom-series-selection[docker]'"
    ) from missing
from series_selection.pipeline.definition import Operator
from series_selection.pipeline.runner import Mount, copy_lines

log = logging.getLogger(__name__)

OWNER_LABEL = "series-selection.owner"
"""The ``process_identity`` of the process that started the container."""
OUTPUT_LABEL = "series-selection.output"
"""The host folders the container writes to, comma-separated."""
HARDENING: dict[str, Any] = {
    "read_only": True,
    "tmpfs": {"/tmp": ""},
    "cap_drop": ["ALL"],
    "network_mode": "none",
    "security_opt": ["no-new-privileges"],
}


class DockerEngine:
    """One container per operator: inputs mounted read-only, no network, no capabilities.

    Containers run as the calling user, so that the outputs belong to them; when that is root,
    they run as the image's own (non-root) user, and the output folders are handed to it.
    """

    name = "docker"

    def __init__(self) -> None:
        try:
            self.client = DockerClient.from_env()
            self.client.ping()
        except DockerException as error:
            raise InputError(f"--engine docker: no Docker engine answers: {error}") from error

    def check(self, operator: Operator) -> None:
        self._image(operator)

    def _image(self, operator: Operator) -> Image:
        reference = operator.container.reference
        try:
            return self.client.images.get(reference)
        except ImageNotFound as error:
            raise InputError(
                f"image {reference} of operator {operator.name!r} is not on this Docker engine "
                "(build it with docker/build-images.sh)"
            ) from error

    def run(
        self,
        operator: Operator,
        mounts: list[Mount],
        environment: dict[str, str],
        log_to: IO[bytes],
    ) -> int:
        image = self._image(operator)
        command = operator.container.command
        writes_to = ",".join(sorted(str(m.source) for m in mounts if not m.read_only))
        self._remove_orphans(writes_to)
        container = self.client.containers.create(
            image.id,
            entrypoint=list(command) if command else None,
            environment=environment,
            labels={OWNER_LABEL: process_identity(), OUTPUT_LABEL: writes_to},
            volumes={
                str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
                for m in mounts
            },
            user=_container_user(image.attrs["Config"].get("User") or "", mounts),
            **self._limits(operator),
            **HARDENING,
        )
        try:
            container.start()
            copy_lines(container.logs(stream=True, follow=True), log_to)
            return int(container.wait()["StatusCode"])
        finally:
            container.remove(force=True)

    def _remove_orphans(self, writes_to: str) -> None:
        """Remove the containers that write to the same folders for a process that has ended:
        a run killed before it could remove them (``kill -9``). They would hold the folders'
        lock, and the new run would wait for them."""
        labelled = self.client.containers.list(
            all=True, filters={"label": f"{OUTPUT_LABEL}={writes_to}"}
        )
        for container in labelled:
            if not process_running(container.labels.get(OWNER_LABEL, "")):
                log.warning(
                    "removing container %s, left running on %s by a run that was killed",
                    container.short_id,
                    writes_to,
                )
                with suppress(NotFound):  # ended and removed meanwhile
                    container.remove(force=True)

    def _limits(self, operator: Operator) -> dict[str, Any]:
        """The operator's ``requests`` as container limits; GPUs only where the engine has the
        NVIDIA runtime (else the operator runs without, and the log says so)."""
        requests = operator.requests
        limits: dict[str, Any] = {}
        if requests.memory_mb is not None:
            limits["mem_limit"] = f"{requests.memory_mb}m"
        if requests.cpu is not None:
            limits["nano_cpus"] = int(requests.cpu * 1e9)
        if requests.gpu:
            if "nvidia" in (self.client.info().get("Runtimes") or {}):
                limits["device_requests"] = [
                    DeviceRequest(count=requests.gpu, capabilities=[["gpu"]])
                ]
            else:
                log.warning(
                    "operator %s requests %d GPU(s); this Docker engine has no GPU runtime: "
                    "running it without",
                    operator.name,
                    requests.gpu,
                )
        return limits


def _container_user(image_user: str, mounts: list[Mount]) -> str:
    if os.getuid() != 0:
        return f"{os.getuid()}:{os.getgid()}"
    uid, _, gid = image_user.partition(":")
    if uid.isdigit():
        for mount in mounts:
            if not mount.read_only:
                os.chown(mount.source, int(uid), int(gid) if gid.isdigit() else -1)
    return image_user
