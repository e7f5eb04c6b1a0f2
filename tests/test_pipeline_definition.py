"""Loading and checking Clara pipeline definitions."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
import yaml

from series_selection.common.errors import InputError
from series_selection.pipeline.cli import main
from series_selection.pipeline.definition import (
    Container,
    Input,
    Output,
    load_pipeline,
    parse_pipeline,
)

REPO = Path(__file__).resolve().parents[1]


def definition(operators: str) -> str:
    return "api-version: 0.4.0\nname: test\noperators:\n" + textwrap.dedent(operators)


def problem(text: str) -> str:
    with pytest.raises(InputError) as raised:
        parse_pipeline(text, "test.yaml")
    return raised.value.message


def test_the_shipped_definition_is_the_repository_one_and_wires_parser_to_selector() -> None:
    shipped = load_pipeline()
    assert shipped == load_pipeline(REPO / "pipeline.yaml")
    parser, selector, report = shipped.operators
    assert parser.name == "dicom-parser"
    assert parser.container == Container(
        "series-selection/dicom-parser", "0.1.0", ("dicom-parser",)
    )
    assert parser.inputs == (Input("/input"),)
    assert parser.outputs == (Output("/output"),)
    assert selector.inputs == (Input("/input", source="dicom-parser"),)
    assert selector.outputs == (Output("/output", name="selections"),)
    assert selector.variables["SERIES_SELECTOR_INPUT"] == "/input"
    assert report.container == Container(
        "series-selection/series-report", "0.1.0", ("series-report",)
    )
    assert report.inputs == (
        Input("/input", source="dicom-parser"),
        Input("/selections", source="series-selector", output_name="selections"),
    )
    assert report.outputs == (Output("/output", name="report"),)
    assert report.variables["SERIES_REPORT_SELECTIONS"] == "/selections"


def test_operators_run_after_those_they_read_from_whatever_the_listing_order() -> None:
    pipeline = parse_pipeline(
        definition("""
        - name: last
          container: {image: x, tag: "1"}
          input: [{from: middle, path: /in}, {from: first, name: extra, path: /extra}]
        - name: middle
          container: {image: x, tag: "1"}
          input: [{from: first, name: main, path: /in}]
          output: [{path: /out}]
        - name: first
          container: {image: x, tag: "1"}
          output: [{name: main, path: /out}, {name: extra, path: /extra}]
        """),
        "test.yaml",
    )
    assert [op.name for op in pipeline.operators] == ["first", "middle", "last"]
    assert pipeline.operators[2].upstream == ("middle", "first")


@pytest.mark.parametrize(
    ("operators", "expected"),
    [
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              inputs: [{path: /in}]
            """,
            "Additional properties are not allowed ('inputs' was unexpected)",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1", entrypoint: [sh]}
            """,
            "$.operators[0].container: Additional properties are not allowed ('entrypoint'",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              input: [{name: out, path: /in}]
            """,
            "'from' is a dependency of 'name'",
        ),
        (
            """
            - name: A_b
              container: {image: x, tag: "1"}
            """,
            "$.operators[0].name: 'A_b' does not match",
        ),
        (
            """
            - name: a
              container: {image: x, tag: 1.0}
            """,
            "$.operators[0].container.tag: 1.0 is not of type 'string'",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              variables: {LEVEL: 3}
            """,
            "$.operators[0].variables.LEVEL: 3 is not of type 'string'",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              input: [{path: relative/folder}]
            """,
            "$.operators[0].input[0].path: 'relative/folder' does not match",
        ),
    ],
)
def test_schema_problems_are_reported_with_their_place(operators: str, expected: str) -> None:
    message = problem(definition(operators))
    assert message.startswith("test.yaml is not a valid pipeline definition: ")
    assert expected in message


