"""Running jobs: the pipeline on a group's instances, a bounded pool of threads per called AE
title, each job's outcome in the ledger and one log line."""

from __future__ import annotations

import base64
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from series_selection.common.errors import InputError, PipelineError
from series_selection.common.models import RULES_BASE64_ENV
from series_selection.pipeline.definition import Pipeline, load_pipeline
from series_selection.pipeline.runner import Engine, describe_outcome, run_pipeline
from series_selection.receiver.config import CalledAE
from series_selection.receiver.ledger import Ledger
from series_selection.receiver.spool import Spool

log = logging.getLogger(__name__)

JOBS = "jobs"


@dataclass(frozen=True)
class Plan:
    """What a called AE title's jobs run: the pipeline and the operators' environment."""

    pipeline: Pipeline
    environment: dict[str, str]


def plan_for(called: CalledAE, environment: dict[str, str]) -> Plan:
    """Load the called AE title's pipeline and rules now, so that a mistake stops the start."""
    pipeline = load_pipeline(called.pipeline)
    variables = dict(environment)
    if called.rules is not None:
        try:
            rules = called.rules.read_bytes()
        except OSError as error:
            raise InputError(
                f"AE title {called.title!r}: cannot read rules file {called.rules}: "
                f"{error.strerror}"
            ) from error
        variables[RULES_BASE64_ENV] = base64.b64encode(rules).decode("ascii")
    return Plan(pipeline, variables)


def job_folder(output: Path, job_id: str) -> Path:
    return output / JOBS / job_id


class JobRunner:
    """Runs queued jobs, at most ``max_jobs`` of one called AE title at once."""

    def __init__(
        self,
        plans: dict[str, Plan],
        called: dict[str, CalledAE],
        ledger: Ledger,
        spool: Spool,
        output: Path,
        engine: Callable[[], Engine],
    ) -> None:
        self._plans = plans
        self._ledger = ledger
        self._spool = spool
        self._output = output
        self._engine = engine()
        self._queues: dict[str, queue.Queue[str | None]] = {t: queue.Queue() for t in called}
        self._threads = [
            threading.Thread(target=self._work, args=(title,), name=f"job-{title}-{n}", daemon=True)
            for title, entry in called.items()
            for n in range(entry.max_jobs)
        ]
        self._idle = threading.Condition()
        self._busy = 0

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, called_ae: str, job_id: str) -> None:
        with self._idle:
            self._busy += 1
        self._queues[called_ae].put(job_id)

    def stop(self, timeout: float | None = None) -> None:
        """Let running jobs finish (queued ones stay queued in the ledger), then stop."""
        for title, jobs in self._queues.items():
            while True:
                try:
                    dropped = jobs.get_nowait()
                except queue.Empty:
                    break
                if dropped is not None:
                    with self._idle:
                        self._busy -= 1
            for thread in self._threads:
                if thread.name.startswith(f"job-{title}-"):
                    jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _work(self, called_ae: str) -> None:
        jobs = self._queues[called_ae]
        while True:
            job_id = jobs.get()
            if job_id is None:
                return
            try:
                self._run(called_ae, job_id)
            except Exception as error:  # the ledger itself failed: say so, keep serving
                log.error("job %s: %s: %s", job_id, type(error).__name__, error)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _run(self, called_ae: str, job_id: str) -> None:
        plan = self._plans[called_ae]
        folder = job_folder(self._output, job_id)
        files = len(self._spool.files(job_id))
        self._ledger.set_state(job_id, "running", time.time())
        start = time.monotonic()
        try:
            run_pipeline(
                plan.pipeline,
                self._engine,
                self._spool.group_folder(job_id),
                folder,
                plan.environment,
            )
            chosen = describe_outcome(plan.pipeline, folder)
        except PipelineError as error:
            self._ledger.set_state(job_id, "failed", time.time(), error.message)
            log.error(
                "job %s (%s, %d instances) failed after %.1f s: %s",
                job_id,
                called_ae,
                files,
                time.monotonic() - start,
                error.message,
            )
            return
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            self._ledger.set_state(job_id, "failed", time.time(), message)
            log.error("job %s (%s) failed: %s", job_id, called_ae, message)
            return
        self._ledger.set_state(job_id, "done", time.time(), chosen)
        log.info(
            "job %s (%s, %d instances) done in %.1f s: %s; results in %s",
            job_id,
            called_ae,
            files,
            time.monotonic() - start,
            chosen,
            folder,
        )

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no job is queued or running (for tests and shutdown)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout)
