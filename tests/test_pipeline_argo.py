"""The Argo Workflows export: our strict schema, Argo's published schema, and the wiring."""

from __future__ import annotations

import json
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from series_selection.common.errors import InputError
from series_selection.common.jsonio import schema_errors
from series_selection.pipeline.argo import workflow_template
from series_selection.pipeline.cli import main
from series_selection.pipeline.definition import load_pipeline, parse_pipeline
from test_pipeline_definition import CLARA

REPO = Path(__file__).resolve().parents[1]
ARGO_SCHEMA = REPO.parent / "shared/argo/workflow-schema.json"
WORKFLOW_TEMPLATE = "io.argoproj.workflow.v1alpha1.WorkflowTemplate"

FAN_IN = """
api-version: 0.4.0
name: fan-in
operators:
- name: join
  container: {image: registry.example/join, tag: "2"}
  input:
  - {from: split, name: left, path: /left}
  - {from: split, name: right, path: /right}
  - {path: /original}
  output: [{path: /joined}]
- name: split
  container: {image: registry.example/split, tag: "1", command: [split, --fast]}
  variables: {MODE: halves}
  input: [{path: /input}]
  output: [{name: left, path: /left}, {name: right, path: /right}]
"""


@cache
def argo_validator() -> jsonschema.protocols.Validator:
    """A validator for Argo's WorkflowTemplate definition, from its published JSON Schema."""
    if not ARGO_SCHEMA.is_file():
        pytest.skip(f"Argo's JSON Schema is not at {ARGO_SCHEMA}")
    schema = json.loads(ARGO_SCHEMA.read_text())
    single = {
        "$schema": schema["$schema"],
        "definitions": schema["definitions"],
        "$ref": f"#/definitions/{WORKFLOW_TEMPLATE}",
    }
    validator_class = jsonschema.validators.validator_for(single)
    return validator_class(single)


RUN_OPTIONS_ENV = [
    {
        "name": "NVIDIA_CLARA_SELECTION_RULES_BASE64",
        "value": "{{=sprig.b64enc(workflow.parameters.rules)}}",
    },
    {"name": "DICOM_PARSER_FORMAT", "value": "{{workflow.parameters.format}}"},
]
"""What the workflow's ``rules`` and ``format`` parameters set in every operator."""


def argo_errors(manifest: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in argo_validator().iter_errors(manifest)]


def exported(definition: str | None = None) -> dict[str, Any]:
    if definition is None:
        return workflow_template(load_pipeline())
    return workflow_template(parse_pipeline(textwrap.dedent(definition), "test.yaml"))


@pytest.mark.parametrize("definition", [None, FAN_IN], ids=["shipped", "fan-in"])
def test_the_export_validates_against_our_strict_schema_and_argos(
    definition: str | None,
) -> None:
    manifest = exported(definition)
    assert schema_errors(manifest, "argo-workflowtemplate") == []
    assert argo_errors(manifest) == []


def test_a_misspelt_key_fails_our_schema_though_argos_accepts_it() -> None:
    manifest = exported()
    manifest["spec"]["templates"][1]["container"]["volumeMount"] = []
    assert argo_errors(manifest) == []
    problems = schema_errors(manifest, "argo-workflowtemplate")
    assert any("'volumeMount' was unexpected" in problem for problem in problems)


def test_argos_schema_catches_a_wrong_type() -> None:
    manifest = exported()
    manifest["spec"]["templates"][1]["container"]["env"] = {"MODE": "x"}
    assert argo_errors(manifest) != []


