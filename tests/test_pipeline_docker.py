"""The containers: built offline, run through compose and the Docker engine runner, hardened.

Builds the local Debian base (once: kept while its tag exists) and the four images with
``docker/build-images.sh --local-base``, as CI does.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from docker.client import DockerClient

from series_selection.pipeline.cli import main
from test_pipeline_local import check_report, check_selected_volumes

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

# Run inside a container: what the process may do there, as JSON on standard output.
PROBE = """
import json, os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status").read().splitlines())

def writable(folder):
    try:
        with open(os.path.join(folder, ".probe"), "w"):
            pass
    except OSError:
        return False
    os.remove(os.path.join(folder, ".probe"))
    return True

print(json.dumps({
    "uid": os.getuid(),
    "effective_capabilities": int(status["CapEff"], 16),
    "no_new_privileges": status["NoNewPrivs"].strip(),
    "root_writable": writable("/"),
    "tmp_writable": writable("/tmp"),
    "output_writable": writable(sys.argv[1]),
    "network_interfaces": sorted(os.listdir("/sys/class/net")),
}))
"""

HARDENED = {
    "effective_capabilities": 0,
    "no_new_privileges": "1",
    "root_writable": False,
    "tmp_writable": True,
    "output_writable": True,
    "network_interfaces": ["lo"],
}


def compose_call(
    project: tuple[list[str], dict[str, str]], *arguments: str
) -> subprocess.CompletedProcess[str]:
    command, environment = project
    return subprocess.run(
        [*command, *arguments], env=environment, capture_output=True, text=True, check=False
    )


def compose_run(
    project: tuple[list[str], dict[str, str]], *arguments: str
) -> subprocess.CompletedProcess[str]:
    return compose_call(project, "run", "--rm", "-T", "--no-deps", *arguments)


def compose_up(project: tuple[list[str], dict[str, str]]) -> subprocess.CompletedProcess[str]:
    """The whole chain in one command, as the README shows it: ends with series-report."""
    up = ["up", "--abort-on-container-exit", "--exit-code-from", "series-report"]
    return compose_call(project, *up, "series-report")


def test_compose_runs_the_pipeline_on_the_sample_studies(
    compose_project: tuple[list[str], dict[str, str]], output_folder: Path, report_folder: Path
) -> None:
    for service in ("dicom-parser", "series-selector", "series-report"):
        result = compose_run(compose_project, service)
        assert result.returncode == 0, result.stdout + result.stderr
    check_selected_volumes(output_folder)
    check_report(report_folder)


def test_compose_up_runs_the_pipeline_on_the_sample_studies(
    compose_project: tuple[list[str], dict[str, str]], output_folder: Path, report_folder: Path
) -> None:
    result = compose_up(compose_project)
    assert result.returncode == 0, result.stdout + result.stderr
    check_selected_volumes(output_folder)
    check_report(report_folder)


def test_compose_up_refuses_a_mistyped_input(
    compose_project: tuple[list[str], dict[str, str]], tmp_path: Path, output_folder: Path
) -> None:
    """The engine creates the missing folder empty; the parser refuses it, and the chain stops."""
    _, environment = compose_project
    environment["INPUT"] = str(tmp_path / "mistyped")
    result = compose_up(compose_project)
    assert result.returncode != 0, result.stdout + result.stderr
    parser_log = compose_call(compose_project, "logs", "--no-color", "dicom-parser").stdout
    assert "input folder /input holds no files" in parser_log
    assert list(output_folder.iterdir()) == []


def test_compose_passes_selection_rules(
    compose_project: tuple[list[str], dict[str, str]], output_folder: Path
) -> None:
    _, environment = compose_project
    rules = (REPO / "rules/ct-abdomen-axial.yaml").read_bytes()
    environment["RULES_BASE64"] = base64.b64encode(rules).decode()
    for service in ("dicom-parser", "series-selector"):
        assert compose_run(compose_project, service).returncode == 0
    selected = json.loads((output_folder / "selected-images.json").read_text())
    assert [s["name"] for s in selected["selections"]] == ["CT abdomen axial"]


@pytest.mark.parametrize("service", ["dicom-parser", "series-selector", "series-report"])
def test_compose_containers_are_hardened(
    compose_project: tuple[list[str], dict[str, str]], service: str
) -> None:
    output = "/output"
    result = compose_run(compose_project, "--entrypoint", "python3", service, "-c", PROBE, output)
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen.pop("uid") != 0
    assert seen == HARDENED


MOUNTED = {
    "dicom-parser": ["/input", "/output"],
    "series-selector": ["/input", "/output"],
    "series-report": ["/input", "/selections", "/output"],
}
"""The folders volumes mount onto: compose v2 creates every container before starting any, and
an empty named volume takes the owner of the folder in the image; all must be the user's."""


