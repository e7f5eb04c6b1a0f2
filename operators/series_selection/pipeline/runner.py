"""Running a pipeline: folder wiring, dependency order, logs, exit codes and the run summary.

Under the run's output folder each operator output gets a folder: ``<operator>/`` for an unnamed
output, ``<operator>/<name>/`` for a named one. Beside them: ``<operator>.log`` (everything the
operator printed) and ``pipeline-run.json`` (the run summary, schema ``pipeline-run``).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

from series_selection.common.errors import InputError, OperatorError, OutputError
from series_selection.common.folders import check_apart, withdraw
from series_selection.common.jsonio import read_json, write_json
from series_selection.common.models import SELECTED_IMAGES_FILE, SelectedImages
from series_selection.common.processes import dying_with_this_process
from series_selection.pipeline.definition import Operator, Output, Pipeline

log = logging.getLogger(__name__)

SUMMARY_FILE = "pipeline-run.json"
REPORT_PAGE = "report.html"
CHOICES_NAMED = 3
"""Series named per selection in the closing line; the rest are counted."""


@dataclass(frozen=True)
class Mount:
    """A host folder seen by an operator at a container path."""

    source: Path
    target: str
    read_only: bool


class Engine(Protocol):
    """Runs one operator to completion and returns its exit code."""

    name: str

    def check(self, operator: Operator) -> None:
        """Raise ``InputError`` if ``operator`` cannot run here; called before anything runs."""

    def run(
        self,
        operator: Operator,
        mounts: list[Mount],
        environment: dict[str, str],
        log_to: IO[bytes],
    ) -> int: ...


def output_folder(run_output: Path, operator: str, output: Output) -> Path:
    """Where ``output`` of ``operator`` lives under the run's output folder."""
    folder = run_output / operator
    return folder if output.name is None else folder / output.name


def outputs_holding(pipeline: Pipeline, run_output: Path, file_name: str) -> list[Path]:
    """The files named ``file_name`` that the operators' outputs hold, in pipeline order."""
    return [
        found
        for operator in pipeline.operators
        for output in operator.outputs
        if (found := output_folder(run_output, operator.name, output) / file_name).is_file()
    ]


def describe_outcome(pipeline: Pipeline, run_output: Path) -> str:
    """What a run chose, in one line: the series each selection chose (from every
    ``selected-images.json`` the operators wrote) and the report pages."""
    parts = []
    for found in outputs_holding(pipeline, run_output, SELECTED_IMAGES_FILE):
        selected = SelectedImages.from_json(read_json(found, "selected-images"))
        for selection in selected.selections:
            labels = [f"{s.label} of study {s.study_instance_uid}" for s in selection.series]
            more = len(labels) - CHOICES_NAMED
            shown = ", ".join(labels[:CHOICES_NAMED]) + (f" and {more} more" if more > 0 else "")
            parts.append(f"selection {selection.name!r} chose {shown or 'nothing'}")
    if not parts:
        parts.append(f"no {SELECTED_IMAGES_FILE}")
    parts += [f"report {page}" for page in outputs_holding(pipeline, run_output, REPORT_PAGE)]
    return "; ".join(parts)


def mounts_of(
    pipeline: Pipeline, operator: Operator, job_input: Path, run_output: Path
) -> list[Mount]:
    """The folders ``operator`` sees: its inputs read-only, its outputs writable."""
    by_name = {op.name: op for op in pipeline.operators}
    mounts = []
    for entry in operator.inputs:
        if entry.source is None:
            source = job_input
        else:
            upstream = by_name[entry.source].output(entry.output_name)
            assert upstream is not None  # the definition's wiring was checked when loaded
            source = output_folder(run_output, entry.source, upstream)
        mounts.append(Mount(source, entry.path, read_only=True))
    mounts += [
        Mount(output_folder(run_output, operator.name, o), o.path, read_only=False)
        for o in operator.outputs
    ]
    return mounts


