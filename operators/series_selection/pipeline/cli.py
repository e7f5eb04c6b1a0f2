"""``series-pipeline``: run the pipeline locally or on Docker, or export it for Argo Workflows."""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import subprocess
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml

from series_selection.common.cli import add_version, run_command
from series_selection.common.errors import InputError, OutputError, RulesError
from series_selection.common.logs import LOG_OPTIONS
from series_selection.common.models import (
    EXPLAIN_ENV,
    FORMAT_ENV,
    RULES_BASE64_ENV,
    VOLUME_FORMATS,
)
from series_selection.common.settings import add_options
from series_selection.pipeline.argo import workflow_template
from series_selection.pipeline.definition import Pipeline, load_pipeline
from series_selection.pipeline.runner import (
    REPORT_PAGE,
    Engine,
    LocalEngine,
    describe_outcome,
    outputs_holding,
    run_pipeline,
)

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="series-pipeline", description=__doc__)
    add_version(parser)
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the pipeline on a folder of DICOM files")
    run.add_argument("--input", type=Path, required=True, help="the job's input folder")
    run.add_argument("--output", type=Path, required=True, help="where the outputs go")
    run.add_argument(
        "--rules",
        type=Path,
        help=f"selection rules for the selector (passed as {RULES_BASE64_ENV})",
    )
    run.add_argument(
        "--format",
        choices=VOLUME_FORMATS,
        help=f"the parser's volume format (passed as {FORMAT_ENV}; default: the definition's)",
    )
    run.add_argument(
        "--explain",
        action="store_true",
        help=f"the selector prints its table of every series and condition ({EXPLAIN_ENV}=1)",
    )
    run.add_argument(
        "--engine",
        choices=("local", "docker"),
        default="local",
        help="local: each operator's command as a process (default); docker: one container each",
    )
    _add_pipeline_option(run)
    add_options(run, LOG_OPTIONS)

    export = commands.add_parser("export", help="write the pipeline for an orchestrator")
    export.add_argument("target", choices=("argo",), help="argo: an Argo WorkflowTemplate")
    export.add_argument("--output", type=Path, help="file to write (default: standard output)")
    _add_pipeline_option(export)
    add_options(export, LOG_OPTIONS)
    return parser


def _add_pipeline_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--pipeline", type=Path, help="pipeline definition (default: the shipped pipeline.yaml)"
    )
    parser.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a value for a parameter the definition declares (repeat for several)",
    )


def _pipeline(arguments: argparse.Namespace) -> Pipeline:
    """The definition the arguments name, its parameters set from ``--parameter``."""
    values = {}
    for given in arguments.parameter:
        name, equals, value = given.partition("=")
        if not equals or not name:
            raise InputError(f"--parameter {given!r}: give NAME=VALUE")
        values[name] = value
    return load_pipeline(arguments.pipeline, values)


def main(argv: list[str] | None = None) -> int:
    """Run a pipeline or export it; returns the process exit code."""
    return run_command(build_parser(), argv, LOG_OPTIONS, _command)


def _command(arguments: argparse.Namespace, settings: dict[str, Any]) -> int:
    if arguments.command == "run":
        return _run(arguments, settings["log_level"])
    return _export(arguments)


def _run(arguments: argparse.Namespace, log_level: str) -> int:
    pipeline = _pipeline(arguments)
    environment = {"LOG_LEVEL": log_level}  # the operators log as the pipeline does
    if arguments.format is not None:
        environment[FORMAT_ENV] = arguments.format
    if arguments.explain:
        environment[EXPLAIN_ENV] = "1"
    if arguments.rules is not None:
        check_rules(arguments.rules)
        try:
            rules = arguments.rules.read_bytes()
        except OSError as error:
            raise InputError(f"cannot read rules file {arguments.rules}: {error}") from error
        environment[RULES_BASE64_ENV] = base64.b64encode(rules).decode("ascii")
    engine: Engine
    if arguments.engine == "docker":
        from series_selection.pipeline.docker_engine import DockerEngine

        engine = DockerEngine()
    else:
        engine = LocalEngine()
    run_pipeline(pipeline, engine, arguments.input, arguments.output, environment)
    log.info(
        "pipeline %s succeeded: %s; outputs in %s",
        pipeline.name,
        describe_outcome(pipeline, arguments.output),
        arguments.output,
    )
    for page in outputs_holding(pipeline, arguments.output, REPORT_PAGE):
        print(page, flush=True)
    return 0


def check_rules(rules: Path) -> None:
    """Have the selector check ``rules`` (``series-selector --check``) before any operator runs,
    so a mistake in them is found in a second, not after the parser; ``RulesError`` with the
    selector's own words."""
    done = subprocess.run(
        [sys.executable, "-m", "series_selection.selector", "--check", str(rules)],
        env={**os.environ, "LOG_FORMAT": "json"},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return
    records = []
    for line in done.stderr.splitlines():
        with suppress(ValueError):
            records.append(json.loads(line))
    errors = [r["message"] for r in records if isinstance(r, dict) and r.get("level") == "ERROR"]
    raise RulesError(errors[-1] if errors else f"rules file {rules} does not check out")


def _export(arguments: argparse.Namespace) -> int:
    manifest = workflow_template(_pipeline(arguments))
    text = yaml.safe_dump(manifest, sort_keys=False)
    if arguments.output is None:
        sys.stdout.write(text)
        return 0
    try:
        arguments.output.write_text(text, encoding="utf-8")
    except OSError as error:
        raise OutputError(f"cannot write {arguments.output}: {error}") from error
    return 0
