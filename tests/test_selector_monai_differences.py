"""One test per row of the README's table "MONAI Deploy rules work unchanged": what MONAI Deploy
does, and what is done here instead.

MONAI's side is shown by ``monai_matches``, a small independent re-statement of the matching in
MONAI Deploy's ``DICOMSeriesSelectorOperator._select_series``, written from its source
(monai-deploy-app-sdk, ``monai/deploy/operators/dicom_series_selector_operator.py``, the version
with range and regular-expression matching of numbers and ``sort_by_sop_instance_count``). It is
not MONAI's code and not a dependency: it restates that logic to compare against.
"""

from __future__ import annotations

import json
import numbers
import re
from pathlib import Path
from typing import Any

import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from selector_support import (
    AXIAL_IOP,
    SeriesFixture,
    judge,
    rules_json,
    write_parser_output,
)
from series_selection.parser.dicom_json import lift_functional_groups
from series_selection.selector.cli import main as select
from series_selection.selector.rules import parse_rules


def monai_matches(value_to_match: Any, attr_value: Any) -> bool:
    """Whether one MONAI Deploy condition holds (restated from ``_select_series``).

    A falsy expected value skips the condition; a falsy attribute value fails it. A number
    attribute: a two-item list is a range, text a ``re.fullmatch`` on ``str(value)``, anything
    else ``==``. A text attribute: equal ignoring case, else ``re.search`` ignoring case. A list
    attribute (multi-valued): each expected item (or the one expected value) must be a substring
    of ``str(list).lower()``."""
    if not value_to_match:
        return True  # "Ignore None": the condition is skipped
    if not attr_value:
        return False
    if isinstance(attr_value, float | int):
        if isinstance(value_to_match, list) and len(value_to_match) == 2:
            low, high = map(float, value_to_match)
            return low <= attr_value <= high
        if isinstance(value_to_match, str):
            return bool(re.fullmatch(value_to_match, str(attr_value)))
        return bool(value_to_match == attr_value)
    if isinstance(attr_value, str):
        if attr_value.casefold() == value_to_match.casefold():
            return True
        return bool(re.search(value_to_match, attr_value, re.IGNORECASE))
    if isinstance(attr_value, list):
        text = str(attr_value).lower()
        if isinstance(value_to_match, list):
            return all(str(v).lower() in text for v in value_to_match)
        if isinstance(value_to_match, str | numbers.Number):
            return str(value_to_match).lower() in text
    raise NotImplementedError(type(value_to_match))


def passes(keyword: str, expected: Any, value: Any) -> bool:
    return judge({keyword: expected}, SeriesFixture(series={keyword: value})).passed


def test_row_a_falsy_condition_value_is_a_real_value() -> None:
    assert monai_matches(0, 5.0)  # skipped, so it holds
    assert not passes("TableHeight", 0, 5.0)
    assert passes("TableHeight", 0, 0.0)
    assert passes("SeriesDescription", "", "anything")  # "" is a pattern matching any value
    with pytest.raises(Exception, match="is not valid"):
        parse_rules(rules_json({"conditions": {"ImageType": []}}), "rules.json")


def test_row_a_falsy_attribute_value_is_a_value() -> None:
    assert not monai_matches([-1, 1], 0.0)  # "if not attr_value: matched = False"
    assert passes("TableHeight", [-1, 1], 0.0)
    assert passes("TableHeight", 0, 0.0)


def test_row_lists_match_whole_values_not_substrings() -> None:
    image_type = ["ORIGINAL", "PRIMARY", "NON_AXIAL"]
    assert monai_matches(["AXIAL"], image_type)
    assert monai_matches(["ORIG"], image_type)
    assert not passes("ImageType", ["AXIAL"], image_type)
    assert not passes("ImageType", ["ORIG"], image_type)
    assert passes("ImageType", ["original", "!LOCALIZER"], image_type)


def test_row_orientation_from_the_direction_cosines_alone() -> None:
    """MONAI needs PatientPosition for the plane (not restated here); the cosines suffice."""
    fixture = SeriesFixture(series={"ImageOrientationPatient": AXIAL_IOP})
    assert judge({"ImageOrientationPatient": "Axial"}, fixture).passed
    tilted = [1.0, 0.0, 0.0, 0.0, 0.8, -0.6]  # 37 degrees from axial
    oblique = SeriesFixture(series={"ImageOrientationPatient": tilted})
    assert judge({"ImageOrientationPatient": "Oblique"}, oblique).passed


