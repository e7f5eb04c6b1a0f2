"""End to end: dicom-parser on real DICOM files, then series-selector with every shipped rules file.

The committed sample studies (``samples/``), studies generated here, and, where present, real
scanner data (``../shared/data``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from series_selection.common.jsonio import schema_errors
from series_selection.parser.cli import main as parse
from series_selection.selector.cli import main as select
from series_selection_tools.samples.synthetic import StudySpec, ct_series, write_series

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "samples"
RULES = REPO / "rules"

EXPECTED = {
    "ct-abdomen-axial.yaml": {"CT abdomen axial": ["Portal venous 1.25mm"]},
    "mr-brain-t1.yaml": {"T1 MR brain": ["T1 SAG MPRAGE"]},
    "largest-ct.yaml": {"largest CT series": ["Portal venous 1.25mm"]},
    # A MONAI Deploy rule without an order: the default order passes over the scout.
    "monai-spleen-ct.json": {"CT Series": ["Portal venous 1.25mm"]},
    "default.yaml": {
        "all image series": [
            "Portal venous 1.25mm",
            "Portal venous 5mm",
            "Scout",
            "T1 SAG MPRAGE",
            "AX DUAL ECHO",
        ]
    },
}


@pytest.fixture(scope="module", params=["nii.gz", "mhd"])
def parsed_samples(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    output = tmp_path_factory.mktemp("parsed") / request.param
    assert parse(["--input", str(SAMPLES), "--output", str(output), "--format", request.param]) == 0
    return output


def run_selector(parsed: Path, output: Path, rules: Path) -> dict[str, Any]:
    assert select(["--input", str(parsed), "--output", str(output), "--rules", str(rules)]) == 0
    document: dict[str, Any] = json.loads((output / "selected-images.json").read_text())
    assert schema_errors(document, "selected-images") == []
    return document


def chosen(document: dict[str, Any]) -> dict[str, list[str]]:
    return {
        s["name"]: [series["SeriesDescription"] for series in s["series"]]
        for s in document["selections"]
    }


def test_every_shipped_rules_file_has_an_expectation() -> None:
    assert sorted(p.name for p in RULES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("rules", sorted(EXPECTED))
def test_shipped_rules_on_the_sample_studies(
    parsed_samples: Path, tmp_path: Path, rules: str
) -> None:
    document = run_selector(parsed_samples, tmp_path / "out", RULES / rules)
    assert chosen(document) == EXPECTED[rules]
    for selection in document["selections"]:
        for series in selection["series"]:
            for image in series["images"]:
                path = tmp_path / "out" / image["path"]
                if image["format"] == "mhd":
                    volume = sitk.ReadImage(str(path))
                    shape, spacing = list(volume.GetSize()), list(volume.GetSpacing())
                else:
                    nifti = nib.load(path)
                    shape, spacing = list(nifti.shape), list(nifti.header.get_zooms())
                assert shape == image["shape"]
                assert np.allclose(spacing, image["spacing"], atol=1e-4)


def test_the_dual_echo_series_brings_both_echoes(parsed_samples: Path, tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("selections:\n  - name: echoes\n    conditions: {EchoTime: [10, 100]}\n")
    (series,) = run_selector(parsed_samples, tmp_path / "out", rules)["selections"][0]["series"]
    assert series["SeriesDescription"] == "AX DUAL ECHO"
    assert len(series["images"]) == 2
    assert len({image["label"] for image in series["images"]}) == 2


def test_sample_explain_shows_why_the_scout_is_refused(
    parsed_samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = select(
        [
            "--input",
            str(parsed_samples),
            "--output",
            str(out),
            "--rules",
            str(RULES / "ct-abdomen-axial.yaml"),
            "--explain",
        ]
    )
    assert code == 0
    table = capsys.readouterr().out
    assert "lacks AXIAL" in table
    assert "ImageOrientationPatient: 'Axial': Axial/Coronal/Sagittal: slice normal" in table
    explained = json.loads((out / "selection-explain.json").read_text())
    assert schema_errors(explained, "selection-explain") == []
    (scout,) = [i for i, s in enumerate(explained["series"]) if s["SeriesDescription"] == "Scout"]
    assert explained["series"][scout]["values"]["ImageType"] == ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    (group,) = [g for g in explained["selections"][0]["failed"] if scout in g["series"]]
    reasons = {f["path"].rsplit(".", 1)[-1]: f["why"] for f in group["conditions"]}
    assert reasons["ImageType"] == "lacks AXIAL"
    assert reasons["ImageOrientationPatient"].startswith("Axial/Coronal/Sagittal")


def test_generated_study_axial_versus_oblique(tmp_path: Path) -> None:
    """Orientation comes from the direction cosines the generator wrote, tilted 0 and 35 degrees."""
    study = StudySpec(study_description="CT CHEST", study_uid="1.2.826.0.1.3680043.8.498.1")
    tilt = math.radians(35)
    for number, (column, description) in enumerate(
        [((0.0, 1.0, 0.0), "straight"), ((0.0, math.cos(tilt), math.sin(tilt)), "tilted")], start=1
    ):
        spec = ct_series(
            study=study,
            rows=16,
            columns=16,
            slices=4 + number,
            column_cosine=column,
            series_number=number,
            series_description=description,
        )
        write_series(tmp_path / "dicom" / description, spec, seed=number)
    assert parse(["--input", str(tmp_path / "dicom"), "--output", str(tmp_path / "parsed")]) == 0
    rules = tmp_path / "rules.json"
    rules.write_text(
        json.dumps(
            {
                "selections": [
                    {"name": "axial", "conditions": {"ImageOrientationPatient": "Axial"}},
                    {"name": "oblique", "conditions": {"ImageOrientationPatient": "oblique"}},
                    {"name": "bigger", "conditions": {}, "order_by": ["instance_count descending"]},
                ]
            }
        )
    )
    document = run_selector(tmp_path / "parsed", tmp_path / "out", rules)
    assert chosen(document) == {"axial": ["straight"], "oblique": ["tilted"], "bigger": ["tilted"]}


@pytest.mark.shared_data
def test_real_ct_study_largest_series_skips_localizer_and_screens(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "dcm_qa_ct" / "In" / "Philips"
    assert parse(["--input", str(source), "--output", str(tmp_path / "parsed")]) == 0
    document = run_selector(tmp_path / "parsed", tmp_path / "out", RULES / "largest-ct.yaml")
    ((series,),) = [s["series"] for s in document["selections"]]
    assert (series["SeriesNumber"], series["instance_count"]) == (201, 54)
    (image,) = series["images"]
    assert nib.load(tmp_path / "out" / image["path"]).shape == tuple(image["shape"])


@pytest.mark.shared_data
def test_real_ct_study_fails_a_required_abdomen_rule(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "dcm_qa_ct" / "In" / "Philips"
    assert parse(["--input", str(source), "--output", str(tmp_path / "parsed")]) == 0
    rules = str(RULES / "ct-abdomen-axial.yaml")
    code = select(
        ["--input", str(tmp_path / "parsed"), "--output", str(tmp_path / "out"), "--rules", rules]
    )
    assert code == 4  # a head CT: the abdomen model must not run


@pytest.mark.shared_data
def test_real_ct_without_order_by_the_default_order_passes_over_the_localizer(
    shared_data: Path, tmp_path: Path
) -> None:
    """GE and Philips CT: the Philips study's localizer (series 100) comes first by
    SeriesNumber; a rule without order_by must still choose its head volume (201)."""
    source = shared_data / "dcm_qa_ct" / "In"
    assert parse(["--input", str(source), "--output", str(tmp_path / "parsed")]) == 0
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"selections": [{"name": "CT", "conditions": {"Modality": "CT"}}]}))
    document = run_selector(tmp_path / "parsed", tmp_path / "out", rules)
    ((ge, philips),) = [s["series"] for s in document["selections"]]
    assert (ge["SeriesNumber"], philips["SeriesNumber"]) == (2, 201)
    explain = json.loads((tmp_path / "out" / "selection-explain.json").read_text())
    ((note,),) = [s["decided_by_default"] for s in explain["selections"]]
    assert explain["series"][note["chosen"]]["SeriesNumber"] == 201
    assert note["matched"] >= 2
