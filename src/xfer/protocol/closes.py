"""How the relay ends a connection or refuses a join: the one list of close codes and
refusal codes, shared by the relay, the peers and the page (docs/protocol.md).

A refusal travels twice: as an ``error`` message whose ``code`` a program reads, then
as the WebSocket close code. ``ROOM_REFUSALS`` are the refusals a peer reports as a
room problem (``RoomError``) rather than as a broken relay.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class Close(IntEnum):
    """WebSocket close codes the relay sends."""

    NORMAL = 1000
    POLICY = 1008  # a browser upgrade from another site's page (Origin check)
    RESTART = 1012  # the relay is going away: come back later
    TRY_LATER = 1013  # the relay cannot seat anyone now (its Redis is away): retry
    PROTOCOL = 4000
    VERSION = 4001
    ROOM_NOT_FOUND = 4004
    HELLO_TIMEOUT = 4008
    ROOM_FULL = 4009
    REPLACED = 4010  # the same peer connected again; this connection is stale
    TOO_SLOW = 4011  # the peer stopped reading
    RATE_LIMITED = 4029


class Refusal(Enum):
    """Why a join is refused: ``code`` (for programs), ``message`` (for people), ``close``."""

    RATE_LIMITED = ("rate-limited", "too many joins from this address; wait a minute", Close.RATE_LIMITED)
    ROOM_NOT_FOUND = ("room-not-found", "no room with this code is open", Close.ROOM_NOT_FOUND)
    RELAY_FULL = ("relay-full", "this relay holds as many rooms as it can", Close.RATE_LIMITED)
    TOO_MANY_ROOMS = ("too-many-rooms", "too many open rooms from this address", Close.RATE_LIMITED)
    ROOM_FULL = ("room-full", "this room is full", Close.ROOM_FULL)
    UNAVAILABLE = ("unavailable", "the relay cannot seat anyone at the moment; try again shortly", Close.TRY_LATER)

    @property
    def code(self) -> str:
        return self.value[0]

    @property
    def message(self) -> str:
        return self.value[1]

    @property
    def close(self) -> Close:
        return self.value[2]

    @classmethod
    def from_code(cls, code: str) -> Refusal | None:
        for refusal in cls:
            if refusal.code == code:
                return refusal
        return None


ROOM_REFUSALS = frozenset(
    r.code
    for r in (
        Refusal.ROOM_NOT_FOUND,
        Refusal.ROOM_FULL,
        Refusal.RATE_LIMITED,
        Refusal.TOO_MANY_ROOMS,
        Refusal.RELAY_FULL,
    )
)