@pytest.mark.parametrize("image", sorted(MOUNTED))
def test_images_run_as_a_non_root_user_that_owns_the_mounted_folders(
    engine: DockerClient, images: None, image: str
) -> None:
    reference = f"series-selection/{image}:0.1.0"
    assert engine.images.get(reference).attrs["Config"]["User"] == "10001:10001"
    owners = engine.containers.run(
        reference,
        entrypoint=["stat", "-c", "%u:%g", *MOUNTED[image]],
        remove=True,
        network_mode="none",
    )
    assert owners.decode().split() == ["10001:10001"] * len(MOUNTED[image])


IMPORTABLE = """
import importlib.util
names = ["numpy", "nibabel", "jinja2", "regex", "pynetdicom", "docker", "SimpleITK"]
print(*[name for name in names if importlib.util.find_spec(name)])
"""
"""Inside an image: which of the libraries that only some commands need are installed."""


@pytest.mark.parametrize(
    ("image", "libraries"),
    [
        ("dicom-parser", ["numpy", "nibabel"]),
        ("series-selector", ["regex"]),
        ("series-report", ["numpy", "jinja2"]),
        ("dicom-receiver", ["numpy", "nibabel", "jinja2", "regex", "pynetdicom"]),
    ],
)
def test_each_image_installs_only_its_operators_extra_within_300_mb(
    engine: DockerClient, images: None, image: str, libraries: list[str]
) -> None:
    reference = f"series-selection/{image}:0.1.0"
    assert engine.images.get(reference).attrs["Size"] <= 300 * 1000**2  # as `docker image ls`
    found = engine.containers.run(
        reference, entrypoint=["python3", "-c", IMPORTABLE], remove=True, network_mode="none"
    )
    assert found.decode().split() == libraries


def test_a_command_whose_extra_is_not_installed_says_so_in_one_line(images: None) -> None:
    image = "series-selection/series-selector:0.1.0"  # has no numpy: no parser
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", "--entrypoint", "dicom-parser", image],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 3
    (line,) = result.stderr.splitlines()
    assert line.startswith("dicom-parser: the Python package ")
    assert line.endswith("is missing: pip install 'dicom-series-selection[parser]'")


