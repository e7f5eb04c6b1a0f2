"""Loading rules: sources and their precedence, YAML and JSON, and every error a user can make."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from reliability_support import time_limit
from selector_support import SeriesFixture, judge
from series_selection.common.errors import RulesError
from series_selection.common.models import RULES_BASE64_ENV
from series_selection.selector.cli import main
from series_selection.selector.rules import load_rules, parse_rules, read_rules_text

RULES = Path(__file__).resolve().parent.parent / "rules"


def error_of(text: str) -> str:
    with pytest.raises(RulesError) as caught:
        parse_rules(text, "rules.yaml")
    return caught.value.message


def test_yaml_and_json_give_the_same_rules() -> None:
    document = {
        "selections": [
            {
                "name": "CT",
                "conditions": {"Modality": "CT", "SliceThickness": [1, 3]},
                "all_matched": True,
                "order_by": ["instance_count descending", "SeriesNumber"],
                "required": True,
            }
        ]
    }
    yaml_text = """
selections:
  - name: CT
    conditions:
      Modality: CT
      SliceThickness: [1, 3]
    all_matched: true
    order_by: [instance_count descending, SeriesNumber]
    required: true
"""
    from_yaml = parse_rules(yaml_text, "a.yaml").selections[0]
    from_json = parse_rules(json.dumps(document), "a.json").selections[0]
    for selection in (from_yaml, from_json):
        assert selection.name == "CT"
        assert (selection.all_matched, selection.required) == (True, True)
        assert [(k.name, k.descending) for k in selection.order_by] == [
            ("instance_count", True),
            ("SeriesNumber", False),
        ]
        assert [c.path for c in selection.conditions.children] == [
            "$.selections[0].conditions.Modality",
            "$.selections[0].conditions.SliceThickness",
        ]


def test_a_monai_deploy_rules_file_loads_unchanged() -> None:
    monai = """{
        "selections": [
            {"name": "CT Series 1",
             "conditions": {"StudyDescription": "(?i)^Spleen", "Modality": "(?i)CT",
                            "SeriesDescription": "(?i)^No series description|(.*?)"}},
            {"name": "CT Series 2",
             "conditions": {"Modality": "CT", "BodyPartExamined": "Abdomen",
                            "ImageType": ["PRIMARY", "!LOCALIZER"],
                            "SliceThickness": [2.5, ">="],
                            "ImageOrientationPatient": "Axial"}}
        ]
    }"""
    rules = parse_rules(monai, "monai.json")
    assert [s.name for s in rules.selections] == ["CT Series 1", "CT Series 2"]
    assert not rules.selections[0].all_matched


def test_unnamed_selections_get_a_numbered_name() -> None:
    rules = parse_rules('{"selections": [{"conditions": {}}, {"conditions": {}}]}', "x")
    assert [s.name for s in rules.selections] == ["selection 1", "selection 2"]


@pytest.mark.parametrize("path", sorted(RULES.glob("*.*")), ids=lambda p: p.name)
def test_every_shipped_rules_file_is_valid(path: Path) -> None:
    rules = load_rules(str(path), {})
    assert rules.selections
    assert rules.source == str(path)


# Every error names the selection and the JSON path of the bad value.


def test_unknown_keyword_is_named_with_a_suggestion() -> None:
    message = error_of("selections:\n  - name: CT\n    conditions:\n      Modalty: CT\n")
    assert message == (
        "rules.yaml: selection 'CT' at $.selections[0].conditions.Modalty: "
        "unknown DICOM keyword 'Modalty' (did you mean Modality?)"
    )


def test_unknown_keyword_inside_a_combinator() -> None:
    text = json.dumps(
        {
            "selections": [
                {"name": "s", "conditions": {"any": [{}, {"not": {"SeriesDescrption": "x"}}]}}
            ]
        }
    )
    assert "at $.selections[0].conditions.any[1].not.SeriesDescrption: unknown DICOM keyword" in (
        error_of(text)
    )


def test_invalid_regex() -> None:
    message = error_of(
        '{"selections": [{"name": "T1", "conditions": {"SeriesDescription": "t1(("}}]}'
    )
    assert message.startswith(
        "rules.yaml: selection 'T1' at $.selections[0].conditions.SeriesDescription: "
        "invalid regular expression 't1(('"
    )


def test_look_ahead_runs_in_python_syntax_as_in_monai() -> None:
    """MONAI's pediatric abdomen CT app excludes reformats with a negative look-ahead."""
    pattern = "(?i)^(?!.*(cor|sag)).*$"
    assert judge(
        {"SeriesDescription": pattern}, SeriesFixture(series={"SeriesDescription": "Ax 5mm"})
    ).passed
    assert not judge(
        {"SeriesDescription": pattern}, SeriesFixture(series={"SeriesDescription": "COR 3mm"})
    ).passed
    back_reference = r"^(\w+) \1$"
    assert judge(
        {"SeriesDescription": back_reference}, SeriesFixture(series={"SeriesDescription": "T1 T1"})
    ).passed


