"""How each kind of condition value matches, value kind by value kind, with what Explain reports."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selector_support import (
    AXIAL_IOP,
    CORONAL_IOP,
    SAGITTAL_IOP,
    SeriesFixture,
    judge,
    rules_json,
)
from series_selection.selector.matching import Facts, ValueCodes
from series_selection.selector.rules import parse_rules

CT = SeriesFixture(
    series={
        "Modality": "CT",
        "SeriesDescription": "Abdomen Portal Venous 1.0 B30f",
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "SliceThickness": 1.0,
        "PixelSpacing": [0.7, 0.7],
        "SeriesNumber": 10,
        "ImageOrientationPatient": AXIAL_IOP,
    },
    study={"StudyDescription": "CT ABDOMEN PELVIS", "PatientAge": "054Y"},
    instances=[{"InstanceNumber": n} for n in (1, 2, 3)],
)


def passes(conditions: dict[str, object], fixture: SeriesFixture = CT) -> bool:
    return judge(conditions, fixture).passed


# Text: equality ignoring case, else a case-insensitive regular expression search.


@pytest.mark.parametrize(
    ("expected", "outcome"),
    [
        ("CT", True),
        ("ct", True),
        ("MR", False),
        ("C", True),  # a regular expression found anywhere, like MONAI Deploy
        ("^C$", False),
        ("(?i)^ct$", True),
    ],
)
def test_text_is_equality_else_regex_search(expected: str, outcome: bool) -> None:
    assert passes({"Modality": expected}) is outcome


def test_text_regex_is_case_insensitive_and_searches_anywhere() -> None:
    assert passes({"SeriesDescription": r"portal\s+venous"})
    assert passes({"SeriesDescription": "b30f$"})
    assert not passes({"SeriesDescription": "^portal"})


def test_text_explains_the_value_seen() -> None:
    result = judge({"Modality": "MR"}, CT).children[0]
    assert (result.passed, result.actual) == (False, "CT")
    assert "regular expression" in result.why
    assert result.path == "$.selections[0].conditions.Modality"


def test_text_against_a_number_compares_numerically_else_matches_the_whole_number() -> None:
    assert passes({"SeriesNumber": "10"})
    assert passes({"SeriesNumber": "10.0"})
    assert not passes({"SeriesNumber": "1"})  # whole number, not a substring of "10"
    assert passes({"SeriesNumber": "1[0-9]"})


def test_text_against_a_multi_valued_attribute_matches_any_value() -> None:
    assert passes({"ImageType": "primary"})
    assert not passes({"ImageType": "DERIVED"})


# Numbers: exact, [low, high] inclusive, [value, operator].


def test_number_is_exact() -> None:
    assert passes({"SliceThickness": 1})
    assert passes({"SliceThickness": 1.0})
    assert not passes({"SliceThickness": 1.5})


def test_zero_is_a_real_value_not_an_ignored_condition() -> None:
    zero = SeriesFixture(series={"Modality": "CT", "TableHeight": 0})
    assert passes({"TableHeight": 0}, zero)
    assert not passes({"TableHeight": 0}, SeriesFixture(series={"TableHeight": 150}))
    assert not passes({"TableHeight": 0}, SeriesFixture(series={"Modality": "CT"}))


@pytest.mark.parametrize(
    ("bounds", "outcome"),
    [([1.0, 3.0], True), ([0.5, 1.0], True), ([1.0, 1.0], True), ([1.1, 3], False)],
)
def test_range_is_inclusive(bounds: list[float], outcome: bool) -> None:
    assert passes({"SliceThickness": bounds}) is outcome


@pytest.mark.parametrize(
    ("relation", "bound", "outcome"),
    [
        (">", 0.5, True),
        (">", 1.0, False),
        (">=", 1.0, True),
        ("<", 1.0, False),
        ("<=", 1.0, True),
        ("!=", 1.0, False),
        ("!=", 2.0, True),
        ("==", 1.0, True),
    ],
)
def test_comparison(relation: str, bound: float, outcome: bool) -> None:
    assert passes({"SliceThickness": [bound, relation]}) is outcome


def test_numbers_hold_for_every_value_of_a_multi_valued_attribute() -> None:
    assert passes({"PixelSpacing": [0.5, 0.8]})
    assert passes({"PixelSpacing": 0.7})
    uneven = SeriesFixture(series={"PixelSpacing": [0.7, 3.0]})
    assert not passes({"PixelSpacing": [0.5, 0.8]}, uneven)


def test_number_against_text_that_is_no_number_fails_and_says_so() -> None:
    result = judge({"Modality": [1, 2]}, CT).children[0]
    assert not result.passed
    assert "'CT' is not a number" in result.why


def test_comparison_explains_what_was_wanted() -> None:
    result = judge({"SliceThickness": [2, ">="]}, CT).children[0]
    assert (result.passed, result.actual, result.why) == (False, 1.0, "1 is not >= 2")


@given(
    value=st.floats(-1e6, 1e6, allow_nan=False),
    low=st.floats(-1e6, 1e6, allow_nan=False),
    width=st.floats(0, 1e6, allow_nan=False),
)
def test_range_agrees_with_arithmetic(value: float, low: float, width: float) -> None:
    high = low + width
    fixture = SeriesFixture(series={"SliceLocation": value})
    assert passes({"SliceLocation": [low, high]}, fixture) is (low <= value <= high)


# Lists of values: each must be present (whole values, any case); "!VALUE" must be absent.


def test_list_requires_every_value() -> None:
    assert passes({"ImageType": ["ORIGINAL", "PRIMARY"]})
    assert passes({"ImageType": ["axial", "original"]})
    assert not passes({"ImageType": ["ORIGINAL", "DERIVED"]})


def test_list_matches_whole_values_not_substrings() -> None:
    assert not passes({"ImageType": ["ORIG"]})
    assert not passes({"ImageType": ["PRIMARY\\AXIAL"]})


def test_list_exclusions() -> None:
    assert passes({"ImageType": ["ORIGINAL", "!LOCALIZER"]})
    assert not passes({"ImageType": ["!AXIAL"]})
    result = judge({"ImageType": ["ORIGINAL", "!axial"]}, CT).children[0]
    assert result.why == "has excluded AXIAL"
    assert result.actual == ["ORIGINAL", "PRIMARY", "AXIAL"]


def test_a_single_exclusion_works_on_any_attribute_as_in_monai_deploy() -> None:
    assert passes({"ImageType": "!LOCALIZER"})
    assert not passes({"ImageType": "!primary"})
    assert passes({"Modality": "!MR"})
    assert not passes({"Modality": "!CT"})
    assert passes({"Modality": "!C"})  # whole values: CT is not C


def test_list_names_what_is_lacking() -> None:
    result = judge({"ImageType": ["DERIVED", "SECONDARY", "ORIGINAL"]}, CT).children[0]
    assert result.why == "lacks DERIVED, SECONDARY"


# Orientation: from the ImageOrientationPatient direction cosines, never PatientPosition.


@pytest.mark.parametrize(
    ("iop", "plane"),
    [(AXIAL_IOP, "Axial"), (CORONAL_IOP, "Coronal"), (SAGITTAL_IOP, "Sagittal")],
)
def test_orientation_from_direction_cosines(iop: list[float], plane: str) -> None:
    fixture = SeriesFixture(series={"ImageOrientationPatient": iop})  # no PatientPosition
    for name in ("Axial", "Coronal", "Sagittal", "Oblique"):
        assert passes({"ImageOrientationPatient": name}, fixture) is (name == plane)
    assert passes({"ImageOrientationPatient": plane.upper()}, fixture)


def tilted(degrees: float) -> list[float]:
    """Axial slices tilted by ``degrees`` about the left-right axis."""
    angle = math.radians(degrees)
    return [1.0, 0.0, 0.0, 0.0, math.cos(angle), -math.sin(angle)]


@pytest.mark.parametrize(("degrees", "plane"), [(0, "Axial"), (29, "Axial"), (31, "Oblique")])
def test_orientation_tolerates_tilt_up_to_30_degrees(degrees: float, plane: str) -> None:
    fixture = SeriesFixture(series={"ImageOrientationPatient": tilted(degrees)})
    result = judge({"ImageOrientationPatient": plane}, fixture).children[0]
    assert result.passed
    assert result.actual == plane
    assert f"{degrees:.1f} deg" in result.why


def test_orientation_falls_back_to_the_volume_when_cosines_are_absent() -> None:
    fixture = SeriesFixture(series={"Modality": "MR"}, orientation="SAGITTAL")
    result = judge({"ImageOrientationPatient": "Sagittal"}, fixture).children[0]
    assert result.passed
    assert "volume" in result.why
    assert not passes({"ImageOrientationPatient": "Axial"}, fixture)
    no_volume = SeriesFixture(series={"Modality": "MR"}, volumes=0)
    assert not passes({"ImageOrientationPatient": "Sagittal"}, no_volume)


def test_orientation_must_hold_for_every_instance() -> None:
    localizer = SeriesFixture(
        series={"Modality": "CT"},
        instances=[{"ImageOrientationPatient": iop} for iop in (AXIAL_IOP, CORONAL_IOP)],
    )
    result = judge({"ImageOrientationPatient": "Axial"}, localizer).children[0]
    assert not result.passed
    assert result.actual == {"per_instance": ["Axial", "Coronal"]}


def test_orientation_of_degenerate_cosines_fails_with_the_value() -> None:
    fixture = SeriesFixture(series={"ImageOrientationPatient": [1, 0, 0, 1, 0, 0]})
    result = judge({"ImageOrientationPatient": "Axial"}, fixture).children[0]
    assert not result.passed
    assert "non-parallel" in result.why


# Missing attributes.


def test_null_requires_the_attribute_to_be_missing_or_empty() -> None:
    assert passes({"ContrastBolusAgent": None})
    assert not passes({"Modality": None})
    empty = SeriesFixture(series={"ContrastBolusAgent": ""})
    assert passes({"ContrastBolusAgent": None}, empty)


@pytest.mark.parametrize(
    "expected", ["anything", ".*", 0, [0, 10], [1, ">"], ["X"], ["!X"], "Axial"]
)
def test_every_other_condition_fails_on_a_missing_attribute(expected: object) -> None:
    keyword = "ImageOrientationPatient" if expected == "Axial" else "BodyPartExamined"
    fixture = SeriesFixture(series={"Modality": "CT"}, volumes=0)
    result = judge({keyword: expected}, fixture).children[0]
    assert (result.passed, result.actual, result.why) == (False, None, "attribute is missing")


# Where attributes are looked up: series, then study, then every instance.


def test_study_attributes_are_found() -> None:
    assert passes({"StudyDescription": "abdomen", "PatientAge": "054Y"})


def test_series_level_wins_over_study_level() -> None:
    fixture = SeriesFixture(
        series={"BodyPartExamined": "CHEST"}, study={"BodyPartExamined": "ABDOMEN"}
    )
    assert passes({"BodyPartExamined": "CHEST"}, fixture)
    assert not passes({"BodyPartExamined": "ABDOMEN"}, fixture)


def test_instance_attributes_must_match_on_every_instance() -> None:
    assert passes({"InstanceNumber": [1, 3]})
    assert not passes({"InstanceNumber": [1, 2]})
    result = judge({"InstanceNumber": [1, 2]}, CT).children[0]
    assert result.actual == {"per_instance": [1, 2, 3]}
    assert result.why == "an instance fails: 3 is not in [1, 2]"


def test_an_attribute_only_some_instances_have_counts_as_missing_on_the_others() -> None:
    partly = SeriesFixture(
        series={"Modality": "CT"}, instances=[{"ContrastBolusAgent": "IODINE"}, {}]
    )
    assert not passes({"ContrastBolusAgent": "iodine"}, partly)
    assert not passes({"ContrastBolusAgent": None}, partly)


def test_person_names_match_their_alphabetic_form() -> None:
    fixture = SeriesFixture(series={"PerformingPhysicianName": "Doe^Jane"})
    assert passes({"PerformingPhysicianName": "doe\\^jane"}, fixture)


# any / all / not.


def test_any_passes_when_one_alternative_passes() -> None:
    conditions = {"any": [{"Modality": "MR"}, {"SliceThickness": [0, 2]}]}
    result = judge(conditions, CT).children[0]
    assert result.passed
    assert result.why == "alternative 2 passes"
    assert [child.passed for child in result.children] == [False, True]
    assert not passes({"any": [{"Modality": "MR"}, {"Modality": "PT"}]})


def test_not_inverts_a_group() -> None:
    assert passes({"not": {"ImageType": ["LOCALIZER"]}})
    assert not passes({"not": {"Modality": "CT", "SliceThickness": 1}})
    assert passes({"not": {"Modality": "CT", "SliceThickness": 5}})


def test_not_passes_for_a_missing_attribute() -> None:
    assert passes({"not": {"ContrastBolusAgent": "iodine"}})


def test_nested_combinations() -> None:
    conditions = {
        "Modality": "CT",
        "all": [
            {"any": [{"SeriesDescription": "venous"}, {"SeriesDescription": "arterial"}]},
            {"not": {"any": [{"ImageType": ["DERIVED"]}, {"ImageType": ["LOCALIZER"]}]}},
        ],
    }
    assert passes(conditions)
    conditions["Modality"] = "MR"
    result = judge(conditions, CT)
    assert not result.passed
    assert result.why == "1 of 2 conditions fail"


def test_empty_conditions_match_every_series() -> None:
    assert passes({})


def test_orientation_missing_on_some_instances_fails() -> None:
    partly = SeriesFixture(
        series={"Modality": "CT"}, instances=[{"ImageOrientationPatient": AXIAL_IOP}, {}]
    )
    result = judge({"ImageOrientationPatient": "Axial"}, partly).children[0]
    assert (result.passed, result.why) == (False, "missing on some instances")


# Many series at once: keeping the series on which conditions hold, value code by value code,
# gives exactly the series on which they hold one by one.

LEAVES = st.one_of(
    st.builds(lambda v: {"Modality": v}, st.sampled_from(["CT", "MR", "(?i)^m", "PT|CT"])),
    st.builds(lambda r: {"SeriesNumber": r}, st.sampled_from([[1, 3], [2, ">="], 2, [5, "<"]])),
    st.builds(lambda v: {"ImageType": v}, st.sampled_from([["PRIMARY"], ["!LOCALIZER"]])),
    st.builds(lambda v: {"ImageOrientationPatient": v}, st.sampled_from(["Axial", "Coronal"])),
    st.just({"ContrastBolusAgent": None}),
)
CONDITIONS = st.recursive(
    st.lists(LEAVES, min_size=1, max_size=3).map(
        lambda leaves: {k: v for d in leaves for k, v in d.items()}
    ),
    lambda inner: st.one_of(
        st.builds(lambda items: {"any": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda items: {"all": items}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda nested: {"not": nested}, inner),
    ),
    max_leaves=6,
)
VALUE_TUPLES = {
    "Modality": st.sampled_from([("CT",), ("MR",), ("PT",), ()]),
    "SeriesNumber": st.sampled_from([(1,), (2,), (4,), ("3",), ()]),
    "ImageType": st.sampled_from([("ORIGINAL", "PRIMARY"), ("DERIVED", "LOCALIZER"), ()]),
    "ImageOrientationPatient": st.sampled_from([tuple(AXIAL_IOP), tuple(CORONAL_IOP), (), ()]),
    "ContrastBolusAgent": st.sampled_from([("Omnipaque",), ()]),
}
FACTS = st.builds(
    Facts,
    st.fixed_dictionaries(
        {
            k: st.lists(v, min_size=1, max_size=2, unique=True).map(tuple)
            for k, v in VALUE_TUPLES.items()
        }
    ),
    st.frozensets(st.sampled_from(["AXIAL", "CORONAL", "SAGITTAL"]), max_size=2),
)


@settings(max_examples=300)
@given(CONDITIONS, st.lists(FACTS, max_size=30), st.data())
def test_the_series_kept_are_the_series_on_which_the_conditions_hold(
    conditions: dict[str, Any], facts: list[Facts], data: st.DataObject
) -> None:
    rules = parse_rules(rules_json({"conditions": conditions}), "test")
    condition = rules.selections[0].conditions
    codes = ValueCodes(facts, sorted(rules.keywords))
    holding = [i for i, f in enumerate(facts) if condition.holds(f)]
    assert codes.passing(condition) == holding
    among = sorted(
        data.draw(st.sets(st.integers(0, max(len(facts) - 1, 0)))) & set(range(len(facts)))
    )
    assert codes.passing(condition, among) == [i for i in holding if i in among]


def test_series_without_orientation_are_kept_by_their_volumes_planes() -> None:
    """Series whose ImageOrientationPatient is equally missing differ by their volumes."""
    rules = parse_rules(rules_json({"conditions": {"ImageOrientationPatient": "Axial"}}), "t")
    condition = rules.selections[0].conditions
    missing = {"ImageOrientationPatient": ((),)}
    facts = [Facts(missing, frozenset({plane})) for plane in ("CORONAL", "AXIAL", "CORONAL")]
    assert ValueCodes(facts, sorted(rules.keywords)).passing(condition) == [1]