@pytest.mark.parametrize(
    ("operators", "expected"),
    [
        (
            """
            - name: a
              container: {image: x, tag: "1"}
            - name: a
              container: {image: y, tag: "1"}
            """,
            "operator name 'a' is used 2 times",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              input: [{from: nobody, path: /in}]
            """,
            "operator 'a': input from 'nobody': no such operator",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              output: [{name: results, path: /out}]
            - name: b
              container: {image: x, tag: "1"}
              input: [{from: a, path: /in}]
            """,
            "operator 'b': input from 'a': it has no unnamed output",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              output: [{path: /out}]
            - name: b
              container: {image: x, tag: "1"}
              input: [{from: a, name: other, path: /in}]
            """,
            "operator 'b': input from 'a': it has no output named 'other'",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              output: [{path: /out}, {name: more, path: /more}]
            """,
            "operator 'a': an unnamed output must be its only output",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              output: [{name: r, path: /out}, {name: r, path: /more}]
            """,
            "operator 'a': output name 'r' is used 2 times",
        ),
        (
            """
            - name: a
              container: {image: x, tag: "1"}
              input: [{path: /data}]
              output: [{path: /data/}]
            """,
            "operator 'a': path '/data' is mounted 2 times",
        ),
    ],
)
def test_wiring_problems_are_reported(operators: str, expected: str) -> None:
    assert expected in problem(definition(operators))


def test_a_cycle_is_reported_with_its_operators() -> None:
    message = problem(
        definition("""
        - name: a
          container: {image: x, tag: "1"}
          input: [{from: b, path: /in}]
          output: [{path: /out}]
        - name: b
          container: {image: x, tag: "1"}
          input: [{from: a, path: /in}]
          output: [{path: /out}]
        """)
    )
    assert "the operators' inputs form a cycle: " in message
    assert ("a -> b -> a" in message) or ("b -> a -> b" in message)


def test_an_operator_reading_its_own_output_is_a_cycle() -> None:
    message = problem(
        definition("""
        - name: a
          container: {image: x, tag: "1"}
          input: [{from: a, path: /in}]
          output: [{path: /out}]
        """)
    )
    assert "cycle: a -> a" in message


def test_not_yaml_and_not_a_mapping_are_clear_errors() -> None:
    assert problem("operators: [").startswith("test.yaml is not valid YAML")
    assert "$: 'just text' is not of type 'object'" in problem("just text")


def test_the_command_line_reports_a_bad_definition_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = yaml.safe_load((REPO / "pipeline.yaml").read_text())
    broken["operators"][1]["input"][0]["from"] = "dicom-parsr"
    definition_file = tmp_path / "pipeline.yaml"
    definition_file.write_text(yaml.safe_dump(broken))
    (tmp_path / "in").mkdir()

    exit_code = main(
        ["run", "--pipeline", str(definition_file), "--input", str(tmp_path / "in"),
         "--output", str(tmp_path / "out")]
    )  # fmt: skip

    assert exit_code == 2
    error = capsys.readouterr().err
    assert "input from 'dicom-parsr': no such operator" in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_a_missing_definition_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["export", "argo", "--pipeline", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read pipeline definition" in capsys.readouterr().err


CLARA = """\
api-version: 0.4.0
name: with-inference
orchestrator: Clara
pull-secrets: [ngc-clara]
parameters:
  model-tag: "1.0"
  FORMAT: nii.gz
operators:
- name: dicom-parser
  container: {image: series-selection/dicom-parser, tag: 0.1.0, command: [dicom-parser]}
  variables: {DICOM_PARSER_FORMAT: "${{ FORMAT }}"}
  input: [{path: /input}]
  output: [{path: /output}]
- name: inference
  container:
    image: example/inference
    tag: ${{ model-tag }}
    command: [infer, --format, "{{ FORMAT }}"]
  requests: {gpu: 1, memory: 8192, cpu: 2}
  input: [{from: dicom-parser, path: /input}]
  output: [{path: /output}]
"""


def test_a_clara_definition_with_requests_and_parameters_loads() -> None:
    pipeline = parse_pipeline(CLARA, "clara.yaml")
    parser, inference = pipeline.operators
    assert parser.variables["DICOM_PARSER_FORMAT"] == "nii.gz"
    assert inference.container.reference == "example/inference:1.0"
    assert inference.container.command == ("infer", "--format", "nii.gz")
    assert (inference.requests.gpu, inference.requests.memory_mb, inference.requests.cpu) == (
        1,
        8192,
        2,
    )
    assert parser.requests.gpu is None
    assert pipeline.pull_secrets == ("ngc-clara",)


def test_parameters_are_set_from_the_command_line_and_unknown_ones_refused() -> None:
    pipeline = parse_pipeline(CLARA, "clara.yaml", {"model-tag": "2.1", "FORMAT": "mhd"})
    parser, inference = pipeline.operators
    assert inference.container.tag == "2.1"
    assert parser.variables["DICOM_PARSER_FORMAT"] == "mhd"
    with pytest.raises(InputError, match="no parameter named GPUS is declared"):
        parse_pipeline(CLARA, "clara.yaml", {"GPUS": "2"})


def test_a_placeholder_without_a_parameter_is_refused() -> None:
    text = CLARA.replace("${{ model-tag }}", "${{ model-version }}")
    assert "placeholder ${{ model-version }} names no declared parameter" in problem(text)


@pytest.mark.parametrize(
    "text",
    [
        CLARA + "services:\n- name: trtis\n  container: {image: nvcr.io/trtis, tag: x}\n",
        CLARA.replace("  requests:", "  services: [{name: trtis}]\n  requests:"),
    ],
    ids=["pipeline", "operator"],
)
def test_services_are_refused_with_the_reason(text: str) -> None:
    assert problem(text) == (
        "test.yaml: services are not supported (Clara deprecated them): run the service on its "
        "own and give its address to the operator in its variables"
    )


def test_the_command_line_takes_parameters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    definition_file = tmp_path / "clara.yaml"
    definition_file.write_text(CLARA)
    out = tmp_path / "argo.yaml"
    arguments = ["export", "argo", "--pipeline", str(definition_file), "--output", str(out)]
    assert main([*arguments, "--parameter", "model-tag=3.0"]) == 0
    assert "example/inference:3.0" in out.read_text()
    assert main([*arguments, "--parameter", "model-tag"]) == 2
    assert "--parameter 'model-tag': give NAME=VALUE" in capsys.readouterr().err


@pytest.mark.parametrize("depth", [100, 5_000, 200_000])
def test_a_definition_nested_however_deep_is_a_one_line_error(depth: int) -> None:
    nested = "[" * depth + "]" * depth
    text = CLARA.replace('{DICOM_PARSER_FORMAT: "${{ FORMAT }}"}', nested)
    assert problem(text).startswith("test.yaml")


@pytest.mark.parametrize("special", ["fifo", "/dev/zero", "large"])
def test_a_definition_that_is_no_small_regular_file_is_refused_unread(
    special: str, tmp_path: Path
) -> None:
    path = tmp_path / "pipeline.yaml"
    if special == "fifo":
        os.mkfifo(path)  # nobody writes: reading it would wait for ever
    elif special == "large":
        path.write_text("# " + "x" * (1 << 20) + "\n" + CLARA)
    else:
        path = Path(special)
    with pytest.raises(InputError) as raised:
        load_pipeline(path)
    reason = "is larger than 1 MiB" if special == "large" else "is not a regular file"
    assert raised.value.message == f"pipeline definition {path} {reason}"
