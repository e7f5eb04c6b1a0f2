"""dicom-receiver against real peers, whole: dcmtk's storescu (one and many at once), Orthanc
pushing compressed transfer syntaxes, a full spool, and kill -9 in the middle of a send.

Each test starts the receiver as a child process on a free loopback port with its own spool and
output, and compares each job's selected-images.json with ``series-pipeline run`` on the same
files, run here."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.uid import RLELossless

from receiver_support import (
    ORTHANC,
    SAMPLES,
    STORED,
    STORESCU,
    acknowledged,
    assert_no_traceback,
    copy_files,
    need,
    receiver,
    selected_images,
    series_pipeline,
    storescu,
    write_config,
)

pytestmark = pytest.mark.slow

SHARED_CASES = ["dcm_qa_ct/In/GE", "dicom2nifti/generic/anatomical/001"]
COMPRESSED_CASES = [
    "dcm_qa_ts/In",
    "dicom2nifti/generic/compressed_jpeg/001",
    "dicom2nifti/generic/compressed_jpegls/001",
    "dicom2nifti/generic/compressed_j2k/001",
    "dicom2nifti/generic/compressed_rle/001",
]


def dicom_files(*folders: Path) -> list[Path]:
    return sorted(p for f in folders for p in f.rglob("*") if p.is_file() and _is_dicom(p))


def _is_dicom(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(132)
    return head[128:132] == b"DICM" and path.name not in ("DICOMDIR",)


def sop_uids(files: list[Path]) -> list[str]:
    """The SOP Instance UIDs of ``files``, sorted (a repeated one repeated)."""
    return sorted(str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files)


def kept(running: Any, job_id: str) -> list[Path]:
    return sorted(running.input_folder(job_id).iterdir())


def by_study(files: list[Path]) -> dict[str, list[Path]]:
    studies: dict[str, list[Path]] = defaultdict(list)
    for file in files:
        studies[str(dcmread(file, stop_before_pixels=True).StudyInstanceUID)].append(file)
    return studies


def check_jobs_against_series_pipeline(
    jobs: list[dict[str, Any]], running: Any, sent: list[Path], scratch: Path
) -> None:
    """One done job per study of ``sent``, holding exactly its data sets, whose
    selected-images.json equals series-pipeline run's on that study's files."""
    studies = by_study(sent)
    assert sorted(j["group_key"] for j in jobs) == sorted(studies)
    for job in jobs:
        assert job["state"] == "done", job
        files = studies[job["group_key"]]
        assert sop_uids(kept(running, job["id"])) == sorted(set(sop_uids(files)))
        assert job["instances"] == len(set(sop_uids(files)))
        reference = series_pipeline(
            copy_files(files, scratch / f"in-{job['id']}"), scratch / f"out-{job['id']}"
        )
        assert selected_images(running.job_folder(job["id"])) == reference
        layout = sorted(p.name for p in running.job_folder(job["id"]).iterdir())
        reference_layout = sorted(p.name for p in (scratch / f"out-{job['id']}").iterdir())
        assert layout == reference_layout


def test_storescu_sends_the_samples_and_shared_cases_and_each_study_becomes_a_job(
    tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    folders = [SAMPLES / "ct-abdomen", SAMPLES / "mr-brain"]
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if (shared / "cases.json").is_file():
        folders += [shared / case for case in SHARED_CASES if (shared / case).is_dir()]
    config = write_config(tmp_path, {"SERIES-SELECT": {"timeout": 2}})
    with receiver(config) as running:
        sent = storescu(running.port, "SERIES-SELECT", *folders)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        files = dicom_files(*folders)
        assert len(acknowledged(sent.stdout + sent.stderr)) == len(files)
        jobs = running.wait_for_jobs(len(by_study(files)))
        assert running.stop() == 0
    check_jobs_against_series_pipeline(jobs, running, files, tmp_path / "reference")
    text = running.text()
    assert text.count("association from 'STORESCU'") == 1
    assert f"{len(files)} instance(s) stored" in text
    for job in jobs:
        done = f"job {job['id']} (SERIES-SELECT, {job['instances']} instances) done"
        (line,) = [line for line in text.splitlines() if done in line]
        chosen = running.job_folder(job["id"]) / "series-selector/selections/selected-images.json"
        for selection in json.loads(chosen.read_text())["selections"]:
            assert f"selection {selection['name']!r} chose" in line
            for series in selection["series"][:3]:
                assert f"of study {series['StudyInstanceUID']}" in line
    assert_no_traceback(text)


@pytest.fixture
def orthanc(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Orthanc on loopback ports with temporary storage; stopped by its process id."""
    from receiver_support import free_port

    need(ORTHANC)
    folder = tmp_path / "orthanc"
    folder.mkdir()
    settings: dict[str, Any] = {
        "Name": "test",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": free_port(),
        "DicomPort": free_port(),
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "DicomModalities": {},
    }
    settings["folder"] = folder
    yield settings