def run_pipeline(
    pipeline: Pipeline,
    engine: Engine,
    job_input: Path,
    run_output: Path,
    environment: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Run every operator in dependency order; stop at the first failure.

    ``environment`` is added to each operator's ``variables``. Returns the run summary, which is
    also written to ``pipeline-run.json``; a failed operator raises ``OperatorError``.
    """
    if not job_input.is_dir():
        raise InputError(f"input folder {job_input} does not exist or is not a folder")
    check_apart(job_input, run_output)
    job_input, run_output = job_input.resolve(), run_output.resolve()
    for operator in pipeline.operators:
        engine.check(operator)
    _clear_previous_run(pipeline, run_output)
    started = _now()
    reports: list[dict[str, Any]] = []
    failure: OperatorError | None = None
    for operator in pipeline.operators:
        mounts = mounts_of(pipeline, operator, job_input, run_output)
        if failure is not None:
            reports.append(_report(operator, mounts, run_output, "skipped"))
            continue
        for mount in mounts:
            if not mount.read_only:
                mount.source.mkdir(parents=True, exist_ok=True)
        log_file = run_output / f"{operator.name}.log"
        log.info("running %s (%s engine)", operator.name, engine.name)
        start = time.monotonic()
        with log_file.open("wb") as log_to:
            exit_code = engine.run(
                operator, mounts, {**operator.variables, **(environment or {})}, log_to
            )
        seconds = round(time.monotonic() - start, 3)
        status = "succeeded" if exit_code == 0 else "failed"
        reports.append(
            _report(operator, mounts, run_output, status, exit_code, seconds, log_file.name)
        )
        log.info("%s %s in %.1f s (exit code %d)", operator.name, status, seconds, exit_code)
        if exit_code != 0:
            failure = OperatorError(operator.name, exit_code)
    summary = {
        "pipeline": pipeline.name,
        "engine": engine.name,
        "status": "failed" if failure else "succeeded",
        "started": started,
        "finished": _now(),
        "input": str(job_input),
        "operators": reports,
    }
    write_json(run_output / SUMMARY_FILE, summary, "pipeline-run")
    if failure is not None:
        raise failure
    return summary


def _clear_previous_run(pipeline: Pipeline, run_output: Path) -> None:
    """Withdraw what operators published in ``run_output`` in an earlier run, and our logs, so
    that no stale output survives a failed run. Other files are left alone."""
    folders = [
        output_folder(run_output, op.name, o) for op in pipeline.operators for o in op.outputs
    ]
    logs = [run_output / f"{op.name}.log" for op in pipeline.operators]
    for path in [*folders, *logs]:
        for inside in (path, *path.parents):
            if inside == run_output:
                break
            if inside.is_symlink():
                raise OutputError(
                    f"{inside} is a symbolic link: outputs are never written through one"
                )
    try:
        run_output.mkdir(parents=True, exist_ok=True)
        for log_file in logs:
            log_file.unlink(missing_ok=True)
    except OSError as error:
        raise OutputError(f"cannot clear the previous run in {run_output}: {error}") from error
    for folder in folders:
        withdraw(folder)


def _report(
    operator: Operator,
    mounts: list[Mount],
    run_output: Path,
    status: str,
    exit_code: int | None = None,
    seconds: float | None = None,
    log_file: str | None = None,
) -> dict[str, Any]:
    return {
        "name": operator.name,
        "status": status,
        "exit_code": exit_code,
        "seconds": seconds,
        "log": log_file,
        "mounts": [
            {
                "path": m.target,
                "folder": str(_relative_if_inside(m.source, run_output)),
                "read_only": m.read_only,
            }
            for m in mounts
        ],
    }


def _relative_if_inside(folder: Path, root: Path) -> Path:
    return folder.relative_to(root) if folder.is_relative_to(root) else folder


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def copy_lines(lines: Iterable[bytes], log_to: IO[bytes]) -> None:
    """Write an operator's output to its log file and, as it comes, to our standard error."""
    for line in lines:
        log_to.write(line)
        sys.stderr.buffer.write(line)
        sys.stderr.buffer.flush()


class LocalEngine:
    """Runs each operator's ``container.command`` as a process on this machine.

    Container paths are mapped to host folders: a variable value or a command argument that is a
    mounted container path (or lies under one) is rewritten to the host folder. The command's
    program is looked up beside the running Python first (where pip installs console scripts),
    then on ``PATH``.
    """

    name = "local"

    def check(self, operator: Operator) -> None:
        self._command(operator)

    def _command(self, operator: Operator) -> list[str]:
        """The operator's command, its program found on this machine."""
        if operator.container.command is None:
            raise InputError(
                f"operator {operator.name!r} has no container.command: "
                "the local engine needs to know which program to run"
            )
        program, *arguments = operator.container.command
        return [_find_program(program), *arguments]

    def run(
        self,
        operator: Operator,
        mounts: list[Mount],
        environment: dict[str, str],
        log_to: IO[bytes],
    ) -> int:
        program, *arguments = self._command(operator)
        arguments = [_to_host(a, mounts) for a in arguments]
        env = {**os.environ, **{k: _to_host(v, mounts) for k, v in environment.items()}}
        process = subprocess.Popen(
            [program, *arguments],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=dying_with_this_process(),  # never an orphan writing into the output
        )
        assert process.stdout is not None
        with process:
            copy_lines(process.stdout, log_to)
        return process.returncode


def _to_host(value: str, mounts: list[Mount]) -> str:
    for mount in sorted(mounts, key=lambda m: len(m.target), reverse=True):
        target = mount.target.rstrip("/")
        if value == target or value.startswith(target + "/"):
            return str(mount.source) + value[len(target) :]
    return value


def _find_program(program: str) -> str:
    beside_python = Path(sys.executable).parent / program
    if os.access(beside_python, os.X_OK) and beside_python.is_file():
        return str(beside_python)
    found = shutil.which(program)
    if found is None:
        raise InputError(
            f"program {program!r} not found beside {sys.executable} or on PATH "
            "(install the project: pip install .)"
        )
    return found
