"""The pipeline definition: a Clara ``pipeline.yaml`` (api-version 0.4.0), loaded and checked.

Semantics as in Clara: an input without ``from`` is the job's input folder; ``from: X`` is the
output of operator X (``from`` + ``name``: its output of that name); operators run in dependency
order; ``variables`` are the operator's environment variables.
"""

from __future__ import annotations

import graphlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from series_selection.common.errors import InputError
from series_selection.common.jsonio import schema_errors

SCHEMA = "pipeline"


@dataclass(frozen=True)
class Container:
    """The operator's image and, optionally, the command it runs."""

    image: str
    tag: str
    command: tuple[str, ...] | None = None

    @property
    def reference(self) -> str:
        return f"{self.image}:{self.tag}"


@dataclass(frozen=True)
class Input:
    """A folder the operator reads at ``path``: the job's input, or another operator's output."""

    path: str
    source: str | None = None
    output_name: str | None = None


@dataclass(frozen=True)
class Output:
    """A folder the operator writes at ``path``, optionally named."""

    path: str
    name: str | None = None


@dataclass(frozen=True)
class Operator:
    name: str
    container: Container
    variables: Mapping[str, str]
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    description: str = ""

    def output(self, name: str | None) -> Output | None:
        """The output called ``name`` (``None``: the unnamed one), if the operator has it."""
        return next((o for o in self.outputs if o.name == name), None)

    @property
    def upstream(self) -> tuple[str, ...]:
        """Names of the operators whose outputs this one reads."""
        return tuple(dict.fromkeys(i.source for i in self.inputs if i.source is not None))


@dataclass(frozen=True)
class Pipeline:
    name: str
    operators: tuple[Operator, ...]  # in an order where each runs after those it reads from


def default_pipeline_text() -> str:
    """The pipeline definition shipped with the package."""
    return resources.files("series_selection.pipeline").joinpath("pipeline.yaml").read_text()


def load_pipeline(path: Path | None = None) -> Pipeline:
    """Load and check ``path``, or the shipped definition when ``path`` is ``None``."""
    if path is None:
        return parse_pipeline(default_pipeline_text(), "the default pipeline.yaml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read pipeline definition {path}: {error}") from error
    return parse_pipeline(text, str(path))


def parse_pipeline(text: str, origin: str) -> Pipeline:
    """Parse YAML ``text``; any problem becomes an ``InputError`` naming ``origin``."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(f"{origin} is not valid YAML: {error}") from error
    problems = schema_errors(document, SCHEMA)
    if problems:
        raise InputError(f"{origin} is not a valid pipeline definition: " + "; ".join(problems))
    operators = [_operator(entry) for entry in document["operators"]]
    problems = _wiring_problems(operators)
    if problems:
        raise InputError(f"{origin}: " + "; ".join(problems))
    return Pipeline(name=document["name"], operators=_in_dependency_order(operators, origin))


def _operator(entry: Mapping[str, Any]) -> Operator:
    container = entry["container"]
    command = container.get("command")
    return Operator(
        name=entry["name"],
        description=entry.get("description", ""),
        container=Container(
            image=container["image"],
            tag=container["tag"],
            command=None if command is None else tuple(command),
        ),
        variables=dict(entry.get("variables", {})),
        inputs=tuple(
            Input(path=i["path"], source=i.get("from"), output_name=i.get("name"))
            for i in entry.get("input", [])
        ),
        outputs=tuple(Output(path=o["path"], name=o.get("name")) for o in entry.get("output", [])),
    )


def _wiring_problems(operators: list[Operator]) -> list[str]:
    """What the schema cannot see: duplicate names and paths, and ``from`` naming nothing."""
    problems = [
        f"operator name {name!r} is used {count} times"
        for name, count in Counter(op.name for op in operators).items()
        if count > 1
    ]
    by_name = {op.name: op for op in operators}
    for op in operators:
        names = [o.name for o in op.outputs]
        if None in names and len(names) > 1:
            problems.append(
                f"operator {op.name!r}: an unnamed output must be its only output; name each one"
            )
        problems += [
            f"operator {op.name!r}: output name {name!r} is used {count} times"
            for name, count in Counter(n for n in names if n is not None).items()
            if count > 1
        ]
        paths = [i.path.rstrip("/") or "/" for i in op.inputs] + [
            o.path.rstrip("/") or "/" for o in op.outputs
        ]
        problems += [
            f"operator {op.name!r}: path {path!r} is mounted {count} times"
            for path, count in Counter(paths).items()
            if count > 1
        ]
        for entry in op.inputs:
            if entry.source is None:
                continue
            source = by_name.get(entry.source)
            if source is None:
                problems.append(
                    f"operator {op.name!r}: input from {entry.source!r}: no such operator"
                )
            elif source.output(entry.output_name) is None:
                missing = (
                    "no unnamed output"
                    if entry.output_name is None
                    else f"no output named {entry.output_name!r}"
                )
                problems.append(
                    f"operator {op.name!r}: input from {entry.source!r}: it has {missing}"
                )
    return problems


def _in_dependency_order(operators: list[Operator], origin: str) -> tuple[Operator, ...]:
    by_name = {op.name: op for op in operators}
    sorter = graphlib.TopologicalSorter({op.name: op.upstream for op in operators})
    try:
        order = list(sorter.static_order())
    except graphlib.CycleError as error:
        cycle = " -> ".join(error.args[1])
        raise InputError(f"{origin}: the operators' inputs form a cycle: {cycle}") from error
    return tuple(by_name[name] for name in order)
