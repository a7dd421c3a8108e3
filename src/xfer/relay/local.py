"""A peer in the relay's own process: when ``send`` or ``receive`` hosts the relay, its
own frames go through a bounded queue instead of a loopback WebSocket, so the data
crosses one socket (the other peer's) instead of two.

``LocalConnection`` fits ``xfer.transfer.link.Link`` by shape (send, send_frame, recv,
close, peers, peer_id, lost) without knowing the transfer layer; every frame still goes
through ``Relay.route``: the same checks, routing and fan-out as for any peer.
"""

from __future__ import annotations

import asyncio
from typing import Any

from .. import __version__
from ..errors import PeerProtocolError, RelayGone, RoomError
from ..protocol import Chunk, Error, Message, PeerInfo, serialize
from ..protocol.room import Refused
from ..protocol.view import ROOM_REFUSALS, RoomView, client_name, hello
from .app import Relay
from .wire import WireProtocol, wake

CLIENT = client_name(__version__)
_CLOSED = object()


class LocalPeer:
    """The relay's side of a local peer: ``send`` queues, and waits when the queue is full.

    It is also where chunks from WebSocket peers go directly (``wire.Door``): into the
    queue while it has room; else their sources wait until the peer takes a frame."""

    address = "local"
    relay_id = None  # on this relay

    def __init__(self, queue_frames: int) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue(queue_frames)
        self.info: PeerInfo | None = None
        self.room: str | None = None
        self.dead = False
        self.error: Exception | None = None
        self.wire = self  # its Door
        self._waiters: list[WireProtocol] = []

    @property
    def shut(self) -> bool:
        return self.dead

    @property
    def ready(self) -> bool:
        return not self.queue.full()

    def deliver(self, data: bytes | str) -> None:
        self.queue.put_nowait(data)

    def wait(self, source: WireProtocol, timeout: float) -> None:
        self._waiters.append(source)  # the peer in this process always reads on: no timeout

    def taken(self) -> None:
        """The peer took a frame: a source waiting for room may go on."""
        if self._waiters:
            wake(self._waiters)

    async def send(self, data: str | bytes) -> None:
        if not self.dead:
            await self.queue.put(data)

    def drop(self, code: int) -> None:
        self.end()

    async def close(self, code: int, error: Error | None = None) -> None:
        """The relay closes us, for breaking the protocol: keep its reason for the next call."""
        if error is not None:
            self.error = PeerProtocolError(
                f"the relay closed the connection: {error.message or error.code}", error.code
            )
        self.end()

    def end(self) -> None:
        if not self.dead:
            self.dead = True
            try:
                self.queue.put_nowait(_CLOSED)
            except asyncio.QueueFull:  # the reader will find the flag
                pass
            wake(self._waiters)


class LocalConnection:
    """The in-process link of a peer to the relay it hosts."""

    url = "(this process)"

    def __init__(self, relay: Relay, peer: LocalPeer, peer_id: int, peers: dict[int, PeerInfo], room: str = "") -> None:
        self.relay = relay
        self.room = room  # the nameplate joined
        self.peer = peer
        self.view = RoomView(peer_id, peers)
        self.peer_id = peer_id
        self.peers = self.view.peers  # one dict: the view keeps it up to date
        self.lost = False

    async def send(self, message: Message) -> None:
        await self._route(serialize(message), None)

    async def send_frame(self, frame: bytes | bytearray) -> None:
        # the relay passes frames on as they are, and may hold them: never a buffer that changes
        await self._route(None, bytes(frame) if isinstance(frame, bytearray) else frame)

    async def _route(self, text: str | None, data: bytes | None) -> None:
        if self.peer.dead or not await self.relay.route(self.peer, text, data):
            self.lost = True
            raise self._gone()

    async def recv(self) -> Message | Chunk:
        if self.peer.dead and self.peer.queue.empty():
            raise self._gone()
        data = await self.peer.queue.get()
        self.peer.taken()
        if data is _CLOSED or not isinstance(data, (str, bytes)):
            raise self._gone()
        return self.decode(data)

    def decode(self, data: str | bytes) -> Message | Chunk:
        return self.view.receive(data)

    def _gone(self) -> Exception:
        return self.peer.error or RelayGone("the relay in this process stopped")

    async def close(self) -> None:
        if not self.peer.dead:
            self.peer.end()
            await self.relay.leave(self.peer)


async def open_local(
    relay: Relay,
    room: str,
    *,
    role: str,
    name: str,
    create: bool,
    session: str | None = None,
    **_ignored: Any,
) -> LocalConnection:
    """Join (or open) room ``room`` on ``relay`` from inside its own process."""
    peer = LocalPeer(relay.limits.local_queue_frames)
    joining = hello(room, role=role, name=name, client=CLIENT, create=create, session=session)
    result = await relay.join(peer, joining, peer.address)
    if isinstance(result, Refused):
        if result.code in ROOM_REFUSALS:
            raise RoomError(result.message, result.code)
        raise PeerProtocolError(result.message, result.code)
    await relay.announce(peer)
    return LocalConnection(relay, peer, result.peer.id, {p.id: p for p in result.others}, peer.room or room)
