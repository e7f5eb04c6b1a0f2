"""Export a pipeline as an Argo Workflows ``WorkflowTemplate``.

One container template per operator and a DAG from the ``from`` edges. Two persistent volume
claims, named by workflow parameters, hold the data: ``input-claim`` (the job's input, mounted
read-only) and ``output-claim``, where each operator output is the sub-path
``<workflow name>/<operator>[/<output name>]`` (the local runner's layout), mounted read-only
where it is consumed. Two more parameters reach every operator as ``series-pipeline run``'s
options do: ``rules`` (the rules text, base64-encoded by Argo into
``NVIDIA_CLARA_SELECTION_RULES_BASE64``; empty for the selector's default rules) and ``format``
(``DICOM_PARSER_FORMAT``).
"""

from __future__ import annotations

from typing import Any

from series_selection.common.errors import InputError
from series_selection.common.models import (
    DEFAULT_VOLUME_FORMAT,
    FORMAT_ENV,
    RULES_BASE64_ENV,
    VOLUME_FORMATS,
)
from series_selection.pipeline.definition import Operator, Pipeline

RUN_AS = 10001  # the non-root user of the project's images (docker/*.Dockerfile)
INPUT_VOLUME, OUTPUT_VOLUME, TMP_VOLUME = "input", "output", "tmp"
RUN_OPTIONS = {
    RULES_BASE64_ENV: "{{=sprig.b64enc(workflow.parameters.rules)}}",
    FORMAT_ENV: "{{workflow.parameters.format}}",
}
"""The variables the workflow's parameters set in every operator (Argo expression tags)."""


def workflow_template(pipeline: Pipeline) -> dict[str, Any]:
    """The ``WorkflowTemplate`` manifest running ``pipeline``."""
    if any(op.name == pipeline.name for op in pipeline.operators):
        raise InputError(
            f"an operator may not share the pipeline's name {pipeline.name!r}: "
            "it names the DAG template"
        )
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "WorkflowTemplate",
        "metadata": {"name": pipeline.name},
        "spec": {
            "entrypoint": pipeline.name,
            "arguments": {
                "parameters": [
                    {
                        "name": "input-claim",
                        "description": "PersistentVolumeClaim holding the job's input folder",
                    },
                    {
                        "name": "output-claim",
                        "description": "PersistentVolumeClaim receiving the operators' outputs",
                    },
                    {
                        "name": "rules",
                        "value": "",
                        "description": "selection rules, YAML or JSON text (empty: the "
                        "selector's default rules)",
                    },
                    {
                        "name": "format",
                        "value": _format(pipeline),
                        "enum": list(VOLUME_FORMATS),
                        "description": "the parser's volume format",
                    },
                ]
            },
            **(
                {"imagePullSecrets": [{"name": name} for name in pipeline.pull_secrets]}
                if pipeline.pull_secrets
                else {}
            ),
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": RUN_AS,
                "runAsGroup": RUN_AS,
                "fsGroup": RUN_AS,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "volumes": [
                {
                    "name": INPUT_VOLUME,
                    "persistentVolumeClaim": {
                        "claimName": "{{workflow.parameters.input-claim}}",
                        "readOnly": True,
                    },
                },
                {
                    "name": OUTPUT_VOLUME,
                    "persistentVolumeClaim": {"claimName": "{{workflow.parameters.output-claim}}"},
                },
                {"name": TMP_VOLUME, "emptyDir": {"medium": "Memory"}},
            ],
            "templates": [
                {"name": pipeline.name, "dag": {"tasks": [_task(op) for op in pipeline.operators]}},
                *(_container_template(op) for op in pipeline.operators),
            ],
        },
    }


def _task(operator: Operator) -> dict[str, Any]:
    task: dict[str, Any] = {"name": operator.name, "template": operator.name}
    if operator.upstream:
        task["depends"] = " && ".join(operator.upstream)
    return task


def _container_template(operator: Operator) -> dict[str, Any]:
    mounts = [
        {"name": INPUT_VOLUME, "mountPath": i.path, "readOnly": True}
        if i.source is None
        else {
            "name": OUTPUT_VOLUME,
            "mountPath": i.path,
            "subPath": _sub_path(i.source, i.output_name),
            "readOnly": True,
        }
        for i in operator.inputs
    ]
    mounts += [
        {"name": OUTPUT_VOLUME, "mountPath": o.path, "subPath": _sub_path(operator.name, o.name)}
        for o in operator.outputs
    ]
    mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
    container: dict[str, Any] = {"image": operator.container.reference}
    if operator.container.command is not None:
        container["command"] = list(operator.container.command)
    variables = {k: v for k, v in operator.variables.items() if k not in RUN_OPTIONS}
    variables |= RUN_OPTIONS
    container["env"] = [{"name": k, "value": v} for k, v in variables.items()]
    resources = _resources(operator)
    if resources:
        container["resources"] = {"requests": resources, "limits": dict(resources)}
    container["volumeMounts"] = mounts
    container["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return {"name": operator.name, "container": container}


def _format(pipeline: Pipeline) -> str:
    """The volume format the definition sets for its operators, else the parser's default."""
    formats = [op.variables[FORMAT_ENV] for op in pipeline.operators if FORMAT_ENV in op.variables]
    return formats[0] if formats else DEFAULT_VOLUME_FORMAT


def _resources(operator: Operator) -> dict[str, str]:
    """The operator's ``requests`` as Kubernetes quantities (memory in MiB: Clara's MB)."""
    requests = operator.requests
    resources = {}
    if requests.cpu is not None:
        resources["cpu"] = f"{round(requests.cpu * 1000)}m"
    if requests.memory_mb is not None:
        resources["memory"] = f"{requests.memory_mb}Mi"
    if requests.gpu:
        resources["nvidia.com/gpu"] = str(requests.gpu)
    return resources


def _sub_path(operator: str, output_name: str | None) -> str:
    parts = ["{{workflow.name}}", operator] + ([output_name] if output_name else [])
    return "/".join(parts)