def _start_orthanc(settings: dict[str, Any]) -> subprocess.Popen[bytes]:
    config = dict(settings)
    folder = config.pop("folder")
    (folder / "config.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    process = subprocess.Popen(
        [str(ORTHANC), str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{settings['HttpPort']}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/system", timeout=2):
                return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    process.kill()
    process.wait()
    raise AssertionError((folder / "orthanc.log").read_text(errors="replace"))


def _http(url: str, data: bytes | None = None) -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=300) as answer:
        return json.loads(answer.read())


def rle_copies(files: list[Path], target: Path) -> list[Path]:
    """The files, compressed with RLE Lossless by pydicom (its own encoder)."""
    target.mkdir(parents=True)
    out = []
    for index, file in enumerate(files):
        dataset = dcmread(file)
        dataset.compress(RLELossless)
        path = target / f"{index:04d}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def test_orthanc_pushes_compressed_studies_as_they_are(
    tmp_path: Path, orthanc: dict[str, Any]
) -> None:
    files = rle_copies(dicom_files(SAMPLES / "ct-abdomen" / "portal-venous-5mm"), tmp_path / "rle")
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    if (shared / "cases.json").is_file():
        files += dicom_files(*(shared / c for c in COMPRESSED_CASES if (shared / c).is_dir()))
    # the shared cases hold one image in several syntaxes under one UID: Orthanc keeps one
    files = list({sop_uids([f])[0]: f for f in reversed(files)}.values())
    syntaxes = {str(dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID) for f in files}
    config = write_config(tmp_path, {"SERIES-SELECT": {"timeout": 2, "max_jobs": 2}})
    with receiver(config) as running:
        orthanc["DicomModalities"] = {"receiver": ["SERIES-SELECT", "127.0.0.1", running.port]}
        process = _start_orthanc(orthanc)
        try:
            url = f"http://127.0.0.1:{orthanc['HttpPort']}"
            for file in files:
                _http(f"{url}/instances", file.read_bytes())
            studies = _http(f"{url}/studies")
            body = json.dumps({"Resources": studies, "Synchronous": True}).encode()
            answer = _http(f"{url}/modalities/receiver/store", body)
        finally:
            process.terminate()
            process.wait(30)
        assert (answer["InstancesCount"], answer["FailedInstancesCount"]) == (len(files), 0)
        jobs = running.wait_for_jobs(len(by_study(files)))
        assert running.stop() == 0
    kept = {
        str(dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        for job in jobs
        for p in running.input_folder(job["id"]).iterdir()
    }
    assert kept == syntaxes  # stored as sent: nothing was converted on the way
    check_jobs_against_series_pipeline(jobs, running, files, tmp_path / "reference")
    assert "association from 'ORTHANC'" in running.text()
    assert_no_traceback(running.text())


def test_eight_storescu_at_once_into_two_ae_titles(tmp_path: Path) -> None:
    """Four senders per AE title, each sending both sample studies: every instance is
    acknowledged to each sender, kept once per AE title, and each study is one job per AE."""
    folders = [SAMPLES / "ct-abdomen", SAMPLES / "mr-brain"]
    files = dicom_files(*folders)
    config = write_config(
        tmp_path,
        {"FIRST": {"timeout": 3, "max_jobs": 2}, "SECOND": {"timeout": 3, "grouping": "series"}},
    )
    with receiver(config) as running:
        results: dict[int, subprocess.CompletedProcess[str]] = {}

        def send(index: int) -> None:
            called = "FIRST" if index % 2 else "SECOND"
            results[index] = storescu(running.port, called, *folders, calling=f"SENDER{index}")

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        series = {str(dcmread(f, stop_before_pixels=True).SeriesInstanceUID) for f in files}
        jobs = running.wait_for_jobs(len(by_study(files)) + len(series))
        assert running.stop() == 0
    for index, result in results.items():
        assert result.returncode == 0, result.stdout + result.stderr
        assert (result.stdout + result.stderr).count(STORED) == len(files), index
    first = [j for j in jobs if j["called_ae"] == "FIRST"]
    second = [j for j in jobs if j["called_ae"] == "SECOND"]
    assert len(first) == len(by_study(files)) and len(second) == len(series)
    assert all(j["state"] == "done" and j["runs"] == 1 for j in jobs)
    for group in (first, second):  # each instance once per AE title
        assert sop_uids([p for j in group for p in kept(running, j["id"])]) == sop_uids(files)
    check_jobs_against_series_pipeline(first, running, files, tmp_path / "reference")
    text = running.text()
    assert text.count(" released after ") == 8
    assert_no_traceback(text)


def peak_memory(pid: int) -> int:
    """The highest resident memory of process ``pid`` so far, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM for process {pid}")


def test_an_instance_over_the_limit_is_cut_off_as_it_arrives_in_bounded_memory(
    tmp_path: Path,
) -> None:
    """A 200 MB CT image against a 10 MB max_instance_bytes: the association is aborted when
    10 MB have arrived, the receiver's peak memory grows by far less than the image, nothing is
    kept, and the next association is served."""
    limit, side = 10 << 20, 10240  # 10240 x 10240 x 16 bits: 200 MiB of pixel data
    dataset = dcmread(sorted((SAMPLES / "ct-abdomen" / "localizer").iterdir())[0])
    dataset.Rows = dataset.Columns = side
    dataset.PixelData = bytes(side * side * 2)
    big = tmp_path / "big.dcm"
    dataset.save_as(big, enforce_file_format=True)
    del dataset
    config = write_config(tmp_path, {"A": {"timeout": 60}}, max_instance_bytes=limit)
    with receiver(config) as running:
        assert running.process is not None
        before = peak_memory(running.process.pid)
        sent = storescu(running.port, "A", big)
        grown = peak_memory(running.process.pid) - before
        assert acknowledged(sent.stdout + sent.stderr) == []
        small = storescu(running.port, "A", SAMPLES / "ct-abdomen" / "localizer")
        assert len(acknowledged(small.stdout + small.stderr)) == 3
        assert running.stop() == 0
    assert grown < limit + (40 << 20), grown
    (group,) = (running.spool / "groups").iterdir()
    assert len(list(group.iterdir())) == 3
    assert list((running.spool / "tmp").iterdir()) == []
    text = running.text()
    assert (
        "association from 'STORESCU' at 127.0.0.1 aborted: the data set being received passed "
        f"the limit of {limit} bytes (max_instance_bytes)" in text
    )
    assert (
        "to A aborted after" in text
        and "0 instance(s) stored (0 bytes), 0 again, 0 ignored, 1 refused" in text
    )
    assert_no_traceback(text)


@pytest.fixture
def small_file_system(tmp_path: Path) -> Iterator[Path]:
    """A 600 KiB tmpfs (skipped where mounting is not permitted); unmounted after."""
    folder = tmp_path / "small"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_spool_answers_out_of_resources_and_keeps_every_acknowledged_instance(
    tmp_path: Path, small_file_system: Path
) -> None:
    folders = [SAMPLES / "ct-abdomen"]
    files = dicom_files(*folders)
    config = write_config(
        tmp_path, {"SERIES-SELECT": {"timeout": 2}}, spool=str(small_file_system / "spool")
    )
    with receiver(config) as running:
        sent = storescu(running.port, "SERIES-SELECT", *folders)
        stored = acknowledged(sent.stdout + sent.stderr)
        assert 0 < len(stored) < len(files)  # the disk filled up on the way
        jobs = running.wait_for_jobs(1)
        assert running.stop() == 0
    (job,) = jobs
    assert sop_uids(kept(running, job["id"])) == sop_uids(stored)
    assert job["instances"] == len(stored)
    assert list((running.spool / "tmp").iterdir()) == []
    text = running.text()
    assert "refused (status 0xA700): cannot write to the spool: No space left on device" in text
    assert_no_traceback(text)


def test_kill_9_in_the_middle_of_a_send_loses_nothing_acknowledged_and_runs_nothing_twice(
    tmp_path: Path,
) -> None:
    """A study is done before the crash; the receiver is killed while another is being sent;
    after the restart the rest is sent again. Every instance storescu was told is stored is in
    a done job; the done job is left alone; each job ran once."""
    first_folder = SAMPLES / "mr-brain"
    second_folder = SAMPLES / "ct-abdomen"
    config = write_config(tmp_path, {"SERIES-SELECT": {"timeout": 2}})
    with receiver(config) as running:
        first = storescu(running.port, "SERIES-SELECT", first_folder)
        assert first.returncode == 0
        (done,) = running.wait_for_jobs(1)
        summary = (running.job_folder(done["id"]) / "pipeline-run.json").read_bytes()
        sender = subprocess.Popen(
            [
                str(need(STORESCU)),
                "-v",
                "-nh",
                "+sd",
                "+r",
                "-aec",
                "SERIES-SELECT",
                "127.0.0.1",
                str(running.port),
                str(second_folder),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert sender.stdout is not None
        lines = []
        for line in sender.stdout:
            lines.append(line)
            if sum(STORED in seen for seen in lines) == 20:
                running.kill()
                break
        lines += sender.stdout.readlines()
        sender.wait(60)
        stored = acknowledged("".join(lines))
        assert 20 <= len(stored) < len(dicom_files(second_folder))
        running.start()
        again = storescu(running.port, "SERIES-SELECT", second_folder)
        assert again.returncode == 0
        jobs = running.wait_for_jobs(2)
        assert running.stop() == 0
    assert all(j["state"] == "done" and j["runs"] == 1 for j in jobs), jobs
    assert (running.job_folder(done["id"]) / "pipeline-run.json").read_bytes() == summary
    (second,) = [j for j in jobs if j["id"] != done["id"]]
    assert set(sop_uids(stored)) <= set(sop_uids(kept(running, second["id"])))
    check_jobs_against_series_pipeline(
        jobs, running, dicom_files(first_folder, second_folder), tmp_path / "reference"
    )
    assert "resumed 1 open group(s)" in running.text()
    assert_no_traceback(running.text())


def children(pid: int) -> list[int]:
    """The process ids of ``pid``'s children (of all its threads)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_job_running_at_the_crash_runs_again_after_the_restart_and_once_only(
    tmp_path: Path,
) -> None:
    """The operator running at the kill is stopped first (SIGSTOP), so that it could only end
    by dying with the receiver: it is gone after the kill, and the job's second run runs alone
    (never waits for the first one's lock on the output folder)."""
    folder = SAMPLES / "ct-abdomen"
    config = write_config(tmp_path, {"SERIES-SELECT": {"timeout": 1}})
    operators: list[int] = []
    try:
        with receiver(config) as running:
            assert storescu(running.port, "SERIES-SELECT", folder).returncode == 0
            assert running.process is not None
            deadline = time.monotonic() + 60
            while not operators:
                assert time.monotonic() < deadline, running.text()
                operators = children(running.process.pid)
                time.sleep(0.02)
            for pid in operators:
                os.kill(pid, signal.SIGSTOP)
            running.kill()
            deadline = time.monotonic() + 10
            while any(alive(pid) for pid in operators):
                assert time.monotonic() < deadline, "an operator outlived the receiver"
                time.sleep(0.05)
            assert [j["state"] for j in running.status()] == ["running"]
            running.start()
            (job,) = running.wait_for_jobs(1)
            assert running.stop() == 0
    finally:
        for pid in operators:  # an orphan, if the test failed
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert (job["state"], job["runs"]) == ("done", 2)
    check_jobs_against_series_pipeline([job], running, dicom_files(folder), tmp_path / "ref")
    assert "1 job(s) queued again" in running.text()
    assert "waiting for another process" not in running.text()
    shutil.rmtree(tmp_path / "ref")