def test_the_docker_engine_runner_runs_the_pipeline_on_the_sample_studies(
    images: None, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    arguments = ["run", "--engine", "docker", "--input", str(REPO / "samples")]
    assert main([*arguments, "--output", str(out)]) == 0

    summary = json.loads((out / "pipeline-run.json").read_text())
    assert (summary["engine"], summary["status"]) == ("docker", "succeeded")
    assert "series_selection.parser" in (out / "dicom-parser.log").read_text()
    check_selected_volumes(out / "series-selector/selections")
    check_report(out / "series-report/report")


def test_the_docker_engine_runner_hardens_containers_and_propagates_failures(
    images: None, tmp_path: Path
) -> None:
    probing = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    probing["operators"][0]["container"]["command"] = ["python3", "-c", PROBE, "/output"]
    definition = tmp_path / "pipeline.yaml"
    definition.write_text(yaml.safe_dump(probing))
    out = tmp_path / "run"
    arguments = ["run", "--engine", "docker", "--pipeline", str(definition)]
    exit_code = main([*arguments, "--input", str(REPO / "samples"), "--output", str(out)])

    seen = json.loads((out / "dicom-parser.log").read_text())
    assert seen.pop("uid") != 0
    assert seen == HARDENED
    # The probe wrote no series-images.json: the selector fails on bad input, exit code 2.
    assert exit_code == 2
    summary = json.loads((out / "pipeline-run.json").read_text())
    assert [(op["name"], op["exit_code"]) for op in summary["operators"]] == [
        ("dicom-parser", 0),
        ("series-selector", 2),
        ("series-report", None),
    ]


def test_a_missing_image_is_reported_before_anything_runs(
    images: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    definition["operators"][1]["container"]["tag"] = "never-built"
    definition_file = tmp_path / "pipeline.yaml"
    definition_file.write_text(yaml.safe_dump(definition))
    arguments = ["run", "--engine", "docker", "--pipeline", str(definition_file)]
    out = tmp_path / "run"
    assert main([*arguments, "--input", str(REPO / "samples"), "--output", str(out)]) == 2
    error = capsys.readouterr().err
    assert (
        "image series-selection/series-selector:never-built of operator 'series-selector'" in error
    )
    assert not out.exists()


LIMITS = """
import os
v2 = os.path.exists("/sys/fs/cgroup/memory.max")
def read(v2_name, v1_name):
    return open("/sys/fs/cgroup/" + (v2_name if v2 else v1_name)).read().split()
print(*read("memory.max", "memory/memory.limit_in_bytes"))
period = [] if v2 else read("", "cpu/cpu.cfs_period_us")
print(*read("cpu.max", "cpu/cpu.cfs_quota_us"), *period)
from series_selection.parser.bounds import usable_cpus
print(usable_cpus())
"""
"""Inside a container: its memory limit in bytes, then its CPU quota and period (cgroup v2 or
v1), then how many workers the parser would start there by default."""


def test_the_docker_engine_runner_sets_an_operators_requests_as_limits(
    images: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    parser = definition["operators"][0]
    parser["container"]["command"] = ["python3", "-c", LIMITS]
    parser["requests"] = {"memory": 256, "cpu": 0.5, "gpu": 1}
    definition_file = tmp_path / "pipeline.yaml"
    definition_file.write_text(yaml.safe_dump(definition))
    out = tmp_path / "run"
    arguments = ["run", "--engine", "docker", "--pipeline", str(definition_file)]
    main([*arguments, "--input", str(REPO / "samples"), "--output", str(out)])
    limits = [str(256 << 20), "50000", "100000", "1"]  # half a CPU: one worker
    assert (out / "dicom-parser.log").read_text().split() == limits
    assert "requests 1 GPU(s); this Docker engine has no GPU runtime" in capsys.readouterr().err


HOLD = """
import time
from pathlib import Path
from series_selection.common.folders import OutputFolder
with OutputFolder(Path("/output"), "dicom-parser"):
    print("holding the output folder", flush=True)
    time.sleep(600)
"""
"""A parser that takes its output folder's lock and keeps it for ten minutes."""


def test_a_rerun_removes_the_container_that_a_killed_run_left_running(
    engine: DockerClient, images: None, tmp_path: Path
) -> None:
    holding = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    holding["operators"][0]["container"]["command"] = ["python3", "-c", HOLD]
    definition = tmp_path / "pipeline.yaml"
    definition.write_text(yaml.safe_dump(holding))
    out = tmp_path / "run"
    arguments = ["--input", str(REPO / "samples"), "--output", str(out), "--engine", "docker"]
    command = [sys.executable, "-m", "series_selection.pipeline", "run", *arguments]
    label = f"series-selection.output={out / 'dicom-parser'}"
    first = subprocess.Popen([*command, "--pipeline", str(definition)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(
            b"holding" in c.logs() for c in engine.containers.list(filters={"label": label})
        ):
            assert first.poll() is None and time.monotonic() < deadline, "the parser never started"
            time.sleep(0.2)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        (left,) = engine.containers.list(filters={"label": label})  # still running, lock held

        rerun = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)

        assert rerun.returncode == 0, rerun.stderr
        assert f"removing container {left.short_id}" in rerun.stderr
        assert engine.containers.list(all=True, filters={"label": label}) == []
        check_selected_volumes(out / "series-selector/selections")
    finally:
        first.kill()
        for container in engine.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
