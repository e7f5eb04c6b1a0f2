"""The package as a library: one import name, an explicit public API, and importing it changes
nothing in the importing process."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from reliability_support import REPOSITORY, parser_environment

PACKAGES = [
    "series_selection",
    "series_selection.common",
    "series_selection.parser",
    "series_selection.selector",
    "series_selection.pipeline",
    "series_selection.receiver",
    "series_selection.report",
]

MODULES_IMPORTED_WHERE_USED = [
    "series_selection.pipeline.docker_engine",
    "series_selection.receiver.service",
    "series_selection.receiver.cli",
]
"""Modules no package ``__init__`` imports: they bring a library along (the Docker SDK,
pynetdicom)."""

STATE = """
import gc, json, logging, sys, warnings
import pydicom.config as config
from pydicom.pixels.decoders.base import LOGGER as decoders

def state():
    return {
        "reading": config.settings.reading_validation_mode,
        "writing": config.settings.writing_validation_mode,
        "gc": gc.isenabled(),
        "root handlers": len(logging.getLogger().handlers),
        "root level": logging.getLogger().level,
        "pydicom level": logging.getLogger("pydicom").level,
        "decoder filters": len(decoders.filters),
        "warnings": len(warnings.filters),
        "recursion": sys.getrecursionlimit(),
        "int digits": sys.get_int_max_str_digits(),
    }

before = state()
for name in sys.argv[1:]:
    __import__(name)
print(json.dumps([before, state()]))
"""


def test_importing_every_package_changes_no_global_state() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STATE, *PACKAGES, *MODULES_IMPORTED_WHERE_USED],
        env=parser_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    before, after = json.loads(done.stdout)
    assert after == before


@pytest.mark.parametrize("name", PACKAGES)
def test_each_package_exports_what_its_all_names(name: str) -> None:
    package = importlib.import_module(name)
    assert package.__all__, f"{name} names no public API"
    for exported in package.__all__:
        assert hasattr(package, exported) or importlib.util.find_spec(f"{name}.{exported}")


@pytest.mark.parametrize(
    "old",
    [
        "dicom_parser",
        "series_selector",
        "series_pipeline",
        "operator_common",
        "fidelity",
        "sample_studies",
    ],
)
def test_no_generic_top_level_names(old: str) -> None:
    assert importlib.util.find_spec(old) is None


ALLOWED = {
    "common": {"common"},
    "parser": {"common", "parser"},
    "selector": {"common", "selector"},
    "pipeline": {"common", "pipeline"},
    "receiver": {"common", "pipeline", "receiver"},
    "report": {"common", "report"},
}
"""What each package may import of the others (docs/architecture.md)."""


@pytest.mark.parametrize("package", list(ALLOWED))
def test_packages_import_only_what_the_architecture_allows(package: str) -> None:
    folder = REPOSITORY / "operators" / "series_selection" / package
    for module in folder.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                assert not name.startswith("series_selection_tools"), f"{module.name}: {name}"
                parts = name.split(".")
                if parts[0] == "series_selection" and len(parts) > 1:
                    assert parts[1] in ALLOWED[package], f"{module.name} imports {name}"


SCRIPTS = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_every_command_says_its_version(script: str) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / script), "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{script} {metadata.version('dicom-series-selection')}"


def _imported(module: Path) -> set[str]:
    """Every name ``module`` imports, anywhere in it (``from a import b``: ``a`` and ``a.b``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _libraries_reached(start: str) -> set[str]:
    """The top-level names of the libraries that the modules ``start`` reaches import."""
    operators = REPOSITORY / "operators"
    seen: set[str] = set()
    libraries: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        path = operators.joinpath(*name.split("."))
        module = path.with_suffix(".py")  # selector/rules.py beside its data folder rules/
        if not module.is_file():
            module = path / "__init__.py"
        if name in seen or not module.is_file():
            continue
        seen.add(name)
        for imported in _imported(module):
            top = imported.partition(".")[0]
            if top == "series_selection":
                todo.append(imported)
            elif top not in sys.stdlib_module_names and top != "__future__":
                libraries.add(top)
    return libraries


def _declared(extras: list[str]) -> set[str]:
    """The distributions the core and ``extras`` (with the extras they name) install directly."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    names = {canonicalize_name(Requirement(text).name) for text in project["dependencies"]}
    todo, done = list(extras), set()
    while todo:
        current = todo.pop()
        done.add(current)
        for requirement in map(Requirement, project["optional-dependencies"][current]):
            if canonicalize_name(requirement.name) == DISTRIBUTION:
                todo.extend(requirement.extras - done)
            else:
                names.add(canonicalize_name(requirement.name))
    return names


DISTRIBUTION = "dicom-series-selection"


@pytest.mark.parametrize(
    ("package", "extra"),
    [
        ("parser", "parser"),
        ("selector", "selector"),
        ("report", "report"),
        ("pipeline", "pipeline"),
        ("receiver", "receiver"),
        ("pipeline.docker_engine", "pipeline,docker"),
    ],
)
def test_each_command_imports_only_libraries_its_extra_installs(package: str, extra: str) -> None:
    """Each image installs its operator's extra only: a library missing from it breaks the image.
    The Docker SDK is the docker extra's, imported only for ``--engine docker``."""
    start = f"series_selection.{package}" + ("" if "." in package else ".cli")
    providers = metadata.packages_distributions()
    extras = extra.split(",")
    declared = _declared(extras)
    for library in _libraries_reached(start) - ({"docker"} if "docker" not in extras else set()):
        distributions = {canonicalize_name(name) for name in providers.get(library, [library])}
        assert distributions & declared, f"{start} imports {library}, not in [{extra}]"
