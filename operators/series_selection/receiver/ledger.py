"""The job ledger: every group and job with its state and files, in SQLite (``ledger.sqlite``
in the output folder).

A group collects the instances of one study (or series) sent to one called AE title; when its
timer runs out it becomes a job with the same id. States: ``receiving`` -> ``queued`` ->
``running`` -> ``done`` or ``failed``. One connection serves every thread, behind a lock; the
database is in WAL mode and each change is committed, and synced but for a file's row, before
the call returns.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from series_selection.common.errors import InputError, OutputError

LEDGER_FILE = "ledger.sqlite"
State = Literal["receiving", "queued", "running", "done", "failed"]
STATES: tuple[State, ...] = ("receiving", "queued", "running", "done", "failed")
OPEN_STATES: tuple[State, ...] = ("receiving", "queued", "running")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    called_ae TEXT NOT NULL,
    grouping TEXT NOT NULL,
    group_key TEXT NOT NULL,
    state TEXT NOT NULL,
    created REAL NOT NULL,
    last_instance REAL NOT NULL,
    started REAL,
    finished REAL,
    runs INTEGER NOT NULL DEFAULT 0,
    message TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS files (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    name TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    calling_ae TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (job_id, name)
);
CREATE INDEX IF NOT EXISTS files_instance ON files (job_id, sop_instance_uid);
"""


@dataclass(frozen=True)
class Job:
    """One row of the ledger, with its files counted."""

    id: str
    called_ae: str
    grouping: str
    group_key: str
    state: State
    created: float
    last_instance: float
    started: float | None
    finished: float | None
    runs: int
    message: str | None
    instances: int
    bytes: int

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "called_ae": self.called_ae,
            "grouping": self.grouping,
            "group_key": self.group_key,
            "state": self.state,
            "created": _iso(self.created),
            "last_instance": _iso(self.last_instance),
            "started": _iso(self.started),
            "finished": _iso(self.finished),
            "runs": self.runs,
            "instances": self.instances,
            "bytes": self.bytes,
            "message": self.message,
        }


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Ledger:
    """The ledger database; every method is safe to call from any thread."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            if read_only:
                if not path.is_file():
                    raise InputError(f"no ledger at {path}: has the receiver run with it?")
                self._db = sqlite3.connect(
                    f"file:{path}?mode=ro", uri=True, check_same_thread=False
                )
            else:
                self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(SCHEMA)
            self._db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as error:
            raise OutputError(f"cannot open the ledger {path}: {error}") from error

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``durable``: synced to disk when it returns (with it, every
        transaction before it). Without, it survives the process's death but perhaps not the
        machine's."""
        with self._lock:
            try:
                self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def create_job(self, job_id: str, called_ae: str, grouping: str, key: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, called_ae, grouping, group_key, state, created,"
                " last_instance) VALUES (?, ?, ?, ?, 'receiving', ?, ?)",
                (job_id, called_ae, grouping, key, now, now),
            )

    def add_file(
        self,
        job_id: str,
        name: str,
        sop_instance_uid: str,
        sop_class_uid: str,
        series_instance_uid: str,
        size: int,
        calling_ae: str,
        now: float,
    ) -> list[str]:
        """Record a file of the job; returns the names of other files of the job with the same
        SOP Instance UID (different bytes: both are kept). A file already recorded is not
        recorded again.

        Not synced: the file itself is, and a restart records the files of an open group that
        the ledger lacks (``Receiver._resume``); the next synced change (the group's closing)
        makes the rows durable."""
        with self._transaction(durable=False) as db:
            others = [
                row[0]
                for row in db.execute(
                    "SELECT name FROM files WHERE job_id = ? AND sop_instance_uid = ?"
                    " AND name != ?",
                    (job_id, sop_instance_uid, name),
                )
            ]
            db.execute(
                "INSERT OR IGNORE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    name,
                    sop_instance_uid,
                    sop_class_uid,
                    series_instance_uid,
                    size,
                    calling_ae,
                    now,
                ),
            )
            db.execute("UPDATE jobs SET last_instance = ? WHERE id = ?", (now, job_id))
        return others

    def set_state(self, job_id: str, state: State, now: float, message: str | None = None) -> None:
        with self._transaction() as db:
            if state == "running":
                db.execute(
                    "UPDATE jobs SET state = ?, started = ?, finished = NULL, runs = runs + 1,"
                    " message = NULL WHERE id = ?",
                    (state, now, job_id),
                )
            elif state in ("done", "failed"):
                db.execute(
                    "UPDATE jobs SET state = ?, finished = ?, message = ? WHERE id = ?",
                    (state, now, message, job_id),
                )
            else:
                db.execute("UPDATE jobs SET state = ? WHERE id = ?", (state, job_id))

    def file_names(self, job_id: str) -> set[str]:
        with self._lock:
            rows = self._db.execute("SELECT name FROM files WHERE job_id = ?", (job_id,))
            return {row[0] for row in rows}

    def jobs(self, states: tuple[str, ...] = STATES) -> list[Job]:
        """The jobs in ``states``, oldest first, with their file counts."""
        marks = ", ".join("?" for _ in states)
        with self._lock:
            rows = self._db.execute(
                "SELECT j.id, j.called_ae, j.grouping, j.group_key, j.state, j.created,"
                " j.last_instance, j.started, j.finished, j.runs, j.message,"
                " COUNT(f.name), COALESCE(SUM(f.bytes), 0)"
                f" FROM jobs j LEFT JOIN files f ON f.job_id = j.id WHERE j.state IN ({marks})"
                " GROUP BY j.id ORDER BY j.created, j.id",
                states,
            ).fetchall()
        return [Job(*row) for row in rows]
