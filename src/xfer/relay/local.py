"""A peer in the relay's own process: when ``send`` or ``receive`` hosts the relay, its
own frames go through a bounded queue instead of a loopback WebSocket, so the data
crosses one socket (the other peer's) instead of two.

``LocalConnection`` offers what ``RelayConnection`` offers (send, send_frame, recv,
close, peers, peer_id), and every frame still goes through ``Relay.route``: the same
checks, routing and fan-out as for any peer.
"""

from __future__ import annotations

import asyncio

from ..errors import PeerProtocolError, RelayGone, RoomError
from ..protocol import PROTOCOL_VERSION, Error, Hello, Message, serialize
from ..transfer.connection import CLIENT, RelayConnection
from .hub import JoinRefused

QUEUE_FRAMES = 16  # frames waiting for the local peer; the relay awaits when it is full
_CLOSED = object()


class LocalPeer:
    """The hub's side of a local peer: ``send`` queues, and waits when the queue is full."""

    address = "local"
    relay_id = None  # on this relay

    def __init__(self) -> None:
        self.queue: asyncio.Queue = asyncio.Queue(QUEUE_FRAMES)
        self.info = None
        self.room: str | None = None
        self.session: str | None = None
        self.dead = False
        self.error: Exception | None = None

    async def send(self, data: str | bytes) -> None:
        if not self.dead:
            await self.queue.put(data)

    def drop(self, code: int) -> None:
        self._end()

    async def close(self, code: int, error: Error | None = None) -> None:
        """The relay closes us, for breaking the protocol: keep its reason for the next call."""
        if error is not None:
            self.error = PeerProtocolError(
                f"the relay closed the connection: {error.message or error.code}", error.code
            )
        self._end()

    def _end(self) -> None:
        if not self.dead:
            self.dead = True
            try:
                self.queue.put_nowait(_CLOSED)
            except asyncio.QueueFull:  # the reader will find the flag
                pass


class LocalConnection(RelayConnection):
    def __init__(self, relay, peer: LocalPeer, peer_id: int, peers: dict) -> None:
        super().__init__(ws=None, url="(this process)", peer_id=peer_id, peers=peers)
        self.relay = relay
        self.peer = peer

    async def send(self, message: Message) -> None:
        await self._route(serialize(message), None)

    async def send_frame(self, frame: bytes) -> None:
        await self._route(None, frame)

    async def _route(self, text: str | None, data: bytes | None) -> None:
        if self.peer.dead or not await self.relay.route(self.peer, text, data):
            self.lost = True
            raise self._gone()

    async def recv(self):
        if self.peer.dead and self.peer.queue.empty():
            raise self._gone()
        data = await self.peer.queue.get()
        if data is _CLOSED:
            raise self._gone()
        return self.decode(data)

    def _gone(self) -> Exception:
        return self.peer.error or RelayGone("the relay in this process stopped")

    async def close(self) -> None:
        if not self.peer.dead:
            self.peer._end()
            await self.relay.leave(self.peer)


async def open_local(
    relay, room: str, *, role: str, name: str, create: bool, session: str | None = None, **_ignored
) -> LocalConnection:
    """Join (or open) room ``room`` on ``relay`` from inside its own process."""
    hello = Hello(
        version=PROTOCOL_VERSION, room=room, role=role, name=name, client=CLIENT, create=create, session=session
    )
    peer = LocalPeer()
    try:
        peer_id, others = await relay.join_local(peer, hello)
    except JoinRefused as exc:
        if exc.code in ("room-not-found", "room-full", "rate-limited", "too-many-rooms", "relay-full"):
            raise RoomError(str(exc), exc.code) from None
        raise PeerProtocolError(str(exc), exc.code) from None
    return LocalConnection(relay, peer, peer_id, {p.id: p for p in others})
