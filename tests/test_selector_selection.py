"""Choosing among matches: order keys, all_matched, one series per study, required selections."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from selector_support import (
    SeriesFixture,
    build_study,
    rules_json,
    volume_entry,
    write_parser_output,
)
from series_selection.common.models import VolumeEntry
from series_selection.selector.cli import main
from series_selection.selector.inputs import Candidate, facts_of, read_parser_output
from series_selection.selector.rules import parse_rules
from series_selection.selector.selection import default_rank, select


def ct(number: int, thickness: float | None, instances: int, **more: Any) -> SeriesFixture:
    series = {"Modality": "CT", "SeriesNumber": number, "SeriesDescription": f"series {number}"}
    if thickness is not None:
        series["SliceThickness"] = thickness
    return SeriesFixture(
        series={**series, **more.pop("series", {})},
        instances=[{"InstanceNumber": n} for n in range(1, instances + 1)],
        **more,
    )


SERIES = [ct(4, 1.0, 3), ct(2, 5.0, 6), ct(7, 0.6, 2), ct(3, None, 9), ct(5, 1.0, 4)]


def chosen_numbers(
    folder: Path, selection: dict[str, Any], fixtures: list[SeriesFixture] = SERIES
) -> list[int]:
    """SeriesNumbers a selection chooses from a parser-output folder built of ``fixtures``."""
    if not (folder / "dicom-metadata.json").exists():
        write_parser_output(folder, fixtures)
    rules = parse_rules(rules_json({"name": "s", **selection}), "test")
    (outcome,) = select(rules, read_parser_output(folder, rules.keywords)).outcomes
    return [
        int(c.series.attributes["00200011"]["Value"][0])  # SeriesNumber
        for c in outcome.chosen
    ]


def test_equal_series_go_by_series_number(tmp_path: Path) -> None:
    assert chosen_numbers(tmp_path, {"conditions": {}}) == [2]
    assert chosen_numbers(tmp_path, {"conditions": {}, "all_matched": True}) == [2, 3, 4, 5, 7]


def test_largest_instance_count(tmp_path: Path) -> None:
    selection = {"conditions": {}, "order_by": ["instance_count descending"]}
    assert chosen_numbers(tmp_path, selection) == [3]


def test_thinnest_slices_then_series_number_with_missing_values_last(tmp_path: Path) -> None:
    selection = {"conditions": {}, "order_by": ["SliceThickness"], "all_matched": True}
    assert chosen_numbers(tmp_path, selection) == [7, 4, 5, 2, 3]
    selection["order_by"] = ["SliceThickness descending"]
    assert chosen_numbers(tmp_path, selection) == [2, 4, 5, 7, 3]


def test_later_keys_break_ties(tmp_path: Path) -> None:
    selection = {
        "conditions": {"SliceThickness": 1.0},
        "order_by": ["SliceThickness", "instance_count descending"],
        "all_matched": True,
    }
    assert chosen_numbers(tmp_path, selection) == [5, 4]
    selection["order_by"] = ["SeriesNumber descending"]
    assert chosen_numbers(tmp_path, selection) == [5, 4]


def test_voxel_count_and_slice_spacing_keys(tmp_path: Path) -> None:
    fixtures = [ct(1, 1.0, 1, shape=(8, 8, 2)), ct(2, 1.0, 1, shape=(4, 4, 3))]
    assert chosen_numbers(
        tmp_path, {"conditions": {}, "order_by": ["voxel_count descending"]}, fixtures
    ) == [1]
    assert chosen_numbers(tmp_path, {"conditions": {}, "order_by": ["voxel_count"]}, fixtures) == [
        2
    ]
    selection = {"conditions": {}, "order_by": ["slice_spacing"], "all_matched": True}
    assert chosen_numbers(tmp_path, selection, fixtures) == [2, 1]  # equal: most slices first


def test_order_does_not_depend_on_the_listing_order(tmp_path: Path) -> None:
    selection = {"conditions": {}, "order_by": ["SliceThickness"], "all_matched": True}
    expected = chosen_numbers(tmp_path / "a", selection)
    shuffled = SERIES[:]
    for seed in range(3):
        random.Random(seed).shuffle(shuffled)
        assert chosen_numbers(tmp_path / f"shuffled{seed}", selection, shuffled) == expected


def test_one_series_per_study_unless_all_matched(tmp_path: Path) -> None:
    fixtures = [
        ct(1, 1.0, 2, study={"StudyInstanceUID": "1.1", "StudyDate": "20240101"}),
        ct(2, 1.0, 5, study={"StudyInstanceUID": "1.1", "StudyDate": "20240101"}),
        ct(3, 1.0, 3, study={"StudyInstanceUID": "1.2", "StudyDate": "20230101"}),
    ]
    selection: dict[str, Any] = {"conditions": {}, "order_by": ["instance_count descending"]}
    assert chosen_numbers(tmp_path, selection, fixtures) == [2, 3]
    selection["all_matched"] = True
    assert chosen_numbers(tmp_path, selection, fixtures) == [2, 3, 1]


def test_series_without_a_volume_match_but_are_never_chosen(tmp_path: Path) -> None:
    fixtures = [ct(1, 1.0, 2, volumes=0), ct(2, 1.0, 1)]
    write_parser_output(tmp_path, fixtures)
    rules = parse_rules(rules_json({"conditions": {"Modality": "CT"}}), "test")
    (outcome,) = select(rules, read_parser_output(tmp_path, rules.keywords)).outcomes
    assert [c.series.uid for c in outcome.chosen] == [outcome.ranked[0].series.uid]
    verdicts = outcome.verdicts()
    assert [(v.matched, v.has_volume, v.rank, v.chosen) for v in verdicts] == [
        (True, True, 1, True),
        (True, False, None, False),
    ]


def test_selections_keep_rule_order_and_may_choose_the_same_series(tmp_path: Path) -> None:
    write_parser_output(tmp_path / "in", SERIES)
    rules = tmp_path / "rules.json"
    rules.write_text(
        rules_json(
            {
                "name": "thin",
                "conditions": {"SliceThickness": [0, 1]},
                "order_by": ["SliceThickness"],
            },
            {"name": "any CT", "conditions": {"Modality": "CT"}, "order_by": ["SliceThickness"]},
            {"name": "MR", "conditions": {"Modality": "MR"}},
        )
    )
    out = tmp_path / "out"
    assert main(["--input", str(tmp_path / "in"), "--output", str(out), "--rules", str(rules)]) == 0
    document = json.loads((out / "selected-images.json").read_text())
    assert [s["name"] for s in document["selections"]] == ["thin", "any CT", "MR"]
    assert [[x["SeriesNumber"] for x in s["series"]] for s in document["selections"]] == [
        [7],
        [7],
        [],
    ]


def test_a_required_selection_that_matches_nothing_fails_with_exit_code_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_parser_output(tmp_path / "in", SERIES)
    rules = tmp_path / "rules.json"
    rules.write_text(
        rules_json(
            {"name": "CT", "conditions": {"Modality": "CT"}, "required": True},
            {"name": "MR brain", "conditions": {"Modality": "MR"}, "required": True},
        )
    )
    out = tmp_path / "out"
    earlier = tmp_path / "earlier.json"
    earlier.write_text(rules_json({"name": "CT", "conditions": {"Modality": "CT"}}))
    arguments = ["--input", str(tmp_path / "in"), "--output", str(out), "--rules"]
    assert main([*arguments, str(earlier)]) == 0  # its selected-images.json must not survive
    capsys.readouterr()
    code = main([*arguments, str(rules)])
    assert code == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "ERROR" in line]
    assert line.endswith(
        "required selection 'MR brain' matched no image series (run with --explain to see why)"
    )
    assert not (out / "selected-images.json").exists()
    assert (out / "selection-explain.json").exists()


def test_a_selection_that_is_not_required_may_choose_nothing(tmp_path: Path) -> None:
    assert chosen_numbers(tmp_path, {"conditions": {"Modality": "MR"}}) == []


LOCALIZER = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
AXIAL = ["ORIGINAL", "PRIMARY", "AXIAL"]
MIXED_STUDY = [
    ct(1, 1.0, 3, series={"ImageType": LOCALIZER}, shape=(8, 8, 3)),
    ct(2, 1.0, 1, shape=(8, 8, 1)),
    ct(3, 1.0, 20, shape=(8, 8, 20)),
    ct(4, 1.0, 40, shape=(8, 8, 40)),
    ct(5, 1.0, 40, shape=(8, 8, 40)),
    SeriesFixture(  # LOCALIZER said by one instance only
        series={"Modality": "CT", "SeriesNumber": 6},
        instances=[{"ImageType": LOCALIZER}, {"ImageType": AXIAL}],
        shape=(8, 8, 60),
    ),
]


def test_without_order_by_a_volume_is_chosen_before_localizers_and_single_slices(
    tmp_path: Path,
) -> None:
    assert chosen_numbers(tmp_path, {"conditions": {}}, MIXED_STUDY) == [4]
    everything = {"conditions": {}, "all_matched": True}
    assert chosen_numbers(tmp_path, everything, MIXED_STUDY) == [4, 5, 3, 2, 6, 1]


def test_order_by_comes_first_then_the_default_order(tmp_path: Path) -> None:
    thinnest = {"conditions": {}, "order_by": ["instance_count"], "all_matched": True}
    assert chosen_numbers(tmp_path, thinnest, MIXED_STUDY) == [2, 6, 1, 3, 4, 5]


def test_volumes_in_several_orientations_rank_as_a_localizer() -> None:
    fixture = ct(1, 1.0, 3, shape=(8, 8, 1))
    (study,) = build_study([fixture])
    (series,) = study.series
    planes = [
        VolumeEntry.from_json({**volume_entry(f"v{n}.nii.gz", fixture), "orientation": plane})
        for n, plane in enumerate(("AXIAL", "CORONAL", "SAGITTAL"))
    ]
    scout = Candidate(study, series, tuple(planes), facts_of(study, series, []))
    single = Candidate(study, series, tuple(planes[:1]), facts_of(study, series, []))
    assert default_rank(scout) == (2, -1)
    assert default_rank(single) == (1, -1)


def test_the_log_and_the_explanation_say_when_the_default_order_chose(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_parser_output(tmp_path / "in", MIXED_STUDY)
    rules = tmp_path / "rules.json"
    rules.write_text(
        rules_json(
            {"name": "any", "conditions": {}},
            {
                "name": "ordered",
                "conditions": {},
                "order_by": ["instance_count descending", "SeriesNumber"],
            },
            {"name": "tied", "conditions": {}, "order_by": ["SliceThickness"]},
        )
    )
    arguments = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert main([*arguments, "--rules", str(rules), "--explain"]) == 0
    captured = capsys.readouterr()
    expected = "6 series matched in study 1.2.3; chose #4 'series 4' by the default order"
    assert f"selection 'any': {expected}" in captured.err
    assert f"selection 'tied': {expected}" in captured.err
    assert "selection 'ordered': " not in captured.err  # the rules decided
    assert f"Default order: {expected}" in captured.out
    assert "done: 'any': #4 'series 4'; 'ordered': #4 'series 4'; 'tied': #4 'series 4'" in (
        captured.err
    )
    explain = json.loads((tmp_path / "out" / "selection-explain.json").read_text())
    decided = {s["name"]: s["decided_by_default"] for s in explain["selections"]}
    assert decided["ordered"] == []
    for name in ("any", "tied"):
        ((note,),) = [decided[name]]
        assert (note["study"], note["matched"]) == ("1.2.3", 6)
        assert explain["series"][note["chosen"]]["SeriesNumber"] == 4
        assert note["why"].startswith(expected)


def test_default_order_warnings_are_few_whatever_the_number_of_studies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three studies get a line each, the others one line together; the explanation file
    lists every study."""
    fixtures = [
        SeriesFixture(
            series={"Modality": "CT", "SeriesNumber": number},
            study={"StudyInstanceUID": f"1.2.{study}"},
        )
        for study in range(1, 6)
        for number in (1, 2)
    ]
    write_parser_output(tmp_path / "in", fixtures)
    rules = tmp_path / "rules.json"
    rules.write_text(rules_json({"name": "CT", "conditions": {"Modality": "CT"}}))
    arguments = ["--input", str(tmp_path / "in"), "--output", str(tmp_path / "out")]
    assert main([*arguments, "--rules", str(rules)]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "WARNING" in line]
    assert len(warnings) == 4
    assert "in 2 more studies several series matched and the default order chose" in warnings[3]
    explain = json.loads((tmp_path / "out" / "selection-explain.json").read_text())
    assert len(explain["selections"][0]["decided_by_default"]) == 5
