"""The chain the pipeline exists for: parser, selector, then a model that reads the chosen
volumes. The model is a stand-in (``stand_in_inference/``) in a definition written as Clara
users wrote them, with ``requests`` and ``parameters``."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest

from conftest import image_writable
from series_selection.pipeline.cli import main
from test_pipeline_docker import compose_call

REPO = Path(__file__).resolve().parents[1]
STAND_IN = Path(__file__).resolve().parent / "stand_in_inference"
DEFINITION = STAND_IN / "pipeline.yaml"
RULES = REPO / "rules/ct-abdomen-axial.yaml"
STAND_IN_IMAGE = "series-selection/stand-in-inference:0.1.0"


def check_results(selections: Path, results_folder: Path) -> list[dict[str, Any]]:
    """The model read every chosen volume, and what it read is what the selector handed over."""
    selected = json.loads((selections / "selected-images.json").read_text())
    results = json.loads((results_folder / "results.json").read_text())["results"]
    chosen = [
        (selection["name"], series["SeriesInstanceUID"], image)
        for selection in selected["selections"]
        for series in selection["series"]
        for image in series["images"]
    ]
    assert chosen, "the rules chose nothing: the chain was not exercised"
    assert [(r["selection"], r["SeriesInstanceUID"], r["path"]) for r in results] == [
        (name, uid, image["path"]) for name, uid, image in chosen
    ]
    for result, (_, _, image) in zip(results, chosen, strict=True):
        assert tuple(result["shape"]) == tuple(image["shape"])
        volume = nibabel.load(selections / image["path"])
        assert result["mean"] == pytest.approx(float(np.mean(volume.get_fdata())))
        assert result["first_voxel_ras"] == pytest.approx(volume.affine[:3, 3].tolist())
    return results


@pytest.mark.slow
def test_a_model_after_the_selector_runs_locally_on_the_chosen_volumes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    arguments = ["run", "--pipeline", str(DEFINITION), "--rules", str(RULES)]
    arguments += ["--parameter", f"INFERENCE_SCRIPT={STAND_IN / 'inference.py'}"]
    assert main([*arguments, "--input", str(REPO / "samples"), "--output", str(out)]) == 0
    (result,) = check_results(out / "series-selector/selections", out / "inference/results")
    assert result["selection"] == "CT abdomen axial"
    summary = json.loads((out / "pipeline-run.json").read_text())
    assert [o["name"] for o in summary["operators"]] == [
        "dicom-parser",
        "series-selector",
        "inference",
    ]


@pytest.fixture(scope="module")
def stand_in_image(images: None) -> str:
    """The stand-in model's image, on the parser's (built by ``images``)."""
    built = subprocess.run(
        ["docker", "build", "--quiet", "--tag", STAND_IN_IMAGE, str(STAND_IN)],
        env={**os.environ, "DOCKER_BUILDKIT": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    return STAND_IN_IMAGE


@pytest.mark.slow
@pytest.mark.docker
def test_a_model_after_the_selector_runs_in_containers_with_its_requests(
    stand_in_image: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    arguments = ["run", "--engine", "docker", "--pipeline", str(DEFINITION), "--rules", str(RULES)]
    assert main([*arguments, "--input", str(REPO / "samples"), "--output", str(out)]) == 0
    (result,) = check_results(out / "series-selector/selections", out / "inference/results")
    assert result["selection"] == "CT abdomen axial"
    # Its requests reached the engine: a GPU asked for (none here), 8 GB of memory.
    assert "requests 1 GPU(s); this Docker engine has no GPU runtime" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.docker
def test_a_model_after_the_selector_runs_under_compose_up(
    stand_in_image: str,
    compose_project: tuple[list[str], dict[str, str]],
    output_folder: Path,
    tmp_path: Path,
) -> None:
    command, environment = compose_project
    results = image_writable(tmp_path / "results")
    environment["RESULTS"] = str(results)
    environment["RULES_BASE64"] = base64.b64encode(RULES.read_bytes()).decode()
    project = ([*command, "--file", str(STAND_IN / "compose.yaml")], environment)
    try:
        up = ["up", "--abort-on-container-exit", "--exit-code-from", "inference", "inference"]
        result = compose_call(project, *up)
        assert result.returncode == 0, result.stdout + result.stderr
        (chosen,) = check_results(output_folder, results)
        assert chosen["selection"] == "CT abdomen axial"
    finally:
        compose_call(project, "down", "--volumes")
