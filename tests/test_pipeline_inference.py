"""The chain the pipeline exists for: parser, selector, then a model that reads the chosen
volumes. The model is a stand-in (``stand_in_inference/``) in a definition written as Clara
users wrote them, with ``requests`` and ``parameters``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel
import numpy as np
import pytest

from series_selection.pipeline.cli import main

REPO = Path(__file__).resolve().parents[1]
STAND_IN = Path(__file__).resolve().parent / "stand_in_inference"
DEFINITION = STAND_IN / "pipeline.yaml"
RULES = REPO / "rules/ct-abdomen-axial.yaml"


def check_results(run: Path) -> list[dict[str, Any]]:
    """The model read every chosen volume, and what it read is what the selector handed over."""
    selections = run / "series-selector/selections"
    selected = json.loads((selections / "selected-images.json").read_text())
    results = json.loads((run / "inference/results/results.json").read_text())["results"]
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
    (result,) = check_results(out)
    assert result["selection"] == "CT abdomen axial"
    summary = json.loads((out / "pipeline-run.json").read_text())
    assert [o["name"] for o in summary["operators"]] == [
        "dicom-parser",
        "series-selector",
        "inference",
    ]