def test_a_pattern_neither_engine_reads_is_refused_with_the_first_engines_reason() -> None:
    message = error_of('{"selections": [{"conditions": {"SeriesDescription": "(?<=t1"}}]}')
    assert "selection 1 at $.selections[0].conditions.SeriesDescription" in message
    assert "invalid regular expression '(?<=t1'" in message


@pytest.mark.parametrize("pattern", [r"^(a|a)*\1$", r"^(?=(a|a)*\1$)"])
def test_catastrophic_python_pattern_ends_within_its_bound(pattern: str) -> None:
    """A back-reference or look-ahead needs the backtracking engine: it is stopped by its time
    limit and the run ends with an error naming the selection and the pattern (exit 2)."""
    fixture = SeriesFixture(series={"TextValue": "a" * 5000 + "!"})
    with time_limit(10), pytest.raises(RulesError) as caught:
        judge({"TextValue": pattern}, fixture)
    message = caught.value.message
    assert "selection 1 at $.selections[0].conditions.TextValue" in message
    assert f"regular expression '{pattern}' ran out of time" in message


def test_slow_python_patterns_are_bounded_in_all() -> None:
    """Many slow patterns over many values stop at the shared budget, not after minutes."""
    rules = parse_rules(
        json.dumps(
            {
                "selections": [
                    {"name": f"slow {i}", "conditions": {"TextValue": r"^(?=a)(a|a)*\1$"}}
                    for i in range(50)
                ]
            }
        ),
        "slow.json",
    )
    budget = rules.selections[0].conditions.children[0].regex.budget  # type: ignore[attr-defined]
    budget.each = 0.05
    budget.total = 0.5
    started = time.monotonic()
    with time_limit(20), pytest.raises(RulesError) as caught:
        for number, selection in enumerate(rules.selections):
            leaf = selection.conditions.children[0]
            leaf.test(("a" * (20 + number % 3) + "!",))  # type: ignore[attr-defined]
    assert time.monotonic() - started < 10
    assert "ran out of time" in caught.value.message


def test_hostile_regex_runs_in_linear_time() -> None:
    """A backtracking engine would take years; the limit only keeps a failure from hanging."""
    fixture = SeriesFixture(series={"TextValue": "a" * 30000 + "!"})
    with time_limit(30):
        assert not judge({"TextValue": "^(a+)+$"}, fixture).passed


def test_unknown_operator() -> None:
    message = error_of(
        '{"selections": [{"name": "thin", "conditions": {"SliceThickness": [1.5, "=<"]}}]}'
    )
    assert message == (
        "rules.yaml: selection 'thin' at $.selections[0].conditions.SliceThickness[1]: "
        "unknown operator '=<': use one of >, >=, <, <=, !=, =="
    )


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ([3, 1], "empty range: low 3 is above high 1"),
        ([1, 2, 3], "a list of numbers is a range [low, high]"),
        (["ORIGINAL", "!ORIGINAL"], "ORIGINAL is both required and excluded"),
    ],
)
def test_bad_lists(value: list[object], complaint: str) -> None:
    text = json.dumps({"selections": [{"name": "s", "conditions": {"ImageType": value}}]})
    assert complaint in error_of(text)


def test_unknown_orientation() -> None:
    text = '{"selections": [{"conditions": {"ImageOrientationPatient": "Transverse"}}]}'
    assert "unknown orientation 'Transverse': use Axial, Coronal, Sagittal or Oblique" in (
        error_of(text)
    )


def test_sequences_and_bulk_data_cannot_be_matched() -> None:
    text = '{"selections": [{"conditions": {"ReferencedImageSequence": "x"}}]}'
    assert "ReferencedImageSequence has VR SQ, which cannot be matched" in error_of(text)