def test_row_instance_attributes_hold_for_every_instance() -> None:
    instances = [
        {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"]},
        {"ImageType": ["ORIGINAL", "PRIMARY", "LOCALIZER"]},
    ]
    # MONAI reads the first instance's element; a multi-valued one as [repval] (its text)
    first = [repr(instances[0]["ImageType"])]
    assert monai_matches(["AXIAL"], first)
    fixture = SeriesFixture(series={}, instances=instances)
    assert not judge({"ImageType": ["AXIAL"]}, fixture).passed
    assert judge({"ImageType": ["ORIGINAL", "PRIMARY"]}, fixture).passed


def test_row_order_is_deterministic_and_a_selection_works_within_a_study(tmp_path: Path) -> None:
    """MONAI takes the first match in loading order; here the order never depends on it."""
    fixtures = [
        SeriesFixture(series={"Modality": "CT", "SeriesNumber": n, "SeriesDescription": f"s{n}"})
        for n in (3, 1, 2)
    ]
    chosen = []
    for order in (fixtures, fixtures[::-1]):
        folder = tmp_path / f"in{len(chosen)}"
        write_parser_output(folder, order)
        rules = tmp_path / "rules.json"
        rules.write_text(rules_json({"conditions": {"Modality": "CT"}}))
        out = tmp_path / f"out{len(chosen)}"
        assert select(["--input", str(folder), "--output", str(out), "--rules", str(rules)]) == 0
        document = json.loads((out / "selected-images.json").read_text())
        chosen.append([s["SeriesDescription"] for s in document["selections"][0]["series"]])
    assert chosen == [["s1"], ["s1"]]


def test_row_a_selection_without_conditions_matches_every_series() -> None:
    """MONAI skips a selection whose conditions are empty; here ``{}`` matches every series."""
    assert judge({}, SeriesFixture(series={"Modality": "SR"})).passed
    with pytest.raises(Exception, match="'conditions' is a required property"):
        parse_rules(rules_json({"name": "x"}), "rules.json")


def test_row_regular_expressions_python_syntax_kept() -> None:
    """MONAI uses Python's ``re``; RE2 runs what it accepts, the rest runs time-limited."""
    for pattern, value in [
        ("(?i)^(?!.*(cor|sag)).*$", "Ax 5mm"),
        ("(?i)^(?!.*(cor|sag)).*$", "Cor 3mm"),
        (r"^(\w+) \1$", "T1 T1"),
        ("t1|mprage", "SAG MPRAGE"),
    ]:
        assert passes("SeriesDescription", pattern, value) == monai_matches(pattern, value)


def test_row_blank_rules_choose_every_image_series() -> None:
    """MONAI: blank rules text selects every series. Here: every image series, said in the log
    (tests/test_selector_cli.py runs it)."""
    rules = parse_rules("\n  \n# nothing yet\n", "rules.yaml")
    assert rules.blank
    (selection,) = rules.selections
    assert selection.all_matched and not selection.conditions.children


def test_row_text_reading_as_a_number_is_compared_as_a_number() -> None:
    assert not monai_matches("3", 3.0)  # re.fullmatch("3", "3.0")
    assert passes("SliceThickness", "3", 3.0)
    assert passes("SliceThickness", "3", "3.000")
    assert not passes("SeriesNumber", "1", 10)  # a pattern must match the whole number
    assert passes("SeriesNumber", "1[0-9]", 10)


def test_row_a_number_against_a_multi_valued_attribute_compares_every_value() -> None:
    assert monai_matches(7, [0.7, 0.7])  # "7" is found in "[0.7, 0.7]"
    assert not passes("PixelSpacing", 7, [0.7, 0.7])
    assert passes("PixelSpacing", 0.7, [0.7, 0.7])
    assert not passes("PixelSpacing", 0.7, [0.7, 0.8])


def test_row_instance_count_counts_instances_slices_come_from_the_volume(tmp_path: Path) -> None:
    """MONAI's ``sort_by_sop_instance_count`` sorts by ``len(series.get_sop_instances())``:
    every instance, so a 4D series counts each position once per phase. ``instance_count`` does
    the same; the default order's "most slices" is the volume's third dimension."""
    four_d = SeriesFixture(
        series={"Modality": "MR", "SeriesNumber": 1, "SeriesDescription": "4D"},
        instances=[{"InstanceNumber": n} for n in range(1, 5)],  # 2 positions x 2 phases
        shape=(4, 3, 2),
    )
    volume = SeriesFixture(
        series={"Modality": "MR", "SeriesNumber": 2, "SeriesDescription": "3D"},
        instances=[{"InstanceNumber": n} for n in range(1, 4)],
        shape=(4, 3, 3),
    )
    folder = tmp_path / "in"
    write_parser_output(folder, [four_d, volume])
    picks = {}
    for name, order in {"by instances": ["instance_count descending"], "default": []}.items():
        rules = tmp_path / f"{name}.json"
        selection: dict[str, Any] = {"conditions": {"Modality": "MR"}}
        if order:
            selection["order_by"] = order
        rules.write_text(rules_json(selection))
        out = tmp_path / name
        assert select(["--input", str(folder), "--output", str(out), "--rules", str(rules)]) == 0
        series = json.loads((out / "selected-images.json").read_text())["selections"][0]["series"]
        picks[name] = [(s["SeriesDescription"], s["instance_count"]) for s in series]
    assert picks == {"by instances": [("4D", 4)], "default": [("3D", 3)]}


def test_row_enhanced_multi_frame_values_are_read_from_the_functional_groups() -> None:
    """MONAI reads an instance's top-level attributes only; the parser lifts the shared
    functional groups' values (PixelMeasures, PlaneOrientation, ...) to the top."""
    enhanced = Dataset()
    enhanced.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"  # Enhanced MR Image Storage
    measures = Dataset()
    measures.SliceThickness = 1.5
    measures.PixelSpacing = [0.5, 0.5]
    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence([measures])
    enhanced.SharedFunctionalGroupsSequence = DicomSequence([shared])
    assert not monai_matches([1, 2], enhanced.get("SliceThickness"))  # not at the top level
    lift_functional_groups(enhanced)
    lifted = {"SliceThickness": enhanced.SliceThickness, "PixelSpacing": enhanced.PixelSpacing}
    assert judge({"SliceThickness": [1, 2]}, SeriesFixture(series={}, instances=[lifted])).passed
