"""The relay's WebSocket protocol: chunks and texts pass from one peer's socket to another's without ASGI.

uvicorn's websockets-sansio protocol hands every frame to the ASGI app through a queue:
websockets' reader copies it three or four times, Starlette wraps it, and ``Relay.route``
awaits a send under a lock and a timeout. For chunks that was most of the relay's CPU per
byte (issue 17). Here the connection's reads go into one buffer that the protocol frames
itself, and a chunk from a peer that has joined goes straight to the destination's
transport, as a frame header and the unmasked payload, when nothing stands in its way:

- every earlier frame of the peer has been handled (the app's lane is idle), so one
  peer's frames keep their order;
- the peer's budget lets it through now (``budget.Budget``; else its socket is not read
  until it does, as in the app);
- ``Relay.direct_targets`` finds it a chunk whose ``from`` is the peer's own id, going to
  peers of this relay connected by WebSocket, none of them a page's download.

A destination whose write buffer is full holds the chunk, and the peer's socket is not
read until it drains (what an awaited send did); one that takes none of it for
``send_timeout`` is dropped.

A text message goes the same way (the relay's round trip, issue 17) when its lane is idle,
its budget lets it through now, and ``Relay.direct_text`` parses it as ``route`` would into
a message between peers, to peers of this relay whose buffers have room, that the download
bridge leaves alone; the room notes it and its ``from`` is the peer's own id, as in
``route``. Otherwise the app gets it as read (with what the budget said).

Every other frame takes the app's lane as before: control frames through websockets, and
chunks and texts it must check, refuse or route otherwise (forged, to nobody, to other
relays, a page's download, a full destination) as already read. A text that is not UTF-8
goes to websockets, which fails the connection for it. Anything the framing does not expect
(a fragment, an extension's bits, an unmasked or oversized frame) hands the rest of the
connection to websockets, which fails it as it always did. Before the peer joined, every
frame goes through websockets.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import MutableMapping
from typing import TYPE_CHECKING, Any, Protocol

from uvicorn._types import ASGIReceiveEvent
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from ..protocol.closes import Close
from ..reads import feed, frame_head, take_reads
from .budget import Budget

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - websockets built without its C extension
    from websockets.utils import apply_mask

if TYPE_CHECKING:
    from .app import Relay
    from .peer import PeerConnection

WIRE = "xfer.wire"  # the ASGI scope's extension that names a connection's WireProtocol
_FIRST_READ = 64 * 1024  # a read while the next frame's size is unknown; bigger frames are read to their end
_KEEP = 64 * 1024  # a buffer that held a frame this big is kept for the next one (a stream of chunks)
_CLOSE_GRACE = 1.0  # seconds a stopping relay waits for a peer to answer its close
_SHORT = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")
_BINARY = 0x82  # FIN and the binary opcode
_TEXT = 0x81  # FIN and the text opcode
_PONG = bytes((0x8A, 0))  # FIN and the pong opcode, no payload (a server frame: unmasked)


def frame_header(size: int, first: int = _BINARY) -> bytes:
    """The header of an unmasked (server to client) frame of ``size`` payload bytes (binary,
    or text with ``first`` 0x81)."""
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return _SHORT.pack(first, 126, size)
    return _LONG.pack(first, 127, size)


class WireProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, framing reads itself and forwarding chunks directly.

    Also: a keepalive timeout that really ends the connection (uvicorn closes the
    transport when a ping goes unanswered; ``close()`` waits to flush what is buffered,
    which never happens when the peer stalled mid-transfer with a full buffer), and a
    shutdown that waits briefly for the peer's close.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._max_size = self.config.ws_max_size  # as websockets would refuse a frame
        self._framing = False  # reads go through our buffer (after the handshake's request)
        self._gave_up = False  # framing stopped: websockets reads the rest
        self._buf: bytearray | None = None
        self._start = 0  # the first byte not yet handled
        self._end = 0  # the end of what was read
        self._need = 0  # the whole size of the frame at _start, once its header is in
        self._last = 0  # the size of the last frame handled
        self._head: bytes | None = None  # the frame at _start, unmasked and charged, while it is held
        self._held = False  # a chunk waits (its budget or its destination): the socket is not read
        self._timer: asyncio.TimerHandle | None = None
        self._lane_busy = True  # the app is handling a frame (it is not waiting in receive)
        self._peer: PeerConnection | None = None
        self._relay: Relay | None = None
        self._budget: Budget | None = None
        self._waiters: list[WireProtocol] = []  # sources holding a chunk for this destination
        self._stall: asyncio.TimerHandle | None = None
        self._alive: asyncio.TimerHandle | None = None  # the unsolicited pongs while we hold the peer
        self._sent = 0  # bytes of frames we wrote to this peer directly (deliver)
        self._at_ping: tuple[int, int | None] = (0, None)  # (_sent, _unsent()) when the last ping went

    # -- what the relay's app calls ---------------------------------------------------------

    def attach(self, peer: PeerConnection, relay: Relay, budget: Budget) -> None:
        """``peer`` joined: its chunks may go directly from now on (``budget`` is the app's too)."""
        self._peer, self._relay, self._budget = peer, relay, budget
        peer.wire = self

    def detach(self) -> None:
        if self._peer is not None:
            self._peer.wire = None
        self._peer = self._relay = None

    async def receive(self) -> ASGIReceiveEvent:
        # uvicorn's, and: while the app waits here, its lane is idle (chunks may pass it)
        self._lane_busy = False
        message = await self.queue.get()
        self._lane_busy = True
        if self.read_paused and self.queue.empty():
            self.read_paused = False
            if not self._held:
                self.transport.resume_reading()
        return message

    # -- uvicorn's protocol, changed ----------------------------------------------------------

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope.setdefault("extensions", {})[WIRE] = {"protocol": self}

    def data_received(self, data: bytes) -> None:
        if not self._framing:
            super().data_received(data)
            # The request is in: frame what follows, unless the client sent frames early (websockets has them)
            if self.handshake_initiated and not self.close_sent and not self.conn.reader.buffer:
                self._framing = True
                self.loop.call_soon(self._take_reads)
            return
        feed(self, data)

    def _take_reads(self) -> None:
        take_reads(self, self.transport)  # h11's upgrade has made us the transport's protocol

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        for timer in (self._timer, self._stall, self._alive):
            if timer is not None:
                timer.cancel()
        self._buf = self._head = None
        self._wake()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self._wake()

    def send_keepalive_ping(self) -> None:
        self._at_ping = (self._sent, self._unsent())
        super().send_keepalive_ping()

    def keepalive_timeout(self) -> None:
        if not self.close_sent and not self.disconnected:
            if self._held or self.read_paused:
                # We are not reading this peer: its chunk waits for a slow destination or its budget,
                # or the app's queue is full. Its pong may be waiting unread behind its chunks, so the
                # silence is ours: look again later. Each of those ends by itself (the destination
                # drains or is dropped at send_timeout, the budget's timer, the app), and reading resumes.
                self._look_again()
                return
            if self._taking():
                # Our ping waits behind the frames we sent before it, on a slow link, and the peer
                # is taking them: alive. (A peer that takes nothing for a keepalive is dropped.)
                self._at_ping = (self._sent, self._unsent())
                self._look_again()
                return
        super().keepalive_timeout()
        self.transport.abort()

    def _look_again(self) -> None:
        self.pong_timer = self.loop.call_later(self.ping_timeout or 1.0, self.keepalive_timeout)

    def _taking(self) -> bool:
        """Whether the peer took some of our bytes since the last ping (its TCP acknowledged them)."""
        sent, unsent = self._at_ping
        now = self._unsent()
        if unsent is None or now is None:
            return False  # not known here: the keepalive decides alone, as before
        return (self._sent - sent) + (unsent - now) > 0

    def _unsent(self) -> int | None:
        """Bytes written to this peer and not yet acknowledged: ours in the transport and the
        kernel's send queue (``TIOCOUTQ``, Linux); None where that cannot be read."""
        try:
            from fcntl import ioctl
            from termios import TIOCOUTQ
        except ImportError:  # not on this platform
            return None
        sock = self.transport.get_extra_info("socket")
        try:
            queued = ioctl(sock.fileno(), TIOCOUTQ, b"\0\0\0\0")
        except (AttributeError, OSError, ValueError):
            return None
        return int(self.transport.get_write_buffer_size()) + int(struct.unpack("i", queued)[0])

    def shutdown(self) -> None:
        """Close with 1012 and wait (briefly) for the peer's close before dropping the socket.

        uvicorn's own closes the socket right after its close frame: with a peer's upload still
        arriving, that close resets the connection and the peer may never read the 1012, so a
        page cannot tell "the relay stopped" from "the network failed" (issue 15)."""
        if self.close_sent or not self.handshake_complete or self.initial_response is not None:
            super().shutdown()
            return
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": 1012, "reason": None})
        self.conn.send_close(1012)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self._held = False  # a held chunk must not stop the peer's close from being read
        self.close_timer = self.loop.call_later(_CLOSE_GRACE, self.transport.close)  # the peer's close ends it sooner

    # -- the buffer ----------------------------------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._gave_up:
            assert self._buf is not None
            return memoryview(self._buf)
        want = self._need - (self._end - self._start)  # the rest of the frame at _start: reads stop at its end
        if want <= 0:
            want = _FIRST_READ
        if self._buf is None:
            self._buf = bytearray(want)
        elif self._end + want > len(self._buf):
            self._make_room(self._end - self._start + want)
        return memoryview(self._buf)[self._end : self._end + want]

    def _make_room(self, size: int) -> None:
        """Move what is not handled yet to the start of a buffer of at least ``size`` bytes."""
        old = self._buf
        assert old is not None
        kept = old[self._start : self._end]
        new = old if size <= len(old) else bytearray(size)  # a new one: views of the old may still live
        new[: len(kept)] = kept
        self._buf, self._start, self._end = new, 0, len(kept)

    def buffer_updated(self, nbytes: int) -> None:
        if self._gave_up:
            assert self._buf is not None
            super().data_received(bytes(self._buf[:nbytes]))
            return
        self._end += nbytes
        if self._end - self._start < self._need:
            return  # the frame at _start is not whole yet
        if self._held and self.close_sent:
            self._held = False  # after our close: read on, for the peer's close (held chunks are dropped)
        self._pump()

    def _pump(self) -> None:
        """Handle each whole frame in the buffer, until one is held or a frame is not whole yet."""
        while not self._held and not self.disconnected:
            buf, start = self._buf, self._start
            if buf is None:
                return
            have = self._end - start
            frame = frame_head(buf, start, have)
            if frame is None:
                break
            first, second, size, head = frame
            head += 4  # the mask (checked below)
            if first & 0x70 or not first & 0x80 or not first & 0x0F or not second & 0x80 or size > self._max_size:
                self._give_up()  # an extension's bits, a fragment, unmasked or too big: websockets says
                return
            total = head + size
            if have < total:
                self._need = total
                break
            self._need = 0
            opcode = first & 0x0F
            if opcode == 2 and self._peer is not None:
                if not self._chunk(start + head, start + total):
                    return  # held: the frame stays at _start
            elif opcode != 1 or self._peer is None or not self._text(start + head, start + total):
                super().data_received(bytes(buf[start : start + total]))  # websockets and uvicorn's handling
            self._start = start + total
            self._last = total
        if self._start == self._end and self._buf is not None:
            self._start = self._end = 0
            if self._last < _KEEP:
                self._buf = None  # kept while chunks stream; an idle connection holds none

    def _give_up(self) -> None:
        self._gave_up = True
        buf = self._buf
        rest = bytes(buf[self._start : self._end]) if buf is not None else b""
        self._buf = bytearray(_FIRST_READ)
        self._start = self._end = self._need = 0
        super().data_received(rest)

    # -- chunks ------------------------------------------------------------------------------

    def _chunk(self, at: int, end: int) -> bool:
        """Pass on the chunk frame whose payload is buf[at:end]; False when it is held."""
        data = self._head
        charged = data is not None
        if data is None:
            buf = self._buf
            assert buf is not None
            data = apply_mask(memoryview(buf)[at:end], bytes(buf[at - 4 : at]))
        self._head = None
        if self.close_sent:
            return True  # the app is past its close (uvicorn drops frames then too)
        if self._lane_busy or not self.queue.empty():
            self._to_app({"bytes": data, "charged": charged})  # behind frames the app has not handled yet
            return True
        peer, relay, budget = self._peer, self._relay, self._budget
        assert peer is not None and relay is not None and budget is not None
        if not charged:
            wait = budget.charge(None, data, self.loop.time())
            if wait > 0:
                self._head = data
                self._hold()
                self._timer = self.loop.call_later(wait, self.release)
                return False
        targets = relay.direct_targets(peer, data)
        if targets is None:
            self._to_app({"bytes": data, "charged": True})
            return True
        doors: list[Door] = []
        for target in targets:
            door: Door | None = getattr(target, "wire", None)
            if target.dead or door is None or door.shut:
                continue  # gone: an awaited send to it did nothing either
            if not door.ready:
                self._head = data
                self._hold()
                door.wait(self, peer.send_timeout)
                return False
            doors.append(door)
        for door in doors:
            door.deliver(data)
        return True

    def _text(self, at: int, end: int) -> bool:
        """Pass on the text frame whose payload is buf[at:end], or give it to the app; False
        when it is not UTF-8 (websockets fails the connection for it, as it always did)."""
        buf = self._buf
        assert buf is not None
        try:
            text = apply_mask(memoryview(buf)[at:end], bytes(buf[at - 4 : at])).decode()
        except UnicodeDecodeError:
            return False
        if self.close_sent:
            return True  # the app is past its close (uvicorn drops frames then too)
        if self._lane_busy or not self.queue.empty():
            self._to_app({"text": text})  # behind frames the app has not handled yet
            return True
        peer, relay, budget = self._peer, self._relay, self._budget
        assert peer is not None and relay is not None and budget is not None
        wait = budget.charge(text, None, self.loop.time())
        passed = relay.direct_text(peer, text) if wait <= 0 else None
        if passed is None:
            self._to_app({"text": text, "charged": True, "wait": wait})  # the app waits, then checks and routes it
            return True
        message, doors = passed
        for door in doors:
            door.deliver(message)
        return True

    def _to_app(self, event: dict[str, Any]) -> None:
        # as uvicorn queues a message; ``charged``: the budget counted it already (``wait``: the seconds it said)
        event["type"] = "websocket.receive"
        self.queue.put_nowait(event)  # type: ignore[arg-type]
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def _hold(self) -> None:
        self._held = True
        self.transport.pause_reading()
        if self._alive is None:
            self._alive = self.loop.call_later(self._alive_every, self._say_alive)

    def _say_alive(self) -> None:
        """While we hold this peer (not reading it, so not its pings either), an unsolicited pong
        every half second (or half our keepalive, if shorter) tells it the relay is there: RFC 6455
        allows one as a heartbeat, and our clients count any bytes from the relay as a sign of
        life (transfer/wire.py) whatever their own --keepalive."""
        self._alive = None
        if self._held and not self.close_sent and not self.transport.is_closing():
            self.transport.write(_PONG)
            self._alive = self.loop.call_later(self._alive_every, self._say_alive)

    @property
    def _alive_every(self) -> float:
        return min(0.5, self.ping_interval / 2) if self.ping_interval else 0.5

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._timer = None
        self._pump()
        if not self._held and not self.read_paused and not self.disconnected:
            self.transport.resume_reading()

    # -- as a destination (a Door) ----------------------------------------------------------------

    @property
    def shut(self) -> bool:
        return self.close_sent or self.transport.is_closing()

    @property
    def ready(self) -> bool:
        return self.writable.is_set()

    def deliver(self, data: bytes | str) -> None:
        if isinstance(data, str):  # a text message: small
            payload = data.encode()
            frame = frame_header(len(payload), _TEXT) + payload
            self.transport.write(frame)
            self._sent += len(frame)
        else:
            head = frame_header(len(data))
            self.transport.writelines((head, data))
            self._sent += len(head) + len(data)

    def wait(self, source: WireProtocol, timeout: float) -> None:
        """``source`` holds a chunk until this peer's buffer drains; a peer that stays full is dropped."""
        self._waiters.append(source)
        if self._stall is None:
            self._stall = self.loop.call_later(timeout, self._stalled)

    def _stalled(self) -> None:
        self._stall = None
        if not self.writable.is_set() and self._peer is not None:
            self._peer.drop(Close.TOO_SLOW)  # it stopped reading
        self._wake()

    def _wake(self) -> None:
        wake(self._waiters)


class Door(Protocol):
    """Where a chunk goes directly: a WireProtocol, or the queue of a peer in the relay's own process."""

    @property
    def shut(self) -> bool:
        """Gone: chunks for it are dropped (as an awaited send to it did nothing)."""

    @property
    def ready(self) -> bool:
        """It takes a chunk now."""

    def deliver(self, data: bytes | str) -> None:
        """Send a chunk (bytes) or a text message (str) on; ``ready`` said it may."""

    def wait(self, source: WireProtocol, timeout: float) -> None:
        """Release ``source`` (its held chunk) once ready, or once it is found stuck after ``timeout``."""


def wake(waiters: list[WireProtocol]) -> None:
    """Release each source waiting on a destination that is ready again (or gone)."""
    sources = waiters[:]
    waiters.clear()
    for source in sources:
        source.release()


def wire_of(scope: MutableMapping[str, Any]) -> WireProtocol | None:
    """The WireProtocol of a WebSocket's ASGI scope, if it came through one."""
    extension = scope.get("extensions", {}).get(WIRE)
    wire = extension.get("protocol") if isinstance(extension, dict) else None
    return wire if isinstance(wire, WireProtocol) else None


__all__ = ["Door", "WireProtocol", "frame_header", "wake", "wire_of", "WIRE"]
