"""The receiver's container: built offline with the operator images, hardened as compose runs
it, takes a study from storescu on its published port and runs the pipeline inside itself."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from docker.client import DockerClient

from conftest import image_writable
from receiver_support import (
    ECHOSCU,
    SAMPLES,
    acknowledged,
    free_port,
    need,
    receiver,
    selected_images,
    series_pipeline,
    storescu,
    write_config,
)
from test_pipeline_docker import compose_call

pytestmark = [pytest.mark.docker, pytest.mark.slow]

IMAGE = "series-selection/dicom-receiver:0.1.0"


def receive_one_study(port: int, output: Path, logs: Callable[[], str]) -> Path:
    """Wait for the receiver on ``port`` to answer C-ECHO, send it the CT sample study with
    storescu, and wait for its job's selection under ``output``; the job's folder."""
    deadline = time.monotonic() + 60
    echo = [str(need(ECHOSCU)), "-aec", "SERIES-SELECT", "127.0.0.1", str(port)]
    while subprocess.run(echo, capture_output=True, check=False).returncode != 0:
        assert time.monotonic() < deadline, logs()
        time.sleep(0.5)
    sent = storescu(port, "SERIES-SELECT", SAMPLES / "ct-abdomen")
    files = [p for p in (SAMPLES / "ct-abdomen").rglob("*") if p.is_file()]
    assert len(acknowledged(sent.stdout + sent.stderr)) == len(files)
    jobs = output / "jobs"
    while not list(jobs.glob("*/series-selector/selections/selected-images.json")):
        assert time.monotonic() < deadline + 120, logs()
        time.sleep(0.5)
    time.sleep(1)  # the job's last line and the ledger's update
    (job,) = list(jobs.iterdir())
    return job


def test_the_receiver_image_runs_the_pipeline_on_a_received_study(
    engine: DockerClient,
    images: None,
    tmp_path: Path,
) -> None:
    image = engine.images.get(IMAGE)
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert set(image.attrs["Config"]["ExposedPorts"]) == {"11112/tcp"}
    spool, output = image_writable(tmp_path / "spool"), image_writable(tmp_path / "output")
    port = free_port()
    container = engine.containers.run(
        IMAGE,
        detach=True,
        read_only=True,
        tmpfs={"/tmp": ""},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        ports={"11112/tcp": ("127.0.0.1", port)},
        volumes={
            str(spool): {"bind": "/spool", "mode": "rw"},
            str(output): {"bind": "/output", "mode": "rw"},
        },
    )
    try:
        job = receive_one_study(port, output, lambda: container.logs().decode())
        reference = series_pipeline(SAMPLES / "ct-abdomen", tmp_path / "reference")
        assert selected_images(job) == reference
        container.stop(timeout=60)
        logs = container.logs().decode().splitlines()
    finally:
        container.remove(force=True)
    records = [json.loads(line) for line in logs if line.startswith("{")]
    assert any("association from 'STORESCU'" in r["message"] for r in records)
    assert any(
        f"job {job.name} (SERIES-SELECT" in r["message"] and "done" in r["message"] for r in records
    )
    assert not any("Traceback" in line for line in logs)


def test_the_receiver_runs_its_jobs_with_the_docker_engine_when_configured(
    images: None,
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, {"SERIES-SELECT": {"timeout": 2}}, engine="docker")
    with receiver(config) as running:
        sent = storescu(running.port, "SERIES-SELECT", SAMPLES / "ct-abdomen")
        assert sent.returncode == 0, sent.stdout + sent.stderr
        (job,) = running.wait_for_jobs(1)
        assert running.stop() == 0
    assert job["state"] == "done", job
    folder = running.job_folder(job["id"])
    summary = json.loads((folder / "pipeline-run.json").read_text())
    assert summary["engine"] == "docker"
    reference = series_pipeline(SAMPLES / "ct-abdomen", tmp_path / "reference")
    assert selected_images(folder) == reference


def test_the_compose_receiver_service_takes_a_study_and_runs_the_pipeline(
    compose_project: tuple[list[str], dict[str, str]],
    tmp_path: Path,
) -> None:
    command, environment = compose_project
    output = image_writable(tmp_path / "receiver-output")
    port = free_port()
    environment |= {"RECEIVER_PORT": str(port), "RECEIVER_OUTPUT": str(output)}
    project = ([*command, "--profile", "receiver"], environment)  # `down` must see it too
    try:
        started = compose_call(project, "up", "-d", "receiver")
        assert started.returncode == 0, started.stdout + started.stderr
        job = receive_one_study(port, output, lambda: compose_call(project, "logs").stdout)
    finally:
        stopped = compose_call(project, "down", "--volumes")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    reference = series_pipeline(SAMPLES / "ct-abdomen", tmp_path / "reference")
    assert selected_images(job) == reference
