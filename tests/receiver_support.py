"""What the receiver tests share: the real ``dicom-receiver`` in a child process on a free
loopback port, dcmtk's programs (by their full path: pynetdicom's console scripts of the same
names shadow them in the venv), and reading what the receiver left behind."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from reliability_support import REPOSITORY, parser_environment

DCMTK = Path("/usr/bin")
ECHOSCU, STORESCU, STORESCP = (DCMTK / name for name in ("echoscu", "storescu", "storescp"))
ORTHANC = Path("/usr/sbin/Orthanc")
SAMPLES = REPOSITORY / "samples"


def need(program: Path) -> Path:
    """``program``, or a skip naming the Debian package that brings it."""
    if not (program.is_file() and os.access(program, os.X_OK)):
        package = "orthanc" if program == ORTHANC else "dcmtk"
        pytest.skip(f"{program} not installed (apt-get install {package})")
    return program


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(folder: Path, ae_titles: dict[str, dict[str, Any]], **settings: Any) -> Path:
    """A configuration file in ``folder``: spool and output inside it, a free port."""
    document = {
        "port": free_port(),
        "host": "127.0.0.1",
        "spool": str(folder / "spool"),
        "output": str(folder / "output"),
        **settings,
        "ae_titles": ae_titles,
    }
    path = folder / "receiver.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


class Running:
    """A receiver process started by ``receiver``."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config = config
        self.document = yaml.safe_load(config.read_text())
        self.port: int = self.document["port"]
        self.output = Path(self.document["output"])
        self.spool = Path(self.document["spool"])
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        with self.log.open("ab") as log_to:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "series_selection.receiver", "--config", str(self.config)],
                env=parser_environment(),
                stdout=log_to,
                stderr=subprocess.STDOUT,
                cwd=self.config.parent,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"receiver exited {self.process.returncode}:\n{self.text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError(f"receiver did not listen within {timeout} s:\n{self.text()}")

    def kill(self) -> None:
        """SIGKILL: no chance to clean anything up."""
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def stop(self) -> int:
        """SIGTERM and wait: running jobs finish first."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(120)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def status(self) -> list[dict[str, Any]]:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "series_selection.receiver",
                "status",
                "--output",
                str(self.output),
                "--json",
            ],
            env=parser_environment(),
            capture_output=True,
            text=True,
            check=True,
        )
        jobs: list[dict[str, Any]] = json.loads(done.stdout)["jobs"]
        return jobs

    def wait_for_jobs(self, count: int, timeout: float = 180) -> list[dict[str, Any]]:
        """Wait until at least ``count`` jobs exist and none is open; returns them."""
        deadline = time.monotonic() + timeout
        jobs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if (self.output / "ledger.sqlite").is_file():
                jobs = self.status()
                finished = [j for j in jobs if j["state"] in ("done", "failed")]
                if len(jobs) >= count and len(finished) == len(jobs):
                    return jobs
            time.sleep(0.3)
        raise AssertionError(f"jobs did not finish in {timeout} s: {jobs}\n{self.text()}")

    def job_folder(self, job_id: str) -> Path:
        return self.output / "jobs" / job_id

    def input_folder(self, job_id: str) -> Path:
        return self.spool / "groups" / job_id


@contextmanager
def receiver(config: Path) -> Iterator[Running]:
    """The receiver running on ``config`` (stopped, by its process id, afterwards)."""
    running = Running(config, config.parent / "receiver.log")
    running.start()
    try:
        yield running
    finally:
        if running.process is not None and running.process.poll() is None:
            running.process.kill()
            running.process.wait()


def storescu(
    port: int, called: str, *paths: Path, calling: str = "STORESCU", timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """dcmtk's storescu sending every file under ``paths`` in one association (verbose: each
    file's outcome is in the output)."""
    return subprocess.run(
        [
            str(need(STORESCU)),
            "-v",
            "-nh",
            "+sd",
            "+r",
            "-aet",
            calling,
            "-aec",
            called,
            "127.0.0.1",
            str(port),
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


SENDING = re.compile(r"I: Sending file: (.+)$")
STORED = "I: Received Store Response (Success)"


def acknowledged(output: str) -> list[Path]:
    """The files a verbose storescu said were stored (a success response after them)."""
    files, current = [], None
    for line in output.splitlines():
        found = SENDING.search(line)
        if found:
            current = Path(found.group(1).strip())
        elif STORED in line and current is not None:
            files.append(current)
            current = None
    return files


def series_pipeline(source: Path, out: Path) -> dict[str, Any]:
    """``series-pipeline run`` on ``source``; its selected-images.json."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "series_selection.pipeline",
            "run",
            "--input",
            str(source),
            "--output",
            str(out),
        ],
        env=parser_environment(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return selected_images(out)


def selected_images(run_output: Path) -> dict[str, Any]:
    path = run_output / "series-selector" / "selections" / "selected-images.json"
    document: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return document


def copy_files(files: list[Path], target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for index, file in enumerate(files):
        shutil.copyfile(file, target / f"{index:05d}.dcm")
    return target


def assert_no_traceback(text: str) -> None:
    assert "Traceback" not in text, text
