"""Reads into a buffer of one's own: the ``asyncio.BufferedProtocol`` that a connection puts
in front of itself once its WebSocket is open (the relay's ``relay.wire`` and the peers'
``transfer.wire``), so that the transport reads into that buffer and no bytes object is
made per read."""

from __future__ import annotations

import asyncio
from typing import Protocol


def frame_head(buf: bytearray, start: int, have: int) -> tuple[int, int, int, int] | None:
    """The WebSocket frame at ``buf[start:]``, of which ``have`` bytes are there: its first and
    second bytes, its payload's size and its header's length (a mask's 4 bytes not counted);
    None while the header is not whole."""
    if have < 2:
        return None
    first, second = buf[start], buf[start + 1]
    size, head = second & 0x7F, 2
    if size >= 126:
        head = 4 if size == 126 else 10
        if have < head:
            return None
        size = int.from_bytes(buf[start + 2 : start + head], "big")
    return first, second, size, head


class Reader(Protocol):
    """What ``BufferedReads`` hands the transport's calls to."""

    def get_buffer(self, sizehint: int) -> memoryview: ...

    def buffer_updated(self, nbytes: int) -> None: ...

    def eof_received(self) -> bool | None: ...

    def connection_lost(self, exc: Exception | None) -> None: ...

    def pause_writing(self) -> None: ...

    def resume_writing(self) -> None: ...


def feed(reader: Reader, data: bytes) -> None:
    """Bytes a transport handed over as an object (before ``take_reads``, or a transport that
    only does that) go through ``reader``'s buffer all the same."""
    view, at = memoryview(data), 0
    while at < len(data):
        room = reader.get_buffer(len(data) - at)
        n = min(len(room), len(data) - at)
        room[:n] = view[at : at + n]
        at += n
        reader.buffer_updated(n)


def take_reads(reader: Reader, transport: asyncio.BaseTransport) -> None:
    """From now on ``transport`` reads into ``reader``'s buffer, if ``reader`` is still its
    protocol and it is not closing."""
    current: object = transport.get_protocol()
    if current is reader and not transport.is_closing():
        transport.set_protocol(BufferedReads(reader))


class BufferedReads(asyncio.BufferedProtocol):
    """The transport's protocol once the WebSocket is open: reads land in ``reader``'s buffer."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.reader.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.reader.buffer_updated(nbytes)

    def eof_received(self) -> bool | None:
        return self.reader.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.connection_lost(exc)

    def pause_writing(self) -> None:
        self.reader.pause_writing()

    def resume_writing(self) -> None:
        self.reader.resume_writing()
