"""A peer's WebSocket to its relay, taking chunk frames from one reused buffer (issue 17).

websockets' asyncio client copies each frame it reads twice (the ``bytearray`` its reader
extends, then the ``bytes`` it returns) on top of the bytes object each read makes, and
runs its frame parser in Python per frame. For chunks, most of what a receiver reads,
that was a large share of its CPU per byte. Here, once the opening handshake is done, the
connection's reads go into one buffer that it frames itself (as the relay's ``relay.wire``
does for its side), and a chunk frame is handed to the reader as a view of that buffer:
parsed, opened, hashed and written from there, with no bytes object made for its payload.

- Only a whole binary frame as the relay sends them (final, unmasked, no extension's
  bits, not over ``max_size``) is taken here. Every other frame (text, ping, pong, close)
  goes to websockets whole and in order, and is handled exactly as before. Anything the
  framing does not expect (a fragment, a masked or oversized frame, an extension's bits)
  hands the rest of the connection to websockets, which fails it as it always did.
- Order holds: a chunk waits while a message before it is not taken yet.
- Back-pressure: while a chunk is out (``next_frame`` returned it and has not been called
  again) or waiting to be taken, the socket is not read, so a receiver whose disk is
  behind holds one frame in memory, and the relay's own flow control does the rest.
- The view is valid until the next ``next_frame``: callers use it before asking again.
"""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed
from websockets.frames import DATA_OPCODES, CloseCode, Frame
from websockets.protocol import OPEN
from websockets.typing import Data

from ..reads import feed, frame_head, take_reads

_FIRST_READ = 64 * 1024  # a read while the next frame's size is unknown; bigger frames are read to their end
_BINARY = 0x2


