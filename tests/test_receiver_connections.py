"""Reading a peer's PDUs through the length check: the bytes pass unchanged until a header
announces more than the limit, however the stream is cut into reads."""

from __future__ import annotations

import socket

from hypothesis import given
from hypothesis import strategies as st

from series_selection.receiver.connections import LengthCheckedConnection

LIMIT = 64


def pdu(length: int) -> bytes:
    return (
        bytes([0x04, 0])
        + length.to_bytes(4, "big")
        + bytes(range(length % 250)) * 0
        + b"x" * length
    )


def read_all(stream: bytes, sizes: list[int]) -> bytes:
    """``stream`` sent on a socket, read back through the check with reads of ``sizes``."""
    ours, theirs = socket.socketpair()
    with ours, theirs:
        theirs.sendall(stream)
        theirs.shutdown(socket.SHUT_WR)
        checked = LengthCheckedConnection(ours, "peer", LIMIT)
        read = b""
        for size in sizes * (len(stream) + 1):
            data = checked.recv(size)
            if not data:
                return read
            read += data
    raise AssertionError("never reached the end")


LENGTHS = st.lists(st.integers(0, LIMIT), max_size=8)
SIZES = st.lists(st.integers(1, 200), min_size=1, max_size=5)


@given(LENGTHS, SIZES)
def test_pdus_within_the_limit_pass_unchanged(lengths: list[int], sizes: list[int]) -> None:
    stream = b"".join(map(pdu, lengths))
    assert read_all(stream, sizes) == stream


@given(LENGTHS, st.integers(LIMIT + 1, 2**32 - 1), SIZES)
def test_reading_ends_at_the_header_of_a_pdu_over_the_limit(
    lengths: list[int], too_long: int, sizes: list[int]
) -> None:
    before = b"".join(map(pdu, lengths))
    header = bytes([0x04, 0]) + too_long.to_bytes(4, "big")
    read = read_all(before + header + b"y" * 100, sizes)
    assert (before + header).startswith(read)
    assert len(before) <= len(read) < len(before) + len(header)
