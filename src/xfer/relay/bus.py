"""Relays that share rooms through Redis (``xfer serve --redis URL``).

Imported only when a relay is given a Redis URL: without one, ``buses.LocalBus`` is
the bus and nothing here (nor the ``redis`` package) is loaded.

``RedisBus`` is the ``buses.Bus`` that seats peers through Redis and reaches the peers
other relays hold over pub/sub. It is made of parts, one module each:
``redis_core`` (keys, Lua scripts, connections, telling failures apart),
``redis_channel`` (this relay's channel and the stand-ins for remote peers),
``redis_upkeep`` (heartbeats, reaping dead relays, coming back after an outage), and
this module: the life cycle, joins and leaves, frames out, and the download lookups.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from typing import Any

from ..protocol import Hello, PeerInfo, ProtocolError
from ..protocol.closes import Close, Refusal
from ..protocol.message_fields import MAX_NAMEPLATE
from ..protocol.messages import MAX_ID
from ..protocol.relays import Evict, RemoteJoined, RemoteLeft, download_message, serialize_relay
from ..protocol.room import MISSED, Joined, Member, Refused
from .buses import Handle, Members
from .redis_channel import RemotePeer, remote_member
from .redis_core import (
    FAILURES,
    JOIN,
    PREFIX,
    busy,
    digest,
    field_of,
    log,
    members,
    text,
)
from .redis_upkeep import UpkeepPart

__all__ = ["RedisBus", "RemotePeer"]


def _drawn_nameplates(hello: Hello, in_order: int, draws: int) -> list[int]:
    """Where the join script looks for a free nameplate once the first ``in_order`` are taken:
    ``draws`` random ones above them (none when the hello names its room)."""
    if hello.room or in_order >= MAX_NAMEPLATE:
        return []
    return [in_order + 1 + secrets.randbelow(MAX_NAMEPLATE - in_order) for _ in range(draws)]


class RedisBus(UpkeepPart):
    """The relay's link to the others: membership in Redis, frames over pub/sub."""

    def __init__(self, url: str, *, expiry: float | None = None) -> None:
        """``expiry``: a relay silent this long is dead (by default the relay's ``Limits.redis_expiry``).

        The bus connects to Redis when the relay binds it, with the relay's ``Limits``."""
        super().__init__(url, expiry=expiry)
        self._tasks: list[asyncio.Task[None]] = []
        self._grace_until = 0.0
        self._subscribed = asyncio.Event()

    # -- life cycle ---------------------------------------------------------------------

    def _connect(self) -> None:
        super()._connect()
        self._join = self.redis.register_script(JOIN)

    async def start(self) -> None:
        """Connect, subscribe and start beating; if Redis does not answer, say so and keep trying."""
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._listen())]
        try:
            await asyncio.wait_for(self._subscribed.wait(), 3.0)
        except asyncio.TimeoutError:
            pass
        await self._beat_once()
        if self.up:
            log.info("sharing rooms through Redis at %s (this relay is %s)", self.display_url, self.relay_id)
        else:
            log.warning(
                "cannot reach Redis at %s (%s); retrying. Until it answers this relay opens no rooms "
                "and /healthz answers 503",
                self.display_url,
                self.last_error or "no answer",
            )
        self._tasks.append(loop.create_task(self._beat()))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.expiry / 4)
            await self._beat_once()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for box in self._outboxes.values():
            box.cancel()
        if not self.bound:  # never connected
            return
        if self.up:
            try:
                await self._heart.delete(f"{PREFIX}alive:{self.relay_id}")
            except FAILURES:
                pass
        for client in (self.redis, self._heart):
            try:
                await client.aclose()
            except FAILURES:
                pass

    def status(self) -> dict[str, Any]:
        return {
            "redis": "up" if self.up else "down",
            "relay_id": self.relay_id,
            **({} if self.up else {"redis_error": self.last_error}),
        }

    # -- joins and leaves ---------------------------------------------------------------

    async def join(self, hello: Hello, handle: Handle, address: str) -> Joined[Handle] | Refused:
        """Seat ``handle`` in room ``hello.room`` across all relays."""
        if not self.up:
            return Refused(Refusal.UNAVAILABLE, "the relay cannot reach its Redis at the moment; try again shortly")
        limits = self.limits
        for _ in range(5):
            peer_id = secrets.randbelow(MAX_ID) + 1
            info = PeerInfo(id=peer_id, name=hello.name, role=hello.role, client=hello.client)
            try:
                reply = await self._join(
                    keys=[
                        f"{PREFIX}room:{hello.room}",  # with "", the script picks the room and its key
                        f"{PREFIX}rooms",
                        f"{PREFIX}addr:{address}",
                        f"{PREFIX}rate:{address}",
                        f"{PREFIX}miss:{address}",
                    ],
                    args=[
                        int(time.time() * 1000),
                        field_of(peer_id),
                        self._entry(info, hello.session),
                        int(hello.create),
                        digest(hello.session),
                        limits.max_peers_per_room,
                        limits.max_rooms,
                        limits.max_rooms_per_address,
                        limits.joins_per_minute,
                        self.room_ttl_ms,
                        hello.room,
                        address,
                        limits.missed_joins_per_minute,
                        f"{PREFIX}room:",
                        limits.nameplates_in_order,
                        *_drawn_nameplates(hello, limits.nameplates_in_order, limits.nameplate_draws),
                    ],
                )
            except FAILURES as exc:
                self._lost(exc)
                why = "is busy" if busy(exc) else "went away"
                return Refused(Refusal.UNAVAILABLE, f"the relay's Redis {why}; try again shortly")
            status = text(reply[0])
            if status != "retry":
                break
        else:
            return Refused(Refusal.UNAVAILABLE, "could not pick a peer id; try again")
        if status == "missed":
            return MISSED
        if status != "ok":
            refusal = Refusal.from_code(status)
            return (
                Refused(refusal) if refusal is not None else Refused(Refusal.UNAVAILABLE, "the relay refused the join")
            )
        return await self._seated(address, info, handle, hello.session, reply)

    async def _seated(
        self, address: str, info: PeerInfo, handle: Handle, session: str | None, reply: list[Any]
    ) -> Joined[Handle]:
        """Take Redis's answer to a join into this relay's view of the room."""
        room_id, creator, stale_field, stale_value = text(reply[1]), text(reply[2]), text(reply[3]), reply[4]
        others = members(dict(zip(reply[5::2], reply[6::2])))
        # The reply is a snapshot: news that came meanwhile may be newer (a peer that joined
        # after it is in our view, one that left is in the reply). Add what we have not heard of,
        # unless we heard it left; take nothing away (news of leaving does that).
        stale: Member[Handle] | None = None
        if stale_field:
            stale_id = int(stale_field[1:])
            stale_relay = str(json.loads(stale_value)["relay"])
            stale = self.room.member(room_id, stale_id)
            if stale is not None:
                self.room.leave(room_id, stale_id)
            if stale_relay != self.relay_id:
                if stale is None:
                    stale = remote_member(self, room_id, stale_relay, PeerInfo(id=stale_id, name="", role="sender"))
                await self._publish([stale_relay], Evict(room_id, stale_id, int(Close.REPLACED)))
            relays = {relay for relay, _ in others.values() if relay not in (self.relay_id, stale_relay)}
            await self._publish(relays, RemoteLeft(room_id, stale_id))
        for relay_id, other_info in others.values():
            if relay_id != self.relay_id:
                if room_id not in self.room.rooms:
                    self.room.seat(room_id, remote_member(self, room_id, relay_id, other_info), creator)
                else:  # our peers there may not have heard of it: its relay's news can come later
                    self._remote_joined(room_id, relay_id, other_info)
        self.room.seat(room_id, Member(info, handle, address=address, session=session), creator or address)
        room = self.room.rooms[room_id]
        seen = tuple(m.info for pid, m in room.peers.items() if pid != info.id)
        return Joined(info, seen, stale, room_id)

    async def joined(self, room_id: str, info: PeerInfo) -> None:
        """Tell the other relays of the room that our peer ``info`` joined it."""
        await self._publish(self.room.relays_of(room_id), RemoteJoined(room_id, self.relay_id, info))

    async def left(self, room_id: str, peer_id: int, remaining: Members) -> None:
        """Our peer left: take it out of Redis and tell the relays that hold the rest of the room."""
        box = self._outboxes.pop((room_id, peer_id), None)
        if box is not None:
            box.cancel()
        relays = {m.relay_id for m in remaining if m.relay_id is not None}
        try:
            await self._leave_redis(room_id, peer_id, self.relay_id)
        except FAILURES as exc:
            self._pending_leaves[(room_id, peer_id)] = relays  # the next beat tries again
            self._lost(exc)
            return
        await self._publish(relays, RemoteLeft(room_id, peer_id))

    # -- downloads asked for on one relay for a page on another (see download.py) ----------------

    async def own_download(self, token: str) -> None:
        """Note in Redis that this relay streams the download with ``token``."""
        lifetime = int(self.limits.redis_download_key * 1000)  # deleted when the download ends, or then
        await self._command(lambda: self.redis.set(f"{PREFIX}dl:{token}", self.relay_id, px=lifetime), None)

    async def drop_download(self, token: str) -> None:
        await self._command(lambda: self.redis.delete(f"{PREFIX}dl:{token}"), None)

    async def download_owner(self, token: str) -> str | None:
        """The relay that streams the download with ``token``, if any."""
        owner = await self._command(lambda: self.redis.get(f"{PREFIX}dl:{token}"), None)
        return text(owner) if owner is not None else None

    async def relay_alive(self, relay_id: str) -> bool:
        return bool(await self._command(lambda: self.redis.exists(f"{PREFIX}alive:{relay_id}"), 0))

    async def to_relay(self, relay_id: str, kind: bytes, body: bytes | dict[str, Any]) -> None:
        """Publish one download message of ``kind`` to relay ``relay_id`` (a dict goes as JSON)."""
        try:
            message = download_message(kind, body)
        except ProtocolError as exc:
            log.warning("a download message was not sent: %s", exc)
            return
        await self._command(lambda: self.redis.publish(f"{PREFIX}relay:{relay_id}", serialize_relay(message)), None)
