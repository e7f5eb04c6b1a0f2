"""``dicom-receiver``: take studies over DICOM (C-STORE), run the pipeline on each one.

    dicom-receiver --config receiver.yaml [--port N] [--spool DIR] [--output DIR]
    dicom-receiver status --output DIR [--json]

Settings: defaults < the configuration file < environment variables < flags.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Any

from series_selection.common.cli import add_version, run_command
from series_selection.common.errors import InputError
from series_selection.common.logs import LOG_OPTIONS
from series_selection.common.settings import Option, add_options
from series_selection.pipeline.runner import Engine, LocalEngine
from series_selection.receiver.config import DEFAULT_HOST, DEFAULT_PORT, load_config
from series_selection.receiver.jobs import Plan, plan_for
from series_selection.receiver.ledger import LEDGER_FILE, Job, Ledger

log = logging.getLogger(__name__)

ENGINES = ("local", "docker")
DEFAULT_SPOOL = Path("spool")
DEFAULT_OUTPUT = Path("output")

OPTIONS = (
    Option("--config", "DICOM_RECEIVER_CONFIG", None, "configuration file (YAML)"),
    Option(
        "--port", "DICOM_RECEIVER_PORT", None, f"TCP port (config, else {DEFAULT_PORT})", type=int
    ),
    Option("--host", "DICOM_RECEIVER_HOST", None, f"address to listen on (else {DEFAULT_HOST})"),
    Option(
        "--spool",
        "DICOM_RECEIVER_SPOOL",
        None,
        f"folder for received instances (config, else ./{DEFAULT_SPOOL})",
    ),
    Option(
        "--output",
        "DICOM_RECEIVER_OUTPUT",
        None,
        f"folder for the ledger and OUTPUT/jobs/<job id>/ (config, else ./{DEFAULT_OUTPUT})",
    ),
    Option(
        "--engine",
        "DICOM_RECEIVER_ENGINE",
        None,
        "local: operators as processes here; docker: one container each (config, else local)",
        choices=ENGINES,
    ),
    *LOG_OPTIONS,
)
STATUS_OPTIONS = (
    Option(
        "--output",
        "DICOM_RECEIVER_OUTPUT",
        str(DEFAULT_OUTPUT),
        "the receiver's output folder (holds the ledger)",
    ),
    *LOG_OPTIONS,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-receiver",
        description="Receive DICOM instances over the network (C-STORE) and run the pipeline "
        "on each study. 'dicom-receiver status --output DIR' prints the job ledger.",
    )
    add_options(parser, OPTIONS)
    add_version(parser)
    return parser


def build_status_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dicom-receiver status", description="Print the receiver's job ledger."
    )
    add_options(parser, STATUS_OPTIONS)
    parser.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    return parser


def main(args: list[str] | None = None) -> int:
    """Run the receiver (or ``status``); returns the process exit code."""
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] == "status":
        return run_command(
            build_status_parser(),
            argv[1:],
            STATUS_OPTIONS,
            lambda arguments, settings: print_status(
                Path(settings["output"]), as_json=arguments.json
            ),
        )
    return run_command(build_parser(), argv, OPTIONS, _serve)


def _serve(arguments: argparse.Namespace, settings: dict[str, Any]) -> int:
    _quiet_network_library(settings["log_level"])
    return serve(settings)


def _quiet_network_library(level: str) -> None:
    """pynetdicom logs every message at the info level: our association lines say enough."""
    from pynetdicom import _config

    _config.LOG_HANDLER_LEVEL = "none" if level != "DEBUG" else "standard"
    logging.getLogger("pynetdicom").setLevel(logging.DEBUG if level == "DEBUG" else logging.ERROR)


def serve(settings: dict[str, Any]) -> int:
    """Start the receiver with ``settings`` and serve until SIGTERM or SIGINT."""
    if not settings["config"]:
        raise InputError("give the configuration file: --config FILE or DICOM_RECEIVER_CONFIG")
    config = load_config(Path(settings["config"]))
    port = settings["port"] or config.port or DEFAULT_PORT
    if not 0 < port < 65536:
        raise InputError(f"port {port} is not between 1 and 65535")
    host = settings["host"] or config.host or DEFAULT_HOST
    spool = Path(settings["spool"]) if settings["spool"] else config.spool or DEFAULT_SPOOL
    output = Path(settings["output"]) if settings["output"] else config.output or DEFAULT_OUTPUT
    engine_name = settings["engine"] or config.engine or "local"
    environment = {"LOG_LEVEL": settings["log_level"], "LOG_FORMAT": settings["log_format"]}
    plans: dict[str, Plan] = {
        title: plan_for(called, environment) for title, called in config.ae_titles.items()
    }
    from series_selection.receiver.service import Receiver

    receiver = Receiver(
        config, plans, spool, output, lambda: _engine(engine_name), host=host, port=port
    )
    receiver.start()

    def stop(signum: int, frame: FrameType | None) -> None:
        log.info("stopping (signal %d): running jobs finish, open groups resume at restart", signum)
        receiver.request_stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    receiver.wait()
    receiver.stop()
    log.info("stopped")
    return 0


def _engine(name: str) -> Engine:
    if name == "docker":
        from series_selection.pipeline.docker_engine import DockerEngine

        return DockerEngine()
    return LocalEngine()


COLUMNS = ("id", "called_ae", "state", "instances", "bytes", "created", "finished", "message")


def print_status(output: Path, as_json: bool) -> int:
    """Print every job of the ledger in ``output``, oldest first."""
    ledger = Ledger(output / LEDGER_FILE, read_only=True)
    try:
        jobs = ledger.jobs()
    finally:
        ledger.close()
    if as_json:
        json.dump({"jobs": [j.as_json() for j in jobs]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    sys.stdout.write(status_table(jobs))
    return 0


def status_table(jobs: list[Job]) -> str:
    """The jobs as an aligned text table, one line each (values cut at 60 characters)."""
    rows = [
        [str(j.as_json()[c] if j.as_json()[c] is not None else "-") for c in COLUMNS] for j in jobs
    ]
    rows = [[_cell(v) for v in row] for row in rows]
    header = [c.upper() for c in COLUMNS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    ]
    if not jobs:
        lines.append("(no jobs)")
    return "\n".join(lines) + "\n"


def _cell(value: str) -> str:
    value = value.translate({c: " " for c in range(0x20)})
    return value if len(value) <= 60 else value[:57] + "..."