class ChunkConnection(ClientConnection):
    """websockets' client connection, with chunk frames taken from one reused buffer."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._framing = False  # reads go through our buffer (after the handshake's response)
        self._gave_up = False  # framing stopped: websockets reads the rest
        self._buf = bytearray()
        self._start = 0  # the first byte not yet handled
        self._end = 0  # the end of what was read
        self._need = 0  # the whole size of the frame at _start, once its header is in
        self._chunk: tuple[int, int] | None = None  # the payload of the binary frame at _start, when it is whole
        self._total = 0  # that frame's whole size
        self._out = False  # that chunk was handed to the reader
        self._queue_full = False  # websockets' queue of messages asked to stop reading
        self._paused = False  # the transport is not read
        self._waiter: asyncio.Future[None] | None = None
        self._limit = 1 << 62  # the largest frame taken (websockets' max_size)
        self._closing = False  # close() was called
        self._heard_at = 0.0  # when the relay's bytes last arrived (the keepalive's sign of life)

    # -- what the reader calls ------------------------------------------------------------------

    async def next_frame(self) -> Data | memoryview:
        """The next message (``str``), or binary frame: a view of our buffer (``bytes`` once
        websockets reads the connection). Raises ``ConnectionClosed`` as ``recv`` does."""
        if self._out:
            self._release()
        while True:
            if self._chunk is not None and not len(self.recv_messages.frames):
                self._out = True
                at, end = self._chunk
                return memoryview(self._buf)[at:end]
            if len(self.recv_messages.frames) or self._gave_up or self.recv_messages.closed:
                return await self.recv()
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    async def close(self, code: int = 1000, reason: str = "") -> None:
        # A chunk nobody will take must not stop the relay's close from being read
        self._closing = True  # chunks from now on are dropped (as websockets drops frames after its close)
        if self._out:  # (the reader may still use its view: the buffer goes on in a new one)
            self._make_room(len(self._buf))
        self._release()
        await super().close(code, reason)

    def _release(self) -> None:
        """The reader is done with the chunk it was handed (or nobody will take it): read on."""
        if self._chunk is not None:
            self._out = False
            self._chunk = None
            self._start += self._total
            self._total = 0
        self._pump()
        self._reading()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- websockets' connection, changed -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # websockets pauses reading when its queue of messages is full: so do we, beside our own reasons
        self.recv_messages.pause = self._pause_queue
        self.recv_messages.resume = self._resume_queue

    def data_received(self, data: bytes) -> None:
        self._heard_at = self.loop.time()
        if not self._framing:
            super().data_received(data)
            # The response is in: frame what follows, unless the relay sent frames early (websockets has them)
            if self.response is not None and self.protocol.state is OPEN and not self.protocol.reader.buffer:
                self._framing = True
                sizes = (self.protocol.max_message_size, self.protocol.max_fragment_size)
                self._limit = min((n for n in sizes if n is not None), default=self._limit)  # as websockets refuses
                self.loop.call_soon(self._take_reads)
            return
        feed(self, data)

    def _take_reads(self) -> None:
        take_reads(self, self.transport)

    def process_event(self, event: Any) -> None:
        super().process_event(event)
        if isinstance(event, Frame) and event.opcode in DATA_OPCODES:
            self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._wake()

    # -- the buffer ---------------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        want = self._need - (self._end - self._start)  # the rest of the frame at _start: reads stop at its end
        if self._gave_up or want <= 0:
            want = _FIRST_READ
        if self._end + want > len(self._buf):
            self._make_room(self._end - self._start + want)
        return memoryview(self._buf)[self._end : self._end + want]

    def _make_room(self, size: int) -> None:
        """Move what is not handled yet to the start of a buffer of at least ``size`` bytes."""
        old = self._buf
        kept = old[self._start : self._end]
        if size > len(old) or self._out:  # a new one: the reader's view of the old may still live
            self._buf = bytearray(max(size, len(old)))
        self._buf[: len(kept)] = kept
        if self._chunk is not None:
            at, end = self._chunk
            self._chunk = (at - self._start, end - self._start)
        self._start, self._end = 0, len(kept)

    def buffer_updated(self, nbytes: int) -> None:
        self._heard_at = self.loop.time()
        if self._gave_up:
            data = bytes(self._buf[self._end : self._end + nbytes])
            super().data_received(data)
            return
        self._end += nbytes
        if self._end - self._start >= self._need:
            self._pump()
            self._reading()

    def _pump(self) -> None:
        """Handle each whole frame in the buffer, until a chunk waits or a frame is not whole yet."""
        buf = self._buf
        while self._chunk is None and not self._gave_up:
            start = self._start
            have = self._end - start
            frame = frame_head(buf, start, have)
            if frame is None:
                break
            first, second, size, head = frame
            if first & 0x70 or not first & 0x80 or not first & 0x0F or second & 0x80 or size > self._limit:
                self._give_up()  # an extension's bits, a fragment, masked or too big: websockets says
                return
            total = head + size
            if have < total:
                self._need = total
                break
            self._need = 0
            if first & 0x0F == _BINARY and self.protocol.state is OPEN and not self._closing:
                self._chunk, self._total = (start + head, start + total), total
                self._wake()
                break
            if first & 0x0F != _BINARY:  # (a binary frame after our close is dropped, as websockets would)
                super().data_received(bytes(buf[start : start + total]))
            self._start = start + total
        if self._start == self._end and self._chunk is None:
            self._start = self._end = 0

    def _give_up(self) -> None:
        self._gave_up = True
        rest = bytes(self._buf[self._start : self._end])
        self._buf = bytearray(_FIRST_READ)
        self._start = self._end = self._need = 0
        super().data_received(rest)

    # -- keepalive -----------------------------------------------------------------------------------

    async def keepalive(self) -> None:
        """websockets' keepalive, but a late pong alone does not end the link while the relay is
        heard: its pong comes behind the frames the relay sent before it, and on a slow link
        (or while this side does not read, its chunk not yet written) that is longer than
        ``ping_timeout``. The link fails when a ping is unanswered and nothing at all came from
        the relay for ``ping_timeout`` seconds (a stalled network: the bound stays about the same)."""
        try:
            await self._keepalive()
        except ConnectionClosed:
            pass  # the link is closing or closed: its reader says so

    async def _keepalive(self) -> None:
        assert self.ping_interval is not None
        latency = 0.0
        while True:
            await asyncio.sleep(self.ping_interval - latency)
            pong = await self.ping()
            timeout = self.ping_timeout
            if timeout is None:
                continue
            deadline = self.loop.time() + timeout
            while True:
                try:
                    latency = await asyncio.wait_for(asyncio.shield(pong), max(0.0, deadline - self.loop.time()))
                    break
                except asyncio.TimeoutError:
                    pass
                now = self.loop.time()
                if self._paused:  # we are not reading: the pong may be waiting unread
                    deadline = now + timeout
                elif self._heard_at + timeout > now:  # the relay spoke lately: alive, and busy
                    deadline = self._heard_at + timeout
                else:
                    async with self.send_context():
                        self.protocol.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
                    raise AssertionError("send_context() waits for connection_lost(), which cancels keepalive()")

    # -- reading or not -----------------------------------------------------------------------------

    def _pause_queue(self) -> None:
        self._queue_full = True
        self._reading()

    def _resume_queue(self) -> None:
        self._queue_full = False
        self._reading()

    def _reading(self) -> None:
        pause = self._queue_full or (self._chunk is not None and not self._gave_up)
        if pause != self._paused and not self.transport.is_closing():
            self._paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()


__all__ = ["ChunkConnection"]
