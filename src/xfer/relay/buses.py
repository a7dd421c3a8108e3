"""What the relay asks of the bus that seats its peers, and the in-process bus.

The relay always has a bus. ``LocalBus`` is the whole story for one relay: every
peer of every room is here, and ``Room`` decides joins. ``bus.RedisBus`` (imported
only with ``--redis``) shares rooms between relays: Redis decides joins there, and
frames for peers that other relays hold go through it.

A bus never holds the relay: it is bound once to the relay's ``Room`` and to an
``Inbound`` (the few things the relay does with what comes from other relays).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..protocol import Error, Hello, Message, PeerInfo
from ..protocol.room import Joined, Member, Refused, Room


class Handle(Protocol):
    """A peer as the relay's shell holds it: a WebSocket, an in-process queue, or a
    stand-in for a peer on another relay."""

    info: PeerInfo | None
    room: str | None
    dead: bool

    @property
    def relay_id(self) -> str | None:
        """None for a peer of this relay; else the relay that holds it."""

    async def send(self, data: str | bytes) -> None: ...

    def drop(self, code: int) -> None:
        """Stop sending to the peer, take it out of its room and close it, without waiting on it."""

    async def close(self, code: int, error: Error | None = None) -> None:
        """Close the peer for breaking the protocol (``error`` says why)."""


Members = Sequence[Member[Handle]]


@dataclass(frozen=True)
class Inbound:
    """What the relay does with what other relays send (given to the bus, never the relay)."""

    # the download bridge's look at a frame from another relay; True: it took the frame
    intercept: Callable[[str, int, Message | None, bytes | None, list[Handle]], Awaitable[bool]]
    peer_left: Callable[[str, int], None]  # a peer left (the download bridge ends its downloads)
    download: Callable[[bytes, bytes], None]  # a download message from another relay (kind, body)


class Bus(Protocol):
    """How a relay seats peers and reaches the peers other relays hold."""

    relay_id: str
    expiry: float  # how long another relay may stay silent before it counts as dead
    up: bool  # False: joins are refused until the bus answers again

    def bind(self, room: Room[Handle], inbound: Inbound) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]:
        """What /healthz adds about the bus."""

    async def join(self, hello: Hello, handle: Handle, address: str) -> Joined[Handle] | Refused:
        """Seat ``handle`` in ``hello.room``."""

    async def joined(self, room_id: str, info: PeerInfo) -> None:
        """Our peer ``info`` joined: tell the relays that hold the rest of the room."""

    async def left(self, room_id: str, peer_id: int, remaining: Members) -> None:
        """Our peer left; ``remaining`` are the members still there."""

    async def deliver(self, relay_id: str, room_id: str, ids: list[int], data: str | bytes) -> None:
        """Send a frame to peers ``ids`` of a room that relay ``relay_id`` holds."""

    # -- downloads asked for on one relay for a page on another (relay/download.py) --

    async def own_download(self, token: str) -> None: ...

    async def drop_download(self, token: str) -> None: ...

    async def download_owner(self, token: str) -> str | None: ...

    async def relay_alive(self, relay_id: str) -> bool: ...

    async def to_relay(self, relay_id: str, kind: bytes, body: bytes | dict[str, Any]) -> None: ...


class LocalBus:
    """The bus of a relay on its own: ``Room`` decides every join; there is nobody else."""

    expiry = 10.0
    up = True

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.relay_id = secrets.token_hex(8)
        self._clock = clock
        self._room: Room[Handle] | None = None

    def bind(self, room: Room[Handle], inbound: Inbound) -> None:
        self._room = room

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {}

    async def join(self, hello: Hello, handle: Handle, address: str) -> Joined[Handle] | Refused:
        assert self._room is not None, "bind() first"
        return self._room.join(
            hello.room,
            create=hello.create,
            address=address,
            name=hello.name,
            role=hello.role,
            client=hello.client,
            handle=handle,
            now=self._clock(),
            session=hello.session,
        )

    async def joined(self, room_id: str, info: PeerInfo) -> None:
        pass

    async def left(self, room_id: str, peer_id: int, remaining: Members) -> None:
        pass

    async def deliver(self, relay_id: str, room_id: str, ids: list[int], data: str | bytes) -> None:
        pass  # no peer here is held by another relay

    async def own_download(self, token: str) -> None:
        pass

    async def drop_download(self, token: str) -> None:
        pass

    async def download_owner(self, token: str) -> str | None:
        return None  # every download is this relay's own

    async def relay_alive(self, relay_id: str) -> bool:
        return False

    async def to_relay(self, relay_id: str, kind: bytes, body: bytes | dict[str, Any]) -> None:
        pass
