"""The receiver: a DICOM C-ECHO and C-STORE SCP (pynetdicom) that spools what it receives,
groups it, and hands each group to the job runner when its timer runs out.

Order of a C-STORE: the data set is decoded whole and checked (``spool.check_instance``), its
group is found or opened (ledger row and folder first), the file is written durably, recorded
in the ledger, and only then is success answered. Anything that goes wrong on the way is a
failure status and one log line, never success.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from pydicom.uid import (
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLETransferSyntaxes,
    UncompressedTransferSyntaxes,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, evt
from pynetdicom.events import Event, EventHandlerType
from pynetdicom.pdu import P_DATA_TF
from pynetdicom.presentation import AllStoragePresentationContexts
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from series_selection.common.errors import InstanceRefusedError, OutputError
from series_selection.common.folders import check_apart
from series_selection.pipeline.runner import Engine
from series_selection.receiver.config import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    CalledAE,
    ReceiverConfig,
)
from series_selection.receiver.connections import LengthCheckedServer
from series_selection.receiver.groups import Groups, OpenGroup
from series_selection.receiver.jobs import JobRunner, Plan
from series_selection.receiver.ledger import LEDGER_FILE, Ledger
from series_selection.receiver.spool import (
    CANNOT_UNDERSTAND,
    PROCESSING_FAILURE,
    Instance,
    Spool,
    check_data_set,
    check_instance,
    file_meta,
    file_name,
)

log = logging.getLogger(__name__)

TRANSFER_SYNTAXES = [
    *UncompressedTransferSyntaxes,
    *JPEGTransferSyntaxes,
    *JPEGLSTransferSyntaxes,
    *JPEG2000TransferSyntaxes,
    *RLETransferSyntaxes,
]
"""What the parser decodes: the uncompressed syntaxes (also deflated and big endian) and the
compressed ones pydicom decodes with the pylibjpeg plugins."""

SUCCESS = 0x0000
ACSE_TIMEOUT = 10
"""Seconds to wait for an association request after the connection, or for a release."""
NETWORK_TIMEOUT = 60
"""Seconds without a message on an association, or in the middle of one, before it is ended."""
MAX_PDU_BYTES = 1 << 20
"""The largest PDU we take (announced to the peer): what is held of a data set beyond
``max_instance_bytes`` before the association is aborted."""
TICK_SECONDS = 0.2
"""How often the timer looks for due groups at most (it sleeps until the next deadline)."""

# A-ASSOCIATE-RJ (PS3.8 9.3.4): result, source, diagnostic
REJECT_CALLED = (0x01, 0x01, 0x07)  # rejected permanent, service user, called AE not recognised
REJECT_CALLING = (0x01, 0x01, 0x03)  # ... calling AE title not recognised
REJECT_NO_REASON = (0x01, 0x01, 0x01)  # ... no reason given (a host not allowed)


def new_job_id() -> str:
    """A job id that sorts by time and never repeats: ``20261130-211500-1a2b3c4d``."""
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:8]


@dataclass
class Association:
    """What one association did, for its log line."""

    called: CalledAE
    calling_ae: str
    host: str
    start: float = field(default_factory=time.monotonic)
    stored: int = 0
    duplicates: int = 0
    ignored: int = 0
    failed: int = 0
    bytes: int = 0
    ending: str = "ended without release"
    receiving: int = 0
    """Bytes of the data set being received so far."""


class Receiver:
    """The SCP, the timer and the job runner, sharing the ledger and the spool."""

    def __init__(
        self,
        config: ReceiverConfig,
        plans: dict[str, Plan],
        spool_folder: Path,
        output: Path,
        engine: Callable[[], Engine],
        host: str = DEFAULT_HOST,
        port: int = DEFAULT_PORT,
    ) -> None:
        check_apart(spool_folder, output)
        self.config = config
        self.host, self.port = host, port
        self.output = output
        self.spool = Spool(spool_folder)
        try:
            self.spool.open()
            output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise OutputError(f"cannot prepare {spool_folder} and {output}: {error}") from error
        self.ledger = Ledger(output / LEDGER_FILE)
        self.groups = Groups(new_job_id)
        self.runner = JobRunner(plans, config.ae_titles, self.ledger, self.spool, output, engine)
        self._associations: dict[int, Association] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._timer = threading.Thread(target=self._tick, name="group-timer", daemon=True)
        self._server: LengthCheckedServer | None = None

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Resume what the ledger holds open, start the job runner, the timer and the SCP."""
        self._resume()
        self.runner.start()
        self._timer.start()
        ae = AE()
        ae.maximum_associations = self.config.max_associations
        ae.maximum_pdu_size = MAX_PDU_BYTES
        ae.network_timeout = NETWORK_TIMEOUT
        # A peer that connects and sends nothing, or an association request pynetdicom cannot
        # decode (an AE title with control characters), holds one of max_associations until
        # this runs out
        ae.acse_timeout = ACSE_TIMEOUT
        ae.dimse_timeout = 60
        for context in AllStoragePresentationContexts:
            assert context.abstract_syntax is not None
            ae.add_supported_context(context.abstract_syntax, TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        handlers: list[EventHandlerType] = [
            (evt.EVT_CONN_OPEN, self._on_connected),
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_REJECTED, self._on_rejected_by_limit),
            (evt.EVT_PDU_RECV, self._on_pdu),
            (evt.EVT_C_ECHO, self._on_echo),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_released),
            (evt.EVT_ABORTED, self._on_aborted),
            (evt.EVT_CONN_CLOSE, self._on_closed),
        ]
        try:
            server = ae.make_server(
                (self.host, self.port),
                evt_handlers=handlers,
                server_class=LengthCheckedServer,
                pdu_limit=MAX_PDU_BYTES,
            )
        except OSError as error:
            self.stop()
            raise OutputError(
                f"cannot listen on {self.host} port {self.port}: {error.strerror}"
            ) from error
        self._server = cast(LengthCheckedServer, server)
        self._server.serve_in_background()
        titles = ", ".join(sorted(self.config.ae_titles))
        log.info("listening on %s port %d for AE title(s) %s", self.host, self.port, titles)

    def stop(self) -> None:
        """Stop taking associations; let running jobs finish; open groups stay in the ledger."""
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self._stop.set()
        self._wake.set()
        if self._timer.is_alive():
            self._timer.join()
        self.runner.stop()
        self.ledger.close()

    def request_stop(self) -> None:
        """Ask ``wait`` to return (safe in a signal handler)."""
        self._stop.set()
        self._wake.set()

    def wait(self) -> None:
        """Block until ``stop`` (from another thread or a signal handler)."""
        while not self._stop.wait(1.0):
            pass

    def _resume(self) -> None:
        """After a restart: open groups' timers go on where they were, queued and running jobs
        run (again), done and failed jobs are left alone."""
        now_wall, now = time.time(), time.monotonic()
        resumed = rerun = 0
        for job in self.ledger.jobs(("receiving", "queued", "running")):
            called = self.config.ae_titles.get(job.called_ae)
            if called is None:
                message = f"AE title {job.called_ae!r} is no longer in the configuration"
                self.ledger.set_state(job.id, "failed", now_wall, message)
                log.error("job %s: %s", job.id, message)
                continue
            if job.state == "receiving":
                self.spool.create_group(job.id)  # a crash may have come before its folder
                self._record_unlisted_files(job.id)
                elapsed = min(max(now_wall - job.last_instance, 0.0), called.timeout)
                self.groups.resume(
                    job.id, job.called_ae, job.group_key, called.timeout, now - elapsed
                )
                resumed += 1
            else:
                self.ledger.set_state(job.id, "queued", now_wall)
                self.runner.submit(job.called_ae, job.id)
                rerun += 1
        if resumed or rerun:
            log.info("resumed %d open group(s); %d job(s) queued again", resumed, rerun)

    def _record_unlisted_files(self, job_id: str) -> None:
        """Files a crash left on disk between their rename and their ledger row: the sender
        was not told they were stored, but they are whole, and they are the job's input."""
        listed = self.ledger.file_names(job_id)
        for path in self.spool.files(job_id):
            if path.name in listed:
                continue
            try:
                data = path.read_bytes()
                instance = check_instance(data, self.config.max_instance_bytes)
            except (OSError, InstanceRefusedError) as error:
                log.warning(
                    "job %s: spool file %s is unreadable (%s): removed", job_id, path.name, error
                )
                path.unlink(missing_ok=True)
                continue
            self.ledger.add_file(
                job_id,
                path.name,
                instance.sop_instance_uid,
                instance.sop_class_uid,
                instance.series_instance_uid,
                len(data),
                "",
                time.time(),
            )

    # -- timer --------------------------------------------------------------------------------

    def _tick(self) -> None:
        while not self._stop.is_set():
            try:
                self.close_due_groups()
            except Exception as error:  # a ledger failure: say so, try again on the next tick
                log.error("closing due groups: %s: %s", type(error).__name__, error)
            deadline = self.groups.next_deadline()
            wait = TICK_SECONDS if deadline is None else deadline - time.monotonic()
            self._wake.wait(min(max(wait, 0.01), TICK_SECONDS))
            self._wake.clear()

    def close_due_groups(self) -> None:
        for group in self.groups.close_due(time.monotonic()):
            self.ledger.set_state(group.id, "queued", time.time())
            log.info(
                "group %s (%s %s) is complete: job queued",
                group.id,
                self.config.ae_titles[group.called_ae].grouping,
                group.key,
            )
            self.runner.submit(group.called_ae, group.id)

    # -- association events --------------------------------------------------------------------

    def _on_connected(self, event: Event) -> None:
        """Give the peer's socket a timeout: pynetdicom leaves it blocking, and a peer that
        stops in the middle of a PDU would hold one of max_associations until it closes."""
        connection = event.assoc.dul.socket
        assert connection is not None and connection.socket is not None
        connection.socket.settimeout(NETWORK_TIMEOUT)

    def _on_requested(self, event: Event) -> None:
        """Accept or reject the association by its called and calling AE titles and host."""
        request = event.assoc.requestor.primitive
        assert request is not None
        called_title = str(request.called_ae_title or "")
        calling = str(request.calling_ae_title or "")
        host = str(event.assoc.requestor.address)
        called = self.config.called(called_title)
        reject = None
        if called is None:
            reject, why = REJECT_CALLED, f"unknown called AE title {called_title.strip()!r}"
        elif not called.allows_calling(calling):
            reject, why = REJECT_CALLING, f"calling AE title {calling.strip()!r} is not allowed"
        elif not called.allows_host(host):
            reject, why = REJECT_NO_REASON, f"host {host} is not allowed"
        if reject is not None:
            log.warning(
                "association from %r at %s to %r rejected: %s",
                calling.strip(),
                host,
                called_title.strip(),
                why,
            )
            event.assoc.acse.send_reject(*reject)
            event.assoc.kill()
            return
        assert called is not None
        with self._lock:
            self._associations[id(event.assoc)] = Association(called, calling.strip(), host)

    def _on_rejected_by_limit(self, event: Event) -> None:
        """pynetdicom rejected an association we accepted: there are ``max_associations``."""
        with self._lock:
            association = self._associations.pop(id(event.assoc), None)
        if association is not None:
            log.warning(
                "association from %r at %s to %r rejected: %d association(s) at once is the "
                "limit (max_associations)",
                association.calling_ae,
                association.host,
                association.called.title,
                self.config.max_associations,
            )

    def _association(self, event: Event) -> Association | None:
        with self._lock:
            return self._associations.get(id(event.assoc))

    def _on_pdu(self, event: Event) -> None:
        """Count the bytes of the data set being received, and abort the association when they
        pass ``max_instance_bytes`` before it ends: pynetdicom holds a data set whole in memory
        until its last fragment, and only then could the C-STORE be refused."""
        association = self._association(event)
        if not isinstance(event.pdu, P_DATA_TF) or association is None:
            return
        limit = self.config.max_instance_bytes
        for item in event.pdu.presentation_data_value_items:
            value = item.presentation_data_value
            if not value or value[0] & 1 or association.receiving > limit:  # command, aborted
                continue
            association.receiving += len(value) - 1
            if value[0] & 2:  # the last fragment: the C-STORE handler checks the whole
                association.receiving = 0
            elif association.receiving > limit:
                association.failed += 1
                log.warning(
                    "association from %r at %s aborted: the data set being received passed "
                    "the limit of %d bytes (max_instance_bytes)",
                    association.calling_ae,
                    association.host,
                    limit,
                )
                event.assoc.abort()

    def _on_echo(self, event: Event) -> int:
        return SUCCESS

    def _on_store(self, event: Event) -> int:
        association = self._association(event)
        if association is None:  # cannot happen: the association was accepted
            return PROCESSING_FAILURE
        try:
            status = self._store(event, association)
        except InstanceRefusedError as refused:
            association.failed += 1
            log.warning(
                "C-STORE from %r at %s refused (status 0x%04X): %s",
                association.calling_ae,
                association.host,
                refused.status,
                refused.message,
            )
            return refused.status
        except Exception as error:  # never a traceback, never success
            association.failed += 1
            log.error(
                "C-STORE from %r at %s failed: %s: %s",
                association.calling_ae,
                association.host,
                type(error).__name__,
                error,
            )
            return PROCESSING_FAILURE
        return status

    def _store(self, event: Event, association: Association) -> int:
        called = association.called
        request = event.request
        sop_class = str(getattr(request, "AffectedSOPClassUID", "") or "")
        if sop_class in called.ignore_sop_classes:
            association.ignored += 1
            return SUCCESS
        received = getattr(request, "DataSet", None)
        if not isinstance(received, io.BytesIO):  # pynetdicom keeps it in memory by default
            raise InstanceRefusedError(CANNOT_UNDERSTAND, "C-STORE request without a data set")
        syntax = str(event.context.transfer_syntax)
        instance = check_data_set(
            received.getbuffer(),
            syntax,
            self.config.max_instance_bytes,
            sop_class,
            str(getattr(request, "AffectedSOPInstanceUID", "") or "") or None,
        )
        data = file_meta(instance, syntax) + received.getbuffer()
        key = (
            instance.study_instance_uid
            if called.grouping == "study"
            else instance.series_instance_uid
        )
        name = file_name(instance, data)
        group, _ = self.groups.begin(
            called.title, key, called.timeout, time.monotonic(), self._open_group
        )
        stored = False
        try:
            path, existed = self.spool.store(group.id, name, data)
            self._record(group, instance, path.name, len(data), association)
            stored = True
        finally:
            self.groups.end(group, time.monotonic(), stored)
        if existed:
            association.duplicates += 1
        else:
            association.stored += 1
            association.bytes += len(data)
        return SUCCESS

    def _open_group(self, group: OpenGroup) -> None:
        try:
            self.ledger.create_job(
                group.id,
                group.called_ae,
                self.config.ae_titles[group.called_ae].grouping,
                group.key,
                time.time(),
            )
            self.spool.create_group(group.id)
        except OSError as error:
            raise InstanceRefusedError(
                PROCESSING_FAILURE, f"cannot open group {group.id}: {error}"
            ) from None
        log.info(
            "group %s opened for %s %s (AE title %s)",
            group.id,
            self.config.ae_titles[group.called_ae].grouping,
            group.key,
            group.called_ae,
        )

    def _record(
        self, group: OpenGroup, instance: Instance, name: str, size: int, association: Association
    ) -> None:
        others = self.ledger.add_file(
            group.id,
            name,
            instance.sop_instance_uid,
            instance.sop_class_uid,
            instance.series_instance_uid,
            size,
            association.calling_ae,
            time.time(),
        )
        if others:
            log.warning(
                "group %s: SOP instance %s received again with different bytes: "
                "both kept (%s and %s)",
                group.id,
                instance.sop_instance_uid,
                name,
                ", ".join(others),
            )

    def _on_released(self, event: Event) -> None:
        association = self._association(event)
        if association is not None:
            association.ending = "released"

    def _on_aborted(self, event: Event) -> None:
        association = self._association(event)
        if association is not None:
            association.ending = "aborted"

    def _on_closed(self, event: Event) -> None:
        if event.assoc.requestor.primitive is None:
            # Closed before any association request (a port probe, or a request pynetdicom
            # could not decode): wake the association's thread, which would otherwise wait
            # out the ACSE timeout holding one of max_associations.
            event.assoc.dul.to_user_queue.put(None)
            return
        with self._lock:
            association = self._associations.pop(id(event.assoc), None)
        if association is None:
            return
        seconds = time.monotonic() - association.start
        log.info(
            "association from %r at %s to %s %s after %.1f s: %d instance(s) stored "
            "(%d bytes), %d again, %d ignored, %d refused",
            association.calling_ae,
            association.host,
            association.called.title,
            association.ending,
            seconds,
            association.stored,
            association.bytes,
            association.duplicates,
            association.ignored,
            association.failed,
        )

    def status(self) -> list[dict[str, Any]]:
        return [job.as_json() for job in self.ledger.jobs()]
