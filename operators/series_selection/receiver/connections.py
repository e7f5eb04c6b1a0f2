"""The receiver's server: pynetdicom's, each connection read through a check of the length
that every PDU announces in its header.

pynetdicom reads a PDU whole into memory before anything else sees it, however long its header
says it is (up to 4 GiB). A peer must keep to the maximum PDU length we announce when the
association is accepted; a PDU announcing more ends the connection at its header, before any of
its bytes are held.
"""

from __future__ import annotations

import logging
import socket
import threading
from contextlib import suppress
from typing import Any, cast

from pynetdicom.transport import AssociationServer, ThreadedAssociationServer

log = logging.getLogger(__name__)

PDU_HEADER_BYTES = 6
"""A PDU's type, a reserved byte, and the length of the rest (four bytes, big-endian)."""


class LengthCheckedConnection:
    """A peer's socket, read by pynetdicom, that ends the connection when a PDU's header
    announces more than ``limit`` bytes: reads then return nothing, as when the peer has
    closed, once the whole PDUs before that header are read. Everything else goes to the
    socket itself."""

    def __init__(self, connection: socket.socket, host: str, limit: int) -> None:
        self._connection = connection
        self._host = host
        self._limit = limit
        self._header = b""
        self._body_left = 0
        self._cut_off = False

    def recv(self, size: int) -> bytes:
        if self._cut_off:
            return b""
        data = self._connection.recv(size)
        if len(data) <= self._body_left:  # inside a PDU: the usual read
            self._body_left -= len(data)
            return data
        position = 0
        while position < len(data):
            if self._body_left:
                taken = min(self._body_left, len(data) - position)
                self._body_left -= taken
                position += taken
                continue
            header_start = position - len(self._header)  # below 0: begun in an earlier read
            needed = PDU_HEADER_BYTES - len(self._header)
            self._header += data[position : position + needed]
            position += needed
            if len(self._header) == PDU_HEADER_BYTES:
                length = int.from_bytes(self._header[2:], "big")
                self._header = b""
                if length > self._limit:
                    self._cut(length)
                    return data[: max(header_start, 0)]  # the whole PDUs before it
                self._body_left = length
        return data

    def _cut(self, length: int) -> None:
        log.warning(
            "connection from %s closed: a PDU of %d bytes was announced, more than the %d "
            "bytes the receiver takes (the maximum PDU length it announced)",
            self._host,
            length,
            self._limit,
        )
        self._cut_off = True
        with suppress(OSError):
            self._connection.shutdown(socket.SHUT_RDWR)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


class LengthCheckedServer(ThreadedAssociationServer):
    """pynetdicom's threaded server whose connections are ``LengthCheckedConnection``s."""

    def __init__(self, *args: Any, pdu_limit: int, **kwargs: Any) -> None:
        self.pdu_limit = pdu_limit
        super().__init__(*args, **kwargs)

    def serve_in_background(self) -> None:
        """Take associations in a thread of their own until ``shutdown``."""
        threading.Thread(target=self.serve_forever, name="association-server", daemon=True).start()

    def shutdown(self) -> None:
        """Stop taking associations and close the listening socket. (pynetdicom's own would
        also remove the server from its AE's list of the servers it started itself, where this
        one never was.)"""
        super(AssociationServer, self).shutdown()
        self.server_close()

    def get_request(self) -> tuple[socket.socket, tuple[str, int]]:
        connection, address = super().get_request()
        checked = LengthCheckedConnection(connection, str(address[0]), self.pdu_limit)
        return cast(socket.socket, checked), address
