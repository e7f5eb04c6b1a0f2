"""The pipeline definition: a Clara ``pipeline.yaml`` (api-version 0.4.0), loaded and checked.

Semantics as in Clara: an input without ``from`` is the job's input folder; ``from: X`` is the
output of operator X (``from`` + ``name``: its output of that name); operators run in dependency
order; ``variables`` are the operator's environment variables; ``requests`` the resources it
needs; ``parameters`` declare the template placeholders ``${{ name }}`` and their defaults.
``services``, which Clara itself deprecated, are refused.
"""

from __future__ import annotations

import graphlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from series_selection.common.errors import InputError
from series_selection.common.files import RefusedFileError, read_small_text
from series_selection.common.jsonio import schema_errors

SCHEMA = "pipeline"
MAX_DEFINITION_BYTES = 1 << 20
"""A pipeline definition is a few kilobytes; a larger file is refused unread."""
PLACEHOLDER = re.compile(r"(\$?)\{\{\s*([A-Za-z_][-A-Za-z0-9_.]*)\s*\}\}")
"""A template placeholder: ``${{ name }}`` as Clara writes it (``{{ name }}`` too, for a
declared name)."""
SERVICES = (
    "services are not supported (Clara deprecated them): run the service on its own and give "
    "its address to the operator in its variables"
)


@dataclass(frozen=True)
class Requests:
    """What an operator asks of the machine; ``None`` where it does not say."""

    cpu: float | None = None
    gpu: int | None = None
    memory_mb: int | None = None


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
    requests: Requests = Requests()

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
    pull_secrets: tuple[str, ...] = ()


def default_pipeline_text() -> str:
    """The pipeline definition shipped with the package."""
    return resources.files("series_selection.pipeline").joinpath("pipeline.yaml").read_text()


def load_pipeline(path: Path | None = None, arguments: Mapping[str, str] = {}) -> Pipeline:
    """Load and check ``path``, or the shipped definition when ``path`` is ``None``, with its
    parameters set from ``arguments``."""
    if path is None:
        return parse_pipeline(default_pipeline_text(), "the default pipeline.yaml", arguments)
    try:
        text = read_small_text(path, MAX_DEFINITION_BYTES)
    except RefusedFileError as error:
        raise InputError(f"pipeline definition {path} {error}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read pipeline definition {path}: {error}") from error
    return parse_pipeline(text, str(path), arguments)


def parse_pipeline(text: str, origin: str, arguments: Mapping[str, str] = {}) -> Pipeline:
    """Parse YAML ``text``, its placeholders resolved from ``arguments`` and the declared
    defaults; any problem becomes an ``InputError`` naming ``origin``."""
    try:
        return _parse(text, origin, arguments)
    except RecursionError:  # YAML, placeholders and schema are all read recursively
        raise InputError(f"{origin} is nested too deeply to read") from None


def _parse(text: str, origin: str, arguments: Mapping[str, str]) -> Pipeline:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise InputError(f"{origin} is not valid YAML: " + " ".join(str(error).split())) from error
    if isinstance(document, dict):
        if "services" in document or any(
            isinstance(op, dict) and "services" in op for op in document.get("operators") or []
        ):
            raise InputError(f"{origin}: {SERVICES}")
        document = _resolved(document, arguments, origin)
    problems = schema_errors(document, SCHEMA)
    if problems:
        raise InputError(f"{origin} is not a valid pipeline definition: " + "; ".join(problems))
    operators = [_operator(entry) for entry in document["operators"]]
    problems = _wiring_problems(operators)
    if problems:
        raise InputError(f"{origin}: " + "; ".join(problems))
    return Pipeline(
        name=document["name"],
        operators=_in_dependency_order(operators, origin),
        pull_secrets=tuple(document.get("pull-secrets", ())),
    )


def _resolved(
    document: dict[str, Any], arguments: Mapping[str, str], origin: str
) -> dict[str, Any]:
    """``document`` with every placeholder replaced: by its argument, else its default."""
    declared = document.get("parameters") or {}
    if not isinstance(declared, dict):
        return document  # the schema says what is wrong
    unknown = sorted(set(arguments) - set(declared))
    if unknown:
        names = ", ".join(unknown)
        raise InputError(f"{origin}: no parameter named {names} is declared in its parameters")
    values = {name: str(value) for name, value in declared.items()} | dict(arguments)

    def replace(match: re.Match[str]) -> str:
        dollar, name = match.groups()
        if name in values:
            return values[name]
        if dollar:
            raise InputError(f"{origin}: placeholder ${{{{ {name} }}}} names no declared parameter")
        return match.group(0)

    def resolve(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(replace, value)
        if isinstance(value, list):
            return [resolve(item) for item in value]
        if isinstance(value, dict):
            return {key: resolve(item) for key, item in value.items()}
        return value

    return {
        key: value if key == "parameters" else resolve(value) for key, value in document.items()
    }


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
        requests=Requests(
            cpu=entry.get("requests", {}).get("cpu"),
            gpu=entry.get("requests", {}).get("gpu"),
            memory_mb=entry.get("requests", {}).get("memory"),
        ),
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
