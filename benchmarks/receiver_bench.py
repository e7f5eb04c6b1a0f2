"""Instances per second that dicom-receiver takes from dcmtk's storescu over loopback, beside
dcmtk's own storescp writing to the same disk, and the receiver's peak memory.

    python benchmarks/receiver_bench.py [--folder /tmp/dicom-bench/receiver] [--count 1000]
                                        [--runs 3] [--json receiver.json] [--orthanc]

About 1,000 CT slices (512 x 512, 16 bit, about 513 kB each) are written once with pydicom
under ``--folder``. Each run sends all of them with one ``storescu`` (one association) and then
with four at once (a quarter each), first to ``storescp -od DIR`` (no sync), then to
``dicom-receiver`` (every instance written, synced and renamed before its success status),
the two alternating run by run (the ratio is the median of each run's pair: other work on the
machine then weighs on both alike).
The receiver's job timeout is an hour: no pipeline runs while it is measured. ``--orthanc``
also times Orthanc (Debian's package) once per setting, storing with ``SyncStorageArea``: a
receiver that, like ours, syncs what it stores. dcmtk's programs
are called by their full path (pynetdicom's console scripts of the same names shadow them in
the venv), with ``TCP_NODELAY=1`` (see ``DCMTK_ENVIRONMENT``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

STORESCU = "/usr/bin/storescu"
STORESCP = "/usr/bin/storescp"
ORTHANC = "/usr/sbin/Orthanc"
CORPUS = "ct-v1"
"""Where the generated slices are kept; renamed whenever ``write_corpus`` changes."""
SLICES_PER_SERIES = 250
DCMTK_ENVIRONMENT = {**os.environ, "TCP_NODELAY": "1"}
"""Debian's dcmtk leaves Nagle's algorithm on unless told so at run time: each small PDU then
waits for the peer's delayed acknowledgement (about 40 ms per instance on loopback, which
would measure the wait, not the receivers)."""


def write_corpus(folder: Path, count: int) -> list[Path]:
    """``count`` CT slices in series of 250, one study; written once, then reused."""
    target = folder / f"{CORPUS}-{count}"
    files = sorted(target.glob("*.dcm"))
    if len(files) == count:
        return files
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    rng = np.random.default_rng(11)
    study = generate_uid()
    base = (rng.normal(40, 300, (512, 512))).astype(np.int16)
    series = ""
    for index in range(count):
        if index % SLICES_PER_SERIES == 0:
            series = generate_uid()
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.Modality, ds.PatientName, ds.PatientID = "CT", "BENCH^RECEIVER", "BENCH"
        ds.SeriesNumber = index // SLICES_PER_SERIES + 1
        ds.InstanceNumber = index % SLICES_PER_SERIES + 1
        ds.SeriesDescription = "Benchmark 1mm"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [-250, -250, -float(index % SLICES_PER_SERIES)]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.PixelSpacing = [0.9765625, 0.9765625]
        ds.SliceThickness = 1.0
        ds.Rows = ds.Columns = 512
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.roll(base, index, axis=0).tobytes()
        ds.save_as(target / f"{index:05d}.dcm", enforce_file_format=True)
    return sorted(target.glob("*.dcm"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the receiving program exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


def send(port: int, files: list[Path], associations: int) -> float:
    """Seconds for ``associations`` storescu processes to send ``files`` (split evenly)."""
    lists = [files[i::associations] for i in range(associations)]
    start = time.perf_counter()
    senders = [
        subprocess.Popen(
            [STORESCU, "-aec", "BENCH", "127.0.0.1", str(port), *map(str, chunk)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=DCMTK_ENVIRONMENT,
        )
        for chunk in lists
    ]
    for sender in senders:
        _, err = sender.communicate()
        if sender.returncode != 0:
            raise SystemExit(f"storescu failed: {err.decode(errors='replace')[-2000:]}")
    return time.perf_counter() - start


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid: int) -> float:
    """The process's user + system CPU time so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_storescp(files: list[Path], scratch: Path, associations: int) -> float:
    out = scratch / "storescp"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    port = free_port()
    process = subprocess.Popen(
        [STORESCP, "-od", str(out), "--fork" if associations > 1 else "-v", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=DCMTK_ENVIRONMENT,
    )
    try:
        wait_listening(port, process)
        seconds = send(port, files, associations)
    finally:
        process.terminate()
        process.wait()
    received = sum(1 for _ in out.iterdir())
    if received != len(files):
        raise SystemExit(f"storescp wrote {received} files of {len(files)}")
    return seconds


def run_orthanc(files: list[Path], scratch: Path, associations: int) -> float:
    """Seconds for Orthanc (Debian's package), which syncs what it stores, to take ``files``."""
    folder = scratch / "orthanc"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    port, http = free_port(), free_port()
    config = {
        "Name": "bench",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http,
        "DicomPort": port,
        "DicomAet": "BENCH",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [],
        "SyncStorageArea": True,
        "StorageCompression": False,
    }
    (folder / "config.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [ORTHANC, str(folder / "config.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        seconds = send(port, files, associations)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/statistics") as answer:
            received = json.load(answer)["CountInstances"]
    finally:
        process.terminate()
        process.wait()
    if received != len(files):
        raise SystemExit(f"Orthanc kept {received} instances of {len(files)}")
    return seconds


def run_receiver(files: list[Path], scratch: Path, associations: int) -> tuple[float, int, float]:
    """Seconds to receive ``files``, the receiver's peak memory and the CPU time it took."""
    folder = scratch / "receiver"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    port = free_port()
    config = folder / "receiver.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "port": port,
                "host": "127.0.0.1",
                "spool": str(folder / "spool"),
                "output": str(folder / "output"),
                "ae_titles": {"BENCH": {"timeout": 3600}},
            }
        )
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "series_selection.receiver", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        cpu = cpu_seconds(process.pid)
        seconds = send(port, files, associations)
        memory = peak_rss(process.pid)
        cpu = cpu_seconds(process.pid) - cpu
    finally:
        process.terminate()
        process.wait()
    received = sum(1 for _ in (folder / "spool" / "groups").rglob("*.dcm"))
    if received != len(files):
        raise SystemExit(f"the receiver kept {received} files of {len(files)}")
    return seconds, memory, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folder", type=Path, default=Path("/tmp/dicom-bench/receiver"))
    parser.add_argument("--count", type=int, default=1000, help="CT slices to send")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--orthanc",
        action="store_true",
        help="also time Orthanc, a receiver that syncs what it stores (once per setting)",
    )
    arguments = parser.parse_args()
    for program in (STORESCU, STORESCP):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} not found: apt-get install dcmtk")
    if arguments.orthanc and shutil.which(ORTHANC) is None:
        raise SystemExit(f"{ORTHANC} not found: apt-get install orthanc")
    files = write_corpus(arguments.folder, arguments.count)
    size = sum(f.stat().st_size for f in files)
    print(f"{len(files)} CT slices, {size / 1e6:.0f} MB, {arguments.runs} run(s) each")
    for file in files:  # warm page cache
        file.read_bytes()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=arguments.folder) as scratch_name:
        scratch = Path(scratch_name)
        for associations in (1, 4):
            pairs = []
            for _ in range(arguments.runs):
                reference = run_storescp(files, scratch, associations)
                pairs.append((reference, *run_receiver(files, scratch, associations)))
            dcmtk_s = statistics.median(p[0] for p in pairs)
            receiver_s = statistics.median(p[1] for p in pairs)
            row = {
                "associations": associations,
                "instances": len(files),
                "storescp_seconds": round(dcmtk_s, 2),
                "storescp_per_second": round(len(files) / dcmtk_s, 1),
                "receiver_seconds": round(receiver_s, 2),
                "receiver_per_second": round(len(files) / receiver_s, 1),
                "ratio": round(statistics.median(p[0] / p[1] for p in pairs), 2),
                "ratios": [round(p[0] / p[1], 2) for p in pairs],
                "receiver_cpu_ms_per_instance": round(
                    1000 * statistics.median(p[3] for p in pairs) / len(files), 2
                ),
                "receiver_peak_rss_mb": round(max(p[2] for p in pairs) / 1e6, 1),
                "load_average": round(os.getloadavg()[0], 1),
            }
            results.append(row)
            print(
                f"{associations} association(s): storescp {row['storescp_per_second']}/s, "
                f"dicom-receiver {row['receiver_per_second']}/s, ratio {row['ratio']} "
                f"(runs {row['ratios']}), receiver CPU {row['receiver_cpu_ms_per_instance']} "
                f"ms/instance, peak RSS {row['receiver_peak_rss_mb']} MB, "
                f"load {row['load_average']}"
            )
            if arguments.orthanc:
                orthanc_s = run_orthanc(files, scratch, associations)
                row["orthanc_per_second"] = round(len(files) / orthanc_s, 1)
                row["receiver_to_orthanc"] = round(orthanc_s / receiver_s, 2)
                print(
                    f"{associations} association(s): Orthanc (synced) "
                    f"{row['orthanc_per_second']}/s; dicom-receiver / Orthanc "
                    f"{row['receiver_to_orthanc']}"
                )
    if arguments.json:
        arguments.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