def test_the_dag_follows_the_from_edges_and_mounts_follow_the_local_layout() -> None:
    manifest = exported(FAN_IN)
    dag, *containers = manifest["spec"]["templates"]
    assert dag == {
        "name": "fan-in",
        "dag": {
            "tasks": [
                {"name": "split", "template": "split"},
                {"name": "join", "template": "join", "depends": "split"},
            ]
        },
    }
    assert manifest["spec"]["entrypoint"] == "fan-in"
    split, join = (c["container"] for c in containers)
    assert split["image"] == "registry.example/split:1"
    assert split["command"] == ["split", "--fast"]
    assert split["env"] == [{"name": "MODE", "value": "halves"}, *RUN_OPTIONS_ENV]
    assert "command" not in join  # the image's entry point
    assert join["volumeMounts"] == [
        {"name": "output", "mountPath": "/left", "subPath": "{{workflow.name}}/split/left",
         "readOnly": True},
        {"name": "output", "mountPath": "/right", "subPath": "{{workflow.name}}/split/right",
         "readOnly": True},
        {"name": "input", "mountPath": "/original", "readOnly": True},
        {"name": "output", "mountPath": "/joined", "subPath": "{{workflow.name}}/join"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]  # fmt: skip


def test_the_shipped_export_carries_the_report_after_the_parser_and_the_selector() -> None:
    dag, *containers = exported()["spec"]["templates"]
    tasks = {task["name"]: task for task in dag["dag"]["tasks"]}
    assert list(tasks) == ["dicom-parser", "series-selector", "series-report"]
    assert tasks["series-report"]["depends"] == "dicom-parser && series-selector"
    report = containers[2]["container"]
    assert report["image"] == "series-selection/series-report:0.1.0"
    assert report["command"] == ["series-report"]
    assert report["volumeMounts"] == [
        {"name": "output", "mountPath": "/input", "subPath": "{{workflow.name}}/dicom-parser",
         "readOnly": True},
        {"name": "output", "mountPath": "/selections",
         "subPath": "{{workflow.name}}/series-selector/selections", "readOnly": True},
        {"name": "output", "mountPath": "/output",
         "subPath": "{{workflow.name}}/series-report/report"},
        {"name": "tmp", "mountPath": "/tmp"},
    ]  # fmt: skip


def test_every_container_is_hardened_and_the_pod_runs_as_the_images_user() -> None:
    spec = exported()["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    for template in spec["templates"][1:]:
        assert template["container"]["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        }


def test_an_operator_named_like_the_pipeline_is_refused() -> None:
    with pytest.raises(InputError, match="may not share the pipeline's name 'same'"):
        exported("""
            api-version: 0.4.0
            name: same
            operators:
            - {name: same, container: {image: x, tag: "1"}}
            """)


def test_the_command_line_writes_yaml_that_kubectl_would_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "workflow-template.yaml"
    assert main(["export", "argo", "--output", str(target)]) == 0
    written = yaml.safe_load(target.read_text())
    assert written == exported()

    assert main(["export", "argo"]) == 0
    assert yaml.safe_load(capsys.readouterr().out) == written
    assert "&id" not in target.read_text()  # no YAML anchors: plain for every reader


def test_requests_become_resources_and_pull_secrets_are_carried() -> None:
    manifest = workflow_template(parse_pipeline(CLARA, "clara.yaml"))
    assert schema_errors(manifest, "argo-workflowtemplate") == []
    assert argo_errors(manifest) == []
    assert manifest["spec"]["imagePullSecrets"] == [{"name": "ngc-clara"}]
    templates = {t["name"]: t for t in manifest["spec"]["templates"]}
    resources = {"cpu": "2000m", "memory": "8192Mi", "nvidia.com/gpu": "1"}
    assert templates["inference"]["container"]["resources"] == {
        "requests": resources,
        "limits": resources,
    }
    assert "resources" not in templates["dicom-parser"]["container"]


def test_rules_and_format_are_workflow_parameters_every_operator_receives() -> None:
    spec = exported()["spec"]
    parameters = {p["name"]: p for p in spec["arguments"]["parameters"]}
    assert parameters["rules"]["value"] == ""  # the selector's default rules
    assert parameters["format"]["value"] == "nii.gz"  # the shipped definition's
    assert parameters["format"]["enum"] == ["mhd", "nii", "nii.gz"]
    for template in spec["templates"][1:]:
        env = template["container"]["env"]
        assert env[-2:] == RUN_OPTIONS_ENV
        assert [e["name"] for e in env].count("DICOM_PARSER_FORMAT") == 1
    mhd = exported(FAN_IN.replace("{MODE: halves}", "{MODE: halves, DICOM_PARSER_FORMAT: mhd}"))
    (format_parameter,) = [
        p for p in mhd["spec"]["arguments"]["parameters"] if p["name"] == "format"
    ]
    assert format_parameter["value"] == "mhd"


def test_the_shipped_operators_have_measured_resources() -> None:
    for template in exported()["spec"]["templates"][1:]:
        resources = template["container"]["resources"]
        assert resources["requests"] == resources["limits"]
        assert set(resources["requests"]) == {"cpu", "memory"}
