"""Every selection rule set MONAI Deploy ships in its example apps (``tests/monai_rules/``, see
the README there) loads and runs unchanged: on the sample studies and, where present, on the
real scanner data of ``../shared/data``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from reliability_support import time_limit
from series_selection.common.jsonio import schema_errors
from series_selection.parser.cli import main as parse
from series_selection.selector.cli import main as select
from series_selection.selector.rules import BoundedPattern, parse_rules

HERE = Path(__file__).resolve().parent
MONAI_RULES = sorted((HERE / "monai_rules").glob("*.json"))
SAMPLES = HERE.parent / "samples"
SHARED_INPUTS = ("dcm_qa_ct/In", "dcm_qa_enh/In")

# What each rule set chooses on the sample studies (a CT study: a three-plane scout, a portal
# venous series of 1.25 mm and one of 5 mm; an MR study: a T1 sagittal, a dual echo, a report).
ON_SAMPLES = {
    "any-ct-series.json": ["Portal venous 1.25mm"],
    "axial-ct-3-5mm.json": ["Portal venous 5mm"],
    "blank.json": [
        "Portal venous 1.25mm",
        "Portal venous 5mm",
        "Scout",
        "T1 SAG MPRAGE",
        "AX DUAL ECHO",
    ],
    "ct-modality.json": ["Portal venous 1.25mm"],
    "ct-primary-original-monochrome2.json": ["Portal venous 1.25mm"],
    "ct-primary-original.json": ["Portal venous 1.25mm"],
    "ct-series.json": ["Portal venous 1.25mm"],
    "mg-primary.json": [],
    "sdk-operator-sample.json": [],
    "standard-axial-ct-no-lung.json": ["Portal venous 5mm"],
    "standard-axial-ct.json": ["Portal venous 5mm"],
}


def names(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


def test_every_fixture_is_accounted_for() -> None:
    readme = (HERE / "monai_rules" / "README.md").read_text()
    assert set(names(MONAI_RULES)) == set(ON_SAMPLES)
    for name in ON_SAMPLES:
        assert f"`{name}`" in readme


@pytest.mark.parametrize("rules", MONAI_RULES, ids=names(MONAI_RULES))
def test_monai_rules_load_unchanged(rules: Path) -> None:
    loaded = parse_rules(rules.read_text(), rules.name)
    assert loaded.blank == (rules.name == "blank.json")
    assert select(["--check", str(rules)]) == 0


def test_the_look_ahead_rules_run_on_the_time_limited_engine() -> None:
    """The pediatric abdomen CT app's rules need Python syntax: exactly their
    SeriesDescription pattern runs on the bounded engine, every other pattern on RE2."""
    for rules in MONAI_RULES:
        loaded = parse_rules(rules.read_text(), rules.name)
        bounded = [
            leaf.keyword
            for selection in loaded.selections
            for leaf in selection.conditions.children
            if isinstance(getattr(leaf, "regex", None), BoundedPattern)
        ]
        expected = ["SeriesDescription"] if "axial-ct" in rules.name else []
        assert bounded == expected, rules.name


def run_all(parsed: Path, output: Path) -> dict[str, dict[str, list[str]]]:
    """Each rule set's choice on ``parsed``: selection name -> series descriptions."""
    chosen = {}
    for rules in MONAI_RULES:
        out = output / rules.stem
        arguments = ["--input", str(parsed), "--output", str(out), "--rules", str(rules)]
        with time_limit(60):
            assert select(arguments) == 0
        document: dict[str, Any] = json.loads((out / "selected-images.json").read_text())
        assert schema_errors(document, "selected-images") == []
        chosen[rules.name] = {
            s["name"]: [series["SeriesDescription"] for series in s["series"]]
            for s in document["selections"]
        }
    return chosen


def test_monai_rules_on_the_sample_studies(tmp_path: Path) -> None:
    parsed = tmp_path / "parsed"
    assert parse(["--input", str(SAMPLES), "--output", str(parsed)]) == 0
    chosen = run_all(parsed, tmp_path)
    for name, expected in ON_SAMPLES.items():
        descriptions = [d for series in chosen[name].values() for d in series]
        assert descriptions == expected, name


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", SHARED_INPUTS)
def test_monai_rules_on_real_scanner_data(shared_data: Path, folder: str, tmp_path: Path) -> None:
    parsed = tmp_path / "parsed"
    assert parse(["--input", str(shared_data / folder), "--output", str(parsed)]) == 0
    chosen = run_all(parsed, tmp_path)
    assert set(chosen) == set(ON_SAMPLES)
    if folder == "dcm_qa_ct/In":
        assert chosen["ct-series.json"]["CT Series"], "a CT rule chose no CT series"


@pytest.mark.slow
@pytest.mark.shared_data
def test_monai_rules_on_all_of_the_real_scanner_data(shared_data: Path, tmp_path: Path) -> None:
    """All 44 cases at once (GE, Siemens, Philips, Hitachi; classic, enhanced, mosaic)."""
    parsed = tmp_path / "parsed"
    assert parse(["--input", str(shared_data), "--output", str(parsed)]) == 0
    chosen = run_all(parsed, tmp_path)
    assert chosen["blank.json"]["all image series"]
    assert chosen["any-ct-series.json"]["Any CT Series (full-corpus validation)"]
