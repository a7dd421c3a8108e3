"""The Redis bus's upkeep: this relay's heartbeat and rooms renewed, dead relays'
peers reaped, and everything written back when Redis answers again.

A relay whose heartbeat key expired is dead; each relay with peers in a room with the
dead relay's peers removes them and tells its own peers (``peer-left``), within
``expiry`` plus one beat. When this relay loses Redis it keeps serving rooms whose
peers are all here, refuses new joins (``unavailable``, close 1013: clients retry),
tells its peers that the others left, and, when Redis answers again, writes its peers
back and reconciles every room it holds.
"""

from __future__ import annotations

import time

from ..protocol.relays import RemoteJoined, RemoteLeft
from ..protocol.room import OpenRoom
from .buses import Handle
from .redis_channel import ChannelPart
from .redis_core import FAILURES, PREFIX, RESEAT, field_of, log, members


class UpkeepPart(ChannelPart):
    _grace_until: float  # no reaping before: after Redis restarts, heartbeats come back first

    async def _beat_once(self) -> None:
        """Renew this relay's heartbeat and its rooms; reap dead relays' peers; come back after an outage."""
        try:
            await self._heart.set(f"{PREFIX}alive:{self.relay_id}", "1", px=int(self.expiry * 1000))
            if not self.up:
                # Frames for our peers come only on our channel: announce them only once Redis
                # has us subscribed again (redis-py may be reconnecting the subscription quietly).
                if not self._subscribed.is_set() or not await self._listening():
                    raise ConnectionError("not subscribed to this relay's channel yet")
                was_down = bool(self.last_error)
                # Up before the resync: it tells our peers who is back, and what they send those
                # peers at once must go out (a frame to another relay is dropped while down).
                self.up = True
                await self._resync()
                if was_down:  # other relays' heartbeats may be missing for a beat: don't reap them yet
                    self._grace_until = time.monotonic() + self.expiry
                    log.warning("Redis at %s answers again: rooms are shared again", self.display_url)
            await self._flush_leaves()
            await self._renew_rooms()
            old = time.monotonic() - 5 * self.expiry  # news older than this cannot be overtaken
            for key in [key for key, when in self._departed.items() if when < old]:
                del self._departed[key]
            if time.monotonic() >= self._grace_until:
                await self._reap()
        except FAILURES as exc:
            self._lost(exc)

    async def _listening(self) -> bool:
        """Whether Redis counts a subscriber on this relay's channel (ours)."""
        [(_channel, count)] = await self.redis.pubsub_numsub(self.channel)
        return int(count) > 0

    async def _flush_leaves(self) -> None:
        for (room_id, peer_id), relays in list(self._pending_leaves.items()):
            await self._leave_redis(room_id, peer_id, self.relay_id)
            del self._pending_leaves[(room_id, peer_id)]
            await self._publish(relays, RemoteLeft(room_id, peer_id))

    async def _renew_rooms(self) -> None:
        rooms = [room for room in self.room.rooms.values() if self.room.local_peers(room.id)]
        if not rooms:
            return
        now = int(time.time() * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for room in rooms:
                pipe.pexpire(f"{PREFIX}room:{room.id}", self.room_ttl_ms)
                pipe.zadd(f"{PREFIX}rooms", {room.id: now})
                pipe.zadd(f"{PREFIX}addr:{room.creator_address}", {room.id: now})
            await pipe.execute()

    async def _reap(self) -> None:
        """Remove from rooms the peers of relays whose heartbeat expired."""
        held: dict[str, list[tuple[OpenRoom[Handle], int]]] = {}
        for room in self.room.rooms.values():
            for pid, member in room.peers.items():
                if member.relay_id is not None:
                    held.setdefault(member.relay_id, []).append((room, pid))
        if not held:
            return
        relays = list(held)
        async with self.redis.pipeline(transaction=False) as pipe:
            for relay_id in relays:
                pipe.exists(f"{PREFIX}alive:{relay_id}")
            alive = await pipe.execute()
        for relay_id, is_alive in zip(relays, alive):
            if is_alive:
                continue
            log.info("relay %s stopped beating: its peers leave their rooms", relay_id)
            for room, pid in held[relay_id]:
                await self._leave_redis(room.id, pid, relay_id)
                self._remote_left(room.id, pid)

    async def _resync(self) -> None:
        """Redis answers again (perhaps restarted, empty): write our peers back, then
        take the rooms' members as Redis has them, telling our peers what changed."""
        await self._flush_leaves()
        reseat = self.redis.register_script(RESEAT)
        now = int(time.time() * 1000)
        for room in list(self.room.rooms.values()):
            local = [m for m in room.peers.values() if m.here]
            if not local:
                continue
            for member in local:
                await reseat(
                    keys=[f"{PREFIX}room:{room.id}", f"{PREFIX}rooms", f"{PREFIX}addr:{room.creator_address}"],
                    args=[
                        now,
                        self.room_ttl_ms,
                        room.id,
                        room.creator_address,
                        field_of(member.info.id),
                        self._entry(member.info, member.session),
                    ],
                )
            found = members(await self.redis.hgetall(f"{PREFIX}room:{room.id}"))
            for pid, (relay_id, info) in found.items():
                if relay_id != self.relay_id and pid not in room.peers:
                    self._remote_joined(room.id, relay_id, info)
            for pid, member in list(room.peers.items()):
                if not member.here and pid not in found:  # its relay may not be back yet
                    self._remote_left(room.id, pid, gone=False)
            relays = {relay_id for relay_id, _ in found.values() if relay_id != self.relay_id}
            for member in local:
                await self._publish(relays, RemoteJoined(room.id, self.relay_id, member.info))
