"""Rooms, membership and limits: the relay's state, apart from any socket.

On its own the hub is the whole in-process bus: every peer of every room is here.
With a Redis bus (``bus.RedisBus``) the hub is this relay's view of the rooms its
peers are in: its own peers, and stand-ins (``relay_id`` set) for the peers that
other relays hold. Redis decides joins then; the hub routes.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol

from ..protocol import PeerInfo
from ..protocol.limits import Limits
from ..protocol.messages import MAX_ID

RelayLimits = Limits  # the relay reads the relay's part of the one Limits


class Peer(Protocol):
    """A connected peer as the hub sees it: something that can be sent frames."""

    info: PeerInfo
    address: str
    session: str | None
    relay_id: str | None  # None for a peer on this relay; else the relay that holds it

    async def send(self, data: str | bytes) -> None: ...


class JoinRefused(Exception):
    """A join that the hub refuses; ``code`` travels in the error message."""

    def __init__(self, code: str, message: str, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.close_code = close_code


# Close codes (documented in docs/protocol.md).
CLOSE_NORMAL = 1000
CLOSE_RESTART = 1012  # the relay is going away: come back later
CLOSE_PROTOCOL = 4000
CLOSE_VERSION = 4001
CLOSE_ROOM_NOT_FOUND = 4004
CLOSE_HELLO_TIMEOUT = 4008
CLOSE_REPLACED = 4010  # the same peer connected again; this connection is stale
CLOSE_TOO_SLOW = 4011  # the peer stopped reading
CLOSE_ROOM_FULL = 4009
CLOSE_RATE_LIMITED = 4029


@dataclass
class Room:
    id: str
    creator_address: str
    peers: dict[int, Peer] = field(default_factory=dict)
    # (sender, transfer) -> receivers that accepted: where a chunk sent "to everyone" goes
    fanout: dict[tuple[int, int], set[int]] = field(default_factory=dict)


class _Bucket:
    """A token bucket: ``rate`` tokens a minute, at most ``rate`` saved up."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, rate: int) -> None:
        self.tokens = float(rate)
        self.stamp = time.monotonic()

    def take(self, rate: int) -> bool:
        now = time.monotonic()
        self.tokens = min(float(rate), self.tokens + (now - self.stamp) * rate / 60.0)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Hub:
    def __init__(self, limits: RelayLimits | None = None) -> None:
        self.limits = limits or RelayLimits()
        self.rooms: dict[str, Room] = {}
        self._rooms_by_address: dict[str, int] = defaultdict(int)
        self._buckets: dict[str, _Bucket] = {}

    @property
    def peer_count(self) -> int:
        """Peers connected to this relay (not those other relays hold)."""
        return sum(1 for r in self.rooms.values() for p in r.peers.values() if p.relay_id is None)

    def local_peers(self, room_id: str, but: int = 0) -> list[Peer]:
        """The peers of a room that this relay holds, but ``but``: whom a membership event reaches."""
        room = self.rooms.get(room_id)
        if room is None:
            return []
        return [p for pid, p in room.peers.items() if p.relay_id is None and pid != but]

    def seat(self, room_id: str, peer_id: int, peer: Peer, creator_address: str) -> None:
        """Put a peer in a room that was decided elsewhere (Redis), opening the room here if needed."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self.rooms[room_id] = Room(room_id, creator_address)
        room.peers[peer_id] = peer

    def _rate_ok(self, address: str) -> bool:
        if len(self._buckets) > 100_000:  # forget old addresses rather than grow without bound
            self._buckets.clear()
        bucket = self._buckets.get(address)
        if bucket is None:
            bucket = self._buckets[address] = _Bucket(self.limits.joins_per_minute)
        return bucket.take(self.limits.joins_per_minute)

    def join(self, room_id: str, create: bool, peer: Peer) -> tuple[int, list[PeerInfo], Peer | None]:
        """Add ``peer`` to a room; return its new id, the others already there, and the
        stale connection it replaces (same session secret: the peer reconnected), if any."""
        limits = self.limits
        if not self._rate_ok(peer.address):
            raise JoinRefused("rate-limited", "too many joins from this address; wait a minute", CLOSE_RATE_LIMITED)
        room = self.rooms.get(room_id)
        if room is None:
            if not create:
                raise JoinRefused("room-not-found", "no room with this code is open", CLOSE_ROOM_NOT_FOUND)
            if len(self.rooms) >= limits.max_rooms:
                raise JoinRefused("relay-full", "this relay holds as many rooms as it can", CLOSE_RATE_LIMITED)
            if self._rooms_by_address[peer.address] >= limits.max_rooms_per_address:
                raise JoinRefused("too-many-rooms", "too many open rooms from this address", CLOSE_RATE_LIMITED)
            room = self.rooms[room_id] = Room(room_id, peer.address)
            self._rooms_by_address[peer.address] += 1
        stale = None
        if peer.session is not None:
            for pid, other in room.peers.items():
                if other.session == peer.session:
                    stale = room.peers.pop(pid)
                    break
        if len(room.peers) >= limits.max_peers_per_room:
            raise JoinRefused("room-full", "this room is full", CLOSE_ROOM_FULL)
        peer_id = 0
        while peer_id == 0 or peer_id in room.peers:
            peer_id = secrets.randbelow(MAX_ID) + 1
        others = [p.info for p in room.peers.values()]
        room.peers[peer_id] = peer
        return peer_id, others, stale

    def subscribe(self, room_id: str, sender: int, transfer: int, receiver: int, accepted: bool) -> None:
        """Note that ``receiver`` accepted (or no longer takes) ``sender``'s transfer."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        if accepted:
            if len(room.fanout) < 4 * self.limits.max_peers_per_room:  # bounded, whatever peers claim
                room.fanout.setdefault((sender, transfer), set()).add(receiver)
        elif (sender, transfer) in room.fanout:
            room.fanout[(sender, transfer)].discard(receiver)

    def finished(self, room_id: str, sender: int, transfer: int, receiver: int) -> None:
        """The sender told ``receiver`` it is done: forget the pair, and the transfer once nobody is left."""
        room = self.rooms.get(room_id)
        receivers = room.fanout.get((sender, transfer)) if room else None
        if receivers is not None:
            receivers.discard(receiver)
            if not receivers:
                del room.fanout[(sender, transfer)]

    def leave(self, room_id: str, peer_id: int) -> list[Peer] | None:
        """Remove a peer; return the peers still in the room (to be told), None if it was not there.

        A room is forgotten once none of its peers is on this relay.
        """
        room = self.rooms.get(room_id)
        if room is None or room.peers.pop(peer_id, None) is None:
            return None
        for key, receivers in list(room.fanout.items()):
            receivers.discard(peer_id)
            if key[0] == peer_id:
                del room.fanout[key]
        if not any(p.relay_id is None for p in room.peers.values()):
            del self.rooms[room_id]
            left = self._rooms_by_address[room.creator_address] - 1
            if left > 0:
                self._rooms_by_address[room.creator_address] = left
            else:
                self._rooms_by_address.pop(room.creator_address, None)
        return list(room.peers.values())

    def targets(self, room_id: str, sender: int, to: int | None, transfer: int | None = None) -> list[Peer] | None:
        """Who a frame from ``sender`` goes to; ``None`` when ``to`` is not in the room.

        A chunk to everyone (``to`` 0) of a transfer that receivers accepted goes to
        those receivers only: the sender's data crosses its link once, fanned out here.
        """
        room = self.rooms.get(room_id)
        if room is None:
            return None
        if to:
            peer = room.peers.get(to)
            return None if peer is None or to == sender else [peer]
        accepted = room.fanout.get((sender, transfer)) if transfer is not None else None
        if accepted is not None:
            return [room.peers[pid] for pid in accepted if pid in room.peers]
        return [p for pid, p in room.peers.items() if pid != sender]
