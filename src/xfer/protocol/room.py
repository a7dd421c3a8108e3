"""The relay's rooms as a machine without I/O: membership, the join limits, session
replacement and fan-out bookkeeping. The relay's shell (``relay/app.py``) feeds it joins,
leaves and routed messages and does what the results say; a bus (``relay/buses.py``)
seats the peers other relays hold.

Peers are known by id and by an opaque ``handle`` (whatever the shell sends frames
through); the room never touches one. There is no clock: each join passes ``now``
(monotonic seconds) for the joins-per-minute token bucket.

A member is ``here`` (``relay_id`` None: this relay holds its connection) or a stand-in
for a peer another relay holds. A room is forgotten as soon as none of its members is
here: the other relays keep their own view.

There is no per-peer state to speak of beyond membership, so no transition table: a
peer is in a room or not, and leaving twice is no error (a connection that is evicted
also ends, and both paths leave).
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from .closes import Close, Refusal
from .limits import LIMITS, Limits
from .machine import Event
from .messages import MAX_ID, Accept, Cancel, Done, Message, PeerInfo, Reject, Subscribe, Unsubscribe

H = TypeVar("H")


@dataclass(eq=False)
class Member(Generic[H]):
    """A peer seated in a room."""

    info: PeerInfo
    handle: H
    address: str = ""
    session: str | None = None  # the peer's session secret (peers here only)
    relay_id: str | None = None  # None: this relay holds the peer; else the relay that does

    @property
    def here(self) -> bool:
        return self.relay_id is None


@dataclass(eq=False)
class OpenRoom(Generic[H]):
    id: str
    creator_address: str
    peers: dict[int, Member[H]] = field(default_factory=dict)
    # (sender, transfer) -> receivers that accepted: where a chunk sent "to everyone" goes
    fanout: dict[tuple[int, int], set[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Joined(Event, Generic[H]):
    """The peer is seated: ``peer`` is its info with its new id, ``others`` those already
    there, ``replaced`` its stale connection (same session: it reconnected), if any."""

    peer: PeerInfo
    others: tuple[PeerInfo, ...]
    replaced: Member[H] | None = None
    room: str = ""  # the room joined: the nameplate the relay picked when the hello left it empty


@dataclass(frozen=True)
class Refused(Event):
    """The join is refused: send ``code`` and ``message`` in an error, then close with ``close``."""

    refusal: Refusal
    message: str = ""

    def __post_init__(self) -> None:
        if not self.message:
            object.__setattr__(self, "message", self.refusal.message)

    @property
    def code(self) -> str:
        return self.refusal.code

    @property
    def close(self) -> Close:
        return self.refusal.close


@dataclass(frozen=True)
class Left(Event, Generic[H]):
    """The peer left: ``remaining`` are the members still in the room (to be told)."""

    peer_id: int
    remaining: tuple[Member[H], ...]
    forgotten: bool  # the room had nobody left here and is forgotten


# Nameplates are small numbers: whoever can join rooms by number could look for open ones
# and race their receivers (each try costs the sender one of its few wrong-code attempts).
# An address that named too many rooms that were not open (``missed_joins_per_minute``,
# creates with a nameplate count too: they would probe as well) may name none for a while,
# whether or not the room it names is open, so a scan learns nothing more.
MISSED = Refused(Refusal.RATE_LIMITED, "too many joins of rooms that are not open from this address; wait a minute")


def address_key(host: str) -> str:
    """What the per-address limits count a client as: an IPv4 address as it is, an IPv6
    address by its /64 (one subscriber's network holds 2^64 addresses, so counting them one
    by one would limit nobody), an IPv4-mapped IPv6 address as the IPv4 one. Anything that is
    not an address (a test client, ``local``) stays as it is."""
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])  # a zone ("fe80::1%eth0") names no other host
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class _Bucket:
    """A token bucket: ``rate`` tokens a minute, at most ``rate`` saved up."""

    __slots__ = ("tokens", "stamp")

    def __init__(self, rate: int, now: float) -> None:
        self.tokens = float(rate)
        self.stamp = now

    def has(self, rate: int, now: float) -> bool:
        """Whether a token is left, without taking it."""
        self.tokens = min(float(rate), self.tokens + max(0.0, now - self.stamp) * rate / 60.0)
        self.stamp = now
        return self.tokens >= 1.0

    def take(self, rate: int, now: float) -> bool:
        if self.has(rate, now):
            self.tokens -= 1.0
            return True
        return False


def _random_id() -> int:
    return secrets.randbelow(MAX_ID) + 1


class Room(Generic[H]):
    """Every room this relay takes part in. ``new_id`` draws a peer id (tests pass their own)."""

    def __init__(self, limits: Limits = LIMITS, *, new_id: Callable[[], int] = _random_id) -> None:
        self.limits = limits
        self.rooms: dict[str, OpenRoom[H]] = {}
        self._rooms_by_address: dict[str, int] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._misses: dict[str, _Bucket] = {}  # per address: joins that named a room not open
        self._new_id = new_id

    # -- what the shell reads ------------------------------------------------------------

    @property
    def peer_count(self) -> int:
        """Peers connected to this relay (not those other relays hold)."""
        return sum(1 for r in self.rooms.values() for m in r.peers.values() if m.here)

    def rooms_of(self, address: str) -> int:
        """Rooms open that ``address`` opened."""
        return self._rooms_by_address.get(address, 0)

    def member(self, room_id: str, peer_id: int) -> Member[H] | None:
        room = self.rooms.get(room_id)
        return room.peers.get(peer_id) if room is not None else None

    def local_peers(self, room_id: str, but: int = 0) -> list[H]:
        """The handles of a room's peers here, but ``but``: whom a membership event reaches."""
        room = self.rooms.get(room_id)
        if room is None:
            return []
        return [m.handle for pid, m in room.peers.items() if m.here and pid != but]

    def relays_of(self, room_id: str) -> set[str]:
        """The other relays that hold peers of the room."""
        room = self.rooms.get(room_id)
        return {m.relay_id for m in room.peers.values() if m.relay_id is not None} if room else set()

    # -- joins and leaves ----------------------------------------------------------------

    def free_nameplate(self) -> str:
        """The smallest nameplate no open room has: what a room opened without one gets
        (small numbers are short to say)."""
        n = 1
        while str(n) in self.rooms:
            n += 1
        return str(n)

    def rate_ok(self, address: str, now: float) -> bool:
        """Take one join token of ``address``."""
        return self._bucket(self._buckets, address, self.limits.joins_per_minute, now).take(
            self.limits.joins_per_minute, now
        )

    def _bucket(self, buckets: dict[str, _Bucket], address: str, rate: int, now: float) -> _Bucket:
        if len(buckets) > self.limits.remembered_addresses:  # forget old addresses rather than grow
            buckets.clear()
        bucket = buckets.get(address)
        if bucket is None:
            bucket = buckets[address] = _Bucket(rate, now)
        return bucket

    def join(
        self,
        room_id: str,
        *,
        create: bool,
        address: str,
        name: str,
        role: str,
        client: str,
        handle: H,
        now: float,
        session: str | None = None,
    ) -> Joined[H] | Refused:
        """Seat a peer of this relay in a room, within the limits; an empty ``room_id``
        (with ``create``) opens a room under a free nameplate."""
        limits = self.limits
        if not self.rate_ok(address, now):
            return Refused(Refusal.RATE_LIMITED)
        if not room_id and create:
            room_id = self.free_nameplate()
        else:  # a nameplate named: scanning them for open rooms must be slow (see MISSED)
            misses = self._bucket(self._misses, address, limits.missed_joins_per_minute, now)
            if not misses.has(limits.missed_joins_per_minute, now):
                return MISSED
            if room_id not in self.rooms:
                misses.take(limits.missed_joins_per_minute, now)
        room = self.rooms.get(room_id)
        if room is None:
            if not create:
                return Refused(Refusal.ROOM_NOT_FOUND)
            if len(self.rooms) >= limits.max_rooms:
                return Refused(Refusal.RELAY_FULL)
            if self.rooms_of(address) >= limits.max_rooms_per_address:
                return Refused(Refusal.TOO_MANY_ROOMS)
        stale_id = None
        if room is not None and session is not None:
            stale_id = next((pid for pid, m in room.peers.items() if m.session == session), None)
        if room is not None and len(room.peers) - (stale_id is not None) >= limits.max_peers_per_room:
            return Refused(Refusal.ROOM_FULL)
        if room is None:
            room = self._open(room_id, address)
        replaced = self._remove(room, stale_id) if stale_id is not None else None
        peer_id = 0
        while peer_id == 0 or peer_id in room.peers:
            peer_id = self._new_id()
        info = PeerInfo(id=peer_id, name=name, role=role, client=client)
        others = tuple(m.info for m in room.peers.values())
        room.peers[peer_id] = Member(info, handle, address=address, session=session)
        return Joined(info, others, replaced, room_id)

    def seat(self, room_id: str, member: Member[H], creator_address: str) -> None:
        """Seat a member whose join was decided elsewhere (Redis), opening the room here if needed."""
        room = self.rooms.get(room_id)
        if room is None:
            room = self._open(room_id, creator_address)
        room.peers[member.info.id] = member

    def leave(self, room_id: str, peer_id: int) -> Left[H] | None:
        """Remove a peer; None if it was not there. A room with nobody here is forgotten."""
        room = self.rooms.get(room_id)
        if room is None or peer_id not in room.peers:
            return None
        self._remove(room, peer_id)
        forgotten = not any(m.here for m in room.peers.values())
        if forgotten:
            del self.rooms[room_id]
            left = self._rooms_by_address.get(room.creator_address, 0) - 1
            if left > 0:
                self._rooms_by_address[room.creator_address] = left
            else:
                self._rooms_by_address.pop(room.creator_address, None)
        return Left(peer_id, tuple(room.peers.values()), forgotten)

    def _open(self, room_id: str, creator_address: str) -> OpenRoom[H]:
        room = self.rooms[room_id] = OpenRoom(room_id, creator_address)
        self._rooms_by_address[creator_address] = self.rooms_of(creator_address) + 1
        return room

    @staticmethod
    def _remove(room: OpenRoom[H], peer_id: int) -> Member[H]:
        member = room.peers.pop(peer_id)
        for key, receivers in list(room.fanout.items()):
            receivers.discard(peer_id)
            if key[0] == peer_id:  # an emptied set stays: its chunks go to nobody, not to all
                del room.fanout[key]
        return member

    # -- fan-out -------------------------------------------------------------------------

    def subscribe(self, room_id: str, sender: int, transfer: int, receiver: int, accepted: bool) -> None:
        """Note that ``receiver`` accepted (or no longer takes) ``sender``'s transfer."""
        room = self.rooms.get(room_id)
        if room is None or sender not in room.peers:  # a transfer of nobody here: nothing to fan out
            return
        if accepted:
            if len(room.fanout) < 4 * self.limits.max_peers_per_room:  # bounded, whatever peers claim
                room.fanout.setdefault((sender, transfer), set()).add(receiver)
        elif (sender, transfer) in room.fanout:
            room.fanout[(sender, transfer)].discard(receiver)

    def finished(self, room_id: str, sender: int, transfer: int, receiver: int) -> None:
        """The sender told ``receiver`` it is done: forget the pair, and the transfer once nobody is left."""
        room = self.rooms.get(room_id)
        if room is None:
            return
        receivers = room.fanout.get((sender, transfer))
        if receivers is not None:
            receivers.discard(receiver)
            if not receivers:
                del room.fanout[(sender, transfer)]

    def note(self, room_id: str, sender: int, message: Message) -> None:
        """What a routed message from ``sender`` changes of the fan-out: a subscribe or
        unsubscribe to a sender (or, from a page whose transfers go in clear through the
        download bridge, an accept, reject or cancel) (un)subscribes, a done to a receiver
        ends its part."""
        to = message.to
        if not to:
            return
        if isinstance(message, Unsubscribe):  # either side of a pair says its part is over
            room = self.rooms.get(room_id)
            if room is not None and (to, message.transfer) in room.fanout:
                # A receiver leaves its sender's transfer: an emptied list stays (its chunks go to nobody)
                self.subscribe(room_id, to, message.transfer, sender, False)
            else:
                self.finished(room_id, sender, message.transfer, to)  # a sender, done with a receiver: forgotten
        elif isinstance(message, (Accept, Reject, Cancel, Subscribe)):
            self.subscribe(room_id, to, message.transfer, sender, isinstance(message, (Accept, Subscribe)))
        elif isinstance(message, Done):
            self.finished(room_id, sender, message.transfer, to)

    def targets(self, room_id: str, sender: int, to: int | None, transfer: int | None = None) -> list[H] | None:
        """Who a frame from ``sender`` goes to; ``None`` when ``to`` is not in the room.

        A chunk to everyone (``to`` 0) of a transfer that receivers accepted goes to
        those receivers only: the sender's data crosses its link once, fanned out here.
        """
        room = self.rooms.get(room_id)
        if room is None:
            return None
        if to:
            member = room.peers.get(to)
            return None if member is None or to == sender else [member.handle]
        accepted = room.fanout.get((sender, transfer)) if transfer is not None else None
        if accepted is not None:
            return [room.peers[pid].handle for pid in accepted if pid in room.peers]
        return [m.handle for pid, m in room.peers.items() if pid != sender]