def test_unknown_sort_key() -> None:
    text = '{"selections": [{"name": "s", "conditions": {}, "order_by": ["instances descending"]}]}'
    message = error_of(text)
    assert "at $.selections[0].order_by[0]: unknown DICOM keyword 'instances'" in message
    assert "derived keys are instance_count, voxel_count, slice_spacing" in message


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("description: x\n", "$: 'selections' is a required property"),
        (
            "selection:\n  - conditions: {}\n",
            "rules.yaml: $: unknown key 'selection' (did you mean 'selections'?)",
        ),
        (
            "selections:\n  - conditions: {}\n    all_match: true\n",
            "rules.yaml: selection 1 at $.selections[0]: unknown key 'all_match' "
            "(did you mean 'all_matched'?)",
        ),
        ("selections: []\n", "$.selections: [] should be non-empty"),
        ("selections:\n  - name: a\n", "selection 'a' at $.selections[0]: 'conditions' is a"),
        (
            "selections:\n  - name: a\n    conditions: {}\n    all_matched: 'yes'\n",
            "selection 'a' at $.selections[0].all_matched: 'yes' is not of type 'boolean'",
        ),
        (
            "selections:\n  - name: a\n    conditions: {Modality: true}\n",
            "selection 'a' at $.selections[0].conditions.Modality: True is not valid",
        ),
        (
            "selections:\n  - name: a\n    conditions: {ImageType: []}\n",
            "selection 'a' at $.selections[0].conditions.ImageType: [] is not valid",
        ),
        (
            "selections:\n  - conditions: {}\n    sort: [SeriesNumber]\n",
            "selection 1 at $.selections[0]: unknown key 'sort'; use name, description, "
            "conditions, all_matched, order_by, required",
        ),
        (
            "selections:\n  - conditions: {}\n    order_by: [SeriesNumber upwards]\n",
            "$.selections[0].order_by[0]: 'SeriesNumber upwards' does not match",
        ),
        ("- just a list\n", "$: ['just a list'] is not of type 'object'"),
    ],
)
def test_schema_errors_name_the_selection_and_path(text: str, complaint: str) -> None:
    assert complaint in error_of(text)


def test_yaml_syntax_error() -> None:
    assert error_of("selections: [\n").startswith("rules.yaml is not valid YAML")


def test_json_syntax_error() -> None:
    assert error_of('{"selections": [}').startswith("rules.yaml is not valid JSON")


def test_yaml_is_read_with_a_safe_loader() -> None:
    text = "selections: !!python/object/apply:os.system ['echo unsafe']\n"
    assert error_of(text).startswith("rules.yaml is not valid YAML")


# Where rules come from: base64 environment, then --rules or its environment, then the default.


def test_base64_environment_wins_over_a_rules_file(tmp_path: Path) -> None:
    rules_file = tmp_path / "file.yaml"
    rules_file.write_text("selections:\n  - name: from file\n    conditions: {}\n")
    encoded = base64.b64encode(b"selections:\n  - name: from env\n    conditions: {}\n")
    rules = load_rules(str(rules_file), {RULES_BASE64_ENV: encoded.decode()})
    assert (rules.source, rules.selections[0].name) == (RULES_BASE64_ENV, "from env")
    rules = load_rules(str(rules_file), {})
    assert (rules.source, rules.selections[0].name) == (str(rules_file), "from file")


def test_default_rules_are_shipped() -> None:
    text, source = read_rules_text(None, {})
    assert source == "default rules (default.yaml)"
    assert text == (RULES / "default.yaml").read_text()


def test_bad_base64() -> None:
    with pytest.raises(RulesError, match="is not base64 of UTF-8 text"):
        read_rules_text(None, {RULES_BASE64_ENV: "not base64 at all!"})


def test_missing_rules_file(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match=r"cannot read rules file .*nothing\.yaml: No such file"):
        read_rules_text(str(tmp_path / "nothing.yaml"), {})


def test_cli_reports_a_rules_error_in_one_line_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text("selections:\n  - name: CT\n    conditions: {Modalty: CT}\n")
    code = main(
        ["--input", str(tmp_path), "--output", str(tmp_path / "out"), "--rules", str(rules_file)]
    )
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert "Traceback" not in captured.err
    (line,) = captured.err.strip().splitlines()
    assert line.endswith("unknown DICOM keyword 'Modalty' (did you mean Modality?)")
    assert "ERROR" in line
    assert not (tmp_path / "out").exists()


def test_cli_reads_the_rules_file_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rules_file = tmp_path / "env.yaml"
    rules_file.write_text("selections:\n  - conditions: {ImageOrientationPatient: Upright}\n")
    monkeypatch.setenv("NVIDIA_CLARA_SELECTION_RULES_FILE", str(rules_file))
    assert main(["--input", str(tmp_path), "--output", str(tmp_path / "out")]) == 2
    assert "unknown orientation 'Upright'" in capsys.readouterr().err
