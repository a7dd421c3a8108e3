"""Relays that share rooms through Redis (``xfer serve --redis URL``).

Imported only when a relay is given a Redis URL: without one, the hub alone is
the in-process bus and nothing here (nor the ``redis`` package) is loaded.

What lives in Redis (``xfer:`` keys, one Redis database, not Redis Cluster):

- ``xfer:room:<room id>``: a hash, ``creator`` (the address that opened the room) and
  one field ``p<peer id>`` per peer, ``{"relay", "name", "role", "client", "session"}``
  (``session`` is a digest of the peer's session secret, never the secret). Joins and
  leaves are Lua scripts, so two relays never seat the same id or overfill a room.
- ``xfer:rooms`` and ``xfer:addr:<address>``: sorted sets of open rooms (all, and by
  creator address) with the time a relay last vouched for them: ``--max-rooms`` and
  the rooms-per-address limit hold across relays.
- ``xfer:rate:<address>``: the join token bucket of an address, shared by all relays.
- ``xfer:alive:<relay id>``: each relay's heartbeat, a key that expires ``expiry``
  seconds after the relay last renewed it (every ``expiry / 4`` s).

Each relay subscribes to one channel, ``xfer:relay:<relay id>``, and publishes there
what its peers send to peers of that relay: frames (once per relay, however many
receivers it holds) and membership news. Pub/sub does not push back, so every
frame a relay takes off its channel goes to a queue per receiving peer at once; the
senders' end-to-end credit window is what bounds those queues and Redis's output
buffer for the channel.

Messages on a relay's channel (relays trust each other and their Redis; they still
parse defensively): ``D`` + room id (32 characters) + count (uint16) + that many peer
ids (uint32) + ``t`` or ``b`` + the frame as the relay forwards it (JSON text with
``from`` set, or a binary chunk); or ``J`` / ``L`` / ``E`` + JSON: a peer joined
(``room``, ``relay``, ``peer``), left (``room``, ``id``), or must be closed because it
reconnected elsewhere (``room``, ``id``, ``code``).

Failures: a relay whose heartbeat key expired is dead; each relay with peers in a
room with the dead relay's peers removes them and tells its own peers (``peer-left``),
within ``expiry`` plus one beat. When this relay loses Redis it keeps serving rooms
whose peers are all here, refuses new joins (``unavailable``, close 1013: clients
retry), tells its peers that the others left, and, when Redis answers again, writes
its peers back and reconciles every room it holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import struct
import time
from collections import deque
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import MaxConnectionsError, RedisError

from ..protocol import (
    Accept,
    Cancel,
    Done,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Reject,
    parse_header,
    parse_message,
    serialize,
)
from ..protocol.messages import MAX_ID
from .hub import (
    CLOSE_RATE_LIMITED,
    CLOSE_REPLACED,
    CLOSE_ROOM_FULL,
    CLOSE_ROOM_NOT_FOUND,
    CLOSE_TOO_SLOW,
    JoinRefused,
    Room,
)

log = logging.getLogger("xfer.relay.bus")

PREFIX = "xfer:"
DEFAULT_EXPIRY = 10.0  # seconds: a relay silent this long is dead, its peers leave their rooms
CLOSE_TRY_LATER = 1013
POOL_CONNECTIONS = 64  # to Redis from one relay, at most; commands beyond wait their turn
OUTBOX_LIMIT = 64 * 1024 * 1024  # bytes queued for one peer before it counts as stalled
DOWNLOAD_KEY_SECONDS = 24 * 3600  # a download's owner in Redis, deleted when it ends
_DOWNLOAD_KINDS = frozenset((b"G", b"H", b"Y", b"W", b"X", b"Z"))
_IDS = struct.Struct("!I")
_COUNT = struct.Struct("!H")
_ROOM_CHARS = 32

# Seat a peer. KEYS: room, rooms, rooms of the address, rate bucket of the address.
# ARGV: now (ms), field, peer JSON, create, session digest, max peers, max rooms,
#       max rooms per address, joins per minute, room ttl (ms), room id, address.
# Returns {"ok", creator, stale field, stale JSON, field, JSON, field, JSON...} or {code}.
_JOIN = """
local now = tonumber(ARGV[1])
local rate = tonumber(ARGV[9])
local bucket = redis.call('HMGET', KEYS[4], 't', 's')
local tokens = tonumber(bucket[1]) or rate
local stamp = tonumber(bucket[2]) or now
tokens = math.min(rate, tokens + math.max(0, now - stamp) * rate / 60000)
local allowed = tokens >= 1
if allowed then tokens = tokens - 1 end
redis.call('HSET', KEYS[4], 't', tostring(tokens), 's', tostring(now))
redis.call('PEXPIRE', KEYS[4], 120000)
if not allowed then return {'rate-limited'} end
local ttl = tonumber(ARGV[10])
if redis.call('EXISTS', KEYS[1]) == 0 then
  if ARGV[4] ~= '1' then return {'room-not-found'} end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then return {'relay-full'} end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then return {'too-many-rooms'} end
  redis.call('HSET', KEYS[1], 'creator', ARGV[12])
  redis.call('ZADD', KEYS[2], now, ARGV[11])
  redis.call('ZADD', KEYS[3], now, ARGV[11])
end
if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 1 then return {'retry'} end
local stale_field, stale_value = '', ''
local all = redis.call('HGETALL', KEYS[1])
local creator = ''
local others = {}
for i = 1, #all, 2 do
  local f, v = all[i], all[i + 1]
  if f == 'creator' then
    creator = v
  elseif ARGV[5] ~= '' and stale_field == '' and cjson.decode(v)['session'] == ARGV[5] then
    stale_field, stale_value = f, v
  else
    others[#others + 1] = f
    others[#others + 1] = v
  end
end
if #others / 2 >= tonumber(ARGV[6]) then return {'room-full'} end
if stale_field ~= '' then redis.call('HDEL', KEYS[1], stale_field) end
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ttl)
local reply = {'ok', creator, stale_field, stale_value}
for i = 1, #others do reply[#reply + 1] = others[i] end
return reply
"""

# Remove a peer if the given relay holds it; forget the room once empty.
# KEYS: room, rooms. ARGV: field, relay id, room id, prefix of address keys.
_LEAVE = """
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v or cjson.decode(v)['relay'] ~= ARGV[2] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('HLEN', KEYS[1]) <= 1 then
  local creator = redis.call('HGET', KEYS[1], 'creator')
  redis.call('DEL', KEYS[1])
  redis.call('ZREM', KEYS[2], ARGV[3])
  if creator then redis.call('ZREM', ARGV[4] .. creator, ARGV[3]) end
end
return 1
"""

# Put this relay's peer back after Redis lost it (a restart), keeping the room's
# other members. KEYS: room, rooms, rooms of the creator. ARGV: now, ttl, room id,
# creator, field, JSON.
_RESEAT = """
redis.call('HSETNX', KEYS[1], 'creator', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), ARGV[3])
redis.call('ZADD', KEYS[3], tonumber(ARGV[1]), ARGV[3])
return 1
"""


class RemotePeer:
    """A peer that another relay holds: what is sent to it goes through Redis."""

    __slots__ = ("info", "relay_id", "room", "bus", "session", "dead")
    address = "remote"

    def __init__(self, bus: RedisBus, room: str, relay_id: str, info: PeerInfo) -> None:
        self.bus = bus
        self.room = room
        self.relay_id = relay_id
        self.info = info
        self.session = None
        self.dead = False

    async def send(self, data: str | bytes) -> None:
        await self.bus.deliver(self.relay_id, self.room, [self.info.id], data)

    def drop(self, code: int) -> None:  # its own relay decides that
        pass


class _Outbox:
    """Frames from the bus for one peer of this relay, sent in order by one task.

    Taking frames off the Redis channel never waits on a peer: a slow peer cannot hold
    up the others, nor make Redis buffer the channel. The senders' credit windows
    bound what waits here; a peer that lets more than ``OUTBOX_LIMIT`` pile up has
    stopped reading and is dropped.
    """

    __slots__ = ("peer", "frames", "size", "wake", "task")

    def __init__(self, peer) -> None:
        self.peer = peer
        self.frames: deque = deque()
        self.size = 0
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, data: str | bytes) -> None:
        self.frames.append(data)
        self.size += len(data)
        self.wake.set()
        if self.size > OUTBOX_LIMIT:
            log.info("dropping a peer that stopped reading")
            self.frames.clear()
            self.peer.drop(CLOSE_TOO_SLOW)

    async def _run(self) -> None:
        while not self.peer.dead:
            if not self.frames:
                self.wake.clear()
                await self.wake.wait()
                continue
            data = self.frames.popleft()
            self.size -= len(data)
            await self.peer.send(data)


def _digest(session: str | None) -> str:
    return hashlib.sha256(b"xfer session\0" + session.encode()).hexdigest()[:32] if session else ""


def _field(peer_id: int) -> str:
    return f"p{peer_id}"


class RedisBus:
    """The relay's link to the others: membership in Redis, frames over pub/sub."""

    def __init__(self, url: str, *, expiry: float = DEFAULT_EXPIRY) -> None:
        self.url = url
        self.expiry = expiry
        self.relay_id = secrets.token_hex(8)
        self.channel = f"{PREFIX}relay:{self.relay_id}"
        # RESP2: with RESP3, redis-py logs str() of every pub/sub message (at debug level, but
        # the string is built anyway), which costs more than moving the message.
        # A blocking pool: a burst of joins and leaves waits for a connection instead of failing
        # (redis-py's default pool raises at its limit, which would read as Redis lost).
        options = dict(
            protocol=2, socket_connect_timeout=2.0, socket_timeout=max(2.0, expiry / 2), retry_on_timeout=False
        )
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=POOL_CONNECTIONS, timeout=max(10.0, expiry), **options
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        # The heartbeat has a connection of its own: however busy the pool, the relay stays alive.
        self._heart = aioredis.Redis.from_url(url, max_connections=1, **options)
        self.up = False
        self.relay = None  # the app.Relay this bus serves, set by attach()
        self._join = self.redis.register_script(_JOIN)
        self._leave = self.redis.register_script(_LEAVE)
        self._reseat = self.redis.register_script(_RESEAT)
        self._outboxes: dict[tuple[str, int], _Outbox] = {}  # (room, peer id) -> that peer's outbox
        # leaves Redis missed (it was away, or every connection busy): (room, peer) -> relays to tell
        self._pending_leaves: dict[tuple[str, int], set[str]] = {}
        self._departed: dict[tuple[str, int], float] = {}  # remote peers we heard leave, and when
        self._tasks: list[asyncio.Task] = []
        self._grace_until = 0.0  # no reaping before: after Redis restarts, heartbeats come back first
        self._subscribed = asyncio.Event()
        self.last_error = ""

    # -- life cycle ---------------------------------------------------------------------

    def attach(self, relay) -> None:
        self.relay = relay

    @property
    def hub(self):
        return self.relay.hub

    @property
    def room_ttl_ms(self) -> int:
        return int(self.expiry * 3000)

    @property
    def display_url(self) -> str:
        """The Redis URL without its password, for messages."""
        parts = urlsplit(self.url)
        if parts.password is None:
            return self.url
        netloc = parts.netloc.rsplit("@", 1)[1]
        user = f"{parts.username}:***@" if parts.username else ":***@"
        return urlunsplit(parts._replace(netloc=user + netloc))

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

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        for box in self._outboxes.values():
            box.task.cancel()
        if self.up:
            try:
                await self._heart.delete(f"{PREFIX}alive:{self.relay_id}")
            except (RedisError, OSError):
                pass
        for client in (self.redis, self._heart):
            try:
                await client.aclose()
            except (RedisError, OSError):
                pass

    def _lost(self, exc: BaseException) -> None:
        if _busy(exc):  # every connection to Redis in use for a while: slow, not lost
            log.debug("Redis is slow to answer: %s", exc)
            return
        self.last_error = _why(exc)
        if self.up:
            self.up = False
            log.warning(
                "lost Redis at %s (%s): rooms whose peers are all here go on; new joins wait until it answers again",
                self.display_url,
                self.last_error,
            )
            self._forget_remote()

    async def _listen(self) -> None:
        """Take frames and news off this relay's channel, reconnecting for as long as it runs."""
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed.set()
                while True:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is not None and message["type"] == "message":
                        try:
                            await self._received(message["data"])
                        except Exception:  # one bad message must not stop the relay's channel
                            log.exception("a message from the bus could not be handled")
            except (RedisError, OSError) as exc:
                self._lost(exc)
                self._subscribed.clear()
            finally:
                try:
                    await pubsub.aclose()
                except (RedisError, OSError):
                    pass
            await asyncio.sleep(min(1.0, self.expiry / 4))

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.expiry / 4)
            await self._beat_once()

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
        except (RedisError, OSError) as exc:
            self._lost(exc)

    async def _listening(self) -> bool:
        """Whether Redis counts a subscriber on this relay's channel (ours)."""
        [(_channel, count)] = await self.redis.pubsub_numsub(self.channel)
        return int(count) > 0

    async def _renew_rooms(self) -> None:
        rooms = [room for room in self.hub.rooms.values() if self.hub.local_peers(room.id)]
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
        held: dict[str, list[tuple[Room, int]]] = {}
        for room in self.hub.rooms.values():
            for pid, peer in room.peers.items():
                if peer.relay_id is not None:
                    held.setdefault(peer.relay_id, []).append((room, pid))
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
                await self._leave(
                    keys=[f"{PREFIX}room:{room.id}", f"{PREFIX}rooms"],
                    args=[_field(pid), relay_id, room.id, f"{PREFIX}addr:"],
                )
                self._remote_left(room.id, pid)

    def _forget_remote(self) -> None:
        """Redis is gone: the peers other relays hold are out of reach; tell ours they left."""
        for room in list(self.hub.rooms.values()):
            for pid, peer in list(room.peers.items()):
                if peer.relay_id is not None:
                    self._remote_left(room.id, pid, gone=False)

    async def _resync(self) -> None:
        """Redis answers again (perhaps restarted, empty): write our peers back, then
        take the rooms' members as Redis has them, telling our peers what changed."""
        await self._flush_leaves()
        now = int(time.time() * 1000)
        for room in list(self.hub.rooms.values()):
            local = self.hub.local_peers(room.id)
            if not local:
                continue
            for peer in local:
                await self._reseat(
                    keys=[f"{PREFIX}room:{room.id}", f"{PREFIX}rooms", f"{PREFIX}addr:{room.creator_address}"],
                    args=[
                        now,
                        self.room_ttl_ms,
                        room.id,
                        room.creator_address,
                        _field(peer.info.id),
                        self._entry(peer),
                    ],
                )
            members = _members(await self.redis.hgetall(f"{PREFIX}room:{room.id}"))
            for pid, (relay_id, info) in members.items():
                if relay_id != self.relay_id and pid not in room.peers:
                    self._remote_joined(room.id, relay_id, info)
            for pid, peer in list(room.peers.items()):
                if peer.relay_id is not None and pid not in members:  # its relay may not be back yet
                    self._remote_left(room.id, pid, gone=False)
            relays = {relay_id for relay_id, _ in members.values() if relay_id != self.relay_id}
            for peer in local:
                await self._publish_news(
                    relays, b"J", {"room": room.id, "relay": self.relay_id, "peer": _info_dict(peer.info)}
                )

    # -- what the relay asks of the bus ---------------------------------------------------

    def _entry(self, peer) -> str:
        info = peer.info
        return json.dumps(
            {
                "relay": self.relay_id,
                "name": info.name,
                "role": info.role,
                "client": info.client,
                "session": _digest(peer.session),
            }
        )

    async def join(self, hello, peer) -> tuple[int, list[PeerInfo], object | None]:
        """Seat ``peer`` in room ``hello.room`` across all relays; sets ``peer.info`` and ``peer.room``."""
        if not self.up:
            raise JoinRefused(
                "unavailable", "the relay cannot reach its Redis at the moment; try again shortly", CLOSE_TRY_LATER
            )
        limits = self.hub.limits
        address = peer.address
        for _ in range(5):
            peer_id = secrets.randbelow(MAX_ID) + 1
            info = PeerInfo(id=peer_id, name=hello.name, role=hello.role, client=hello.client)
            peer.info = info
            try:
                reply = await self._join(
                    keys=[
                        f"{PREFIX}room:{hello.room}",
                        f"{PREFIX}rooms",
                        f"{PREFIX}addr:{address}",
                        f"{PREFIX}rate:{address}",
                    ],
                    args=[
                        int(time.time() * 1000),
                        _field(peer_id),
                        self._entry(peer),
                        int(hello.create),
                        _digest(hello.session),
                        limits.max_peers_per_room,
                        limits.max_rooms,
                        limits.max_rooms_per_address,
                        limits.joins_per_minute,
                        self.room_ttl_ms,
                        hello.room,
                        address,
                    ],
                )
            except (RedisError, OSError) as exc:
                self._lost(exc)
                why = "is busy" if _busy(exc) else "went away"
                raise JoinRefused(
                    "unavailable", f"the relay's Redis {why}; try again shortly", CLOSE_TRY_LATER
                ) from None
            status = _text(reply[0])
            if status != "retry":
                break
        else:
            raise JoinRefused("unavailable", "could not pick a peer id; try again", CLOSE_TRY_LATER)
        if status != "ok":
            raise _refusal(status)
        creator, stale_field, stale_value = _text(reply[1]), _text(reply[2]), reply[3]
        members = _members(dict(zip(reply[4::2], reply[5::2])))
        room_id = hello.room
        # The reply is a snapshot: news that came meanwhile may be newer (a peer that joined
        # after it is in our view, one that left is in the reply). Add what we have not heard of,
        # unless we heard it left; take nothing away (news of leaving does that).
        stale = None
        if stale_field:
            stale_id = int(stale_field[1:])
            stale_relay = json.loads(stale_value)["relay"]
            room = self.hub.rooms.get(room_id)
            stale = room.peers.get(stale_id) if room is not None else None
            if stale is not None:
                self.hub.leave(room_id, stale_id)
            if stale_relay != self.relay_id:
                stale = stale or RemotePeer(self, room_id, stale_relay, PeerInfo(id=stale_id, name="", role="sender"))
                await self._publish_news({stale_relay}, b"E", {"room": room_id, "id": stale_id, "code": CLOSE_REPLACED})
            relays = {relay for relay, _ in members.values() if relay not in (self.relay_id, stale_relay)}
            await self._publish_news(relays, b"L", {"room": room_id, "id": stale_id})
        for pid, (relay_id, other_info) in members.items():
            if relay_id != self.relay_id:
                room = self.hub.rooms.get(room_id)
                if room is None:
                    self.hub.seat(room_id, pid, RemotePeer(self, room_id, relay_id, other_info), creator)
                else:  # our peers there may not have heard of it: its relay's news can come later
                    self._remote_joined(room_id, relay_id, other_info)
        self.hub.seat(room_id, peer_id, peer, creator or address)
        peer.room = room_id
        room = self.hub.rooms[room_id]
        others = [p.info for pid, p in room.peers.items() if pid != peer_id]
        return peer_id, others, stale

    async def joined(self, room_id: str, peer) -> None:
        """Tell the other relays of the room that ``peer`` (ours) joined it."""
        await self._publish_news(
            self._relays_of(room_id), b"J", {"room": room_id, "relay": self.relay_id, "peer": _info_dict(peer.info)}
        )

    async def left(self, room_id: str, peer_id: int, remaining: list) -> None:
        """Our peer left: take it out of Redis and tell the relays that hold the rest of the room."""
        box = self._outboxes.pop((room_id, peer_id), None)
        if box is not None:
            box.task.cancel()
        relays = {p.relay_id for p in remaining if p.relay_id is not None}
        try:
            await self._leave(
                keys=[f"{PREFIX}room:{room_id}", f"{PREFIX}rooms"],
                args=[_field(peer_id), self.relay_id, room_id, f"{PREFIX}addr:"],
            )
        except (RedisError, OSError) as exc:
            self._pending_leaves[(room_id, peer_id)] = relays  # the next beat tries again
            self._lost(exc)
            return
        await self._publish_news(relays, b"L", {"room": room_id, "id": peer_id})

    async def _flush_leaves(self) -> None:
        for (room_id, peer_id), relays in list(self._pending_leaves.items()):
            await self._leave(
                keys=[f"{PREFIX}room:{room_id}", f"{PREFIX}rooms"],
                args=[_field(peer_id), self.relay_id, room_id, f"{PREFIX}addr:"],
            )
            del self._pending_leaves[(room_id, peer_id)]
            await self._publish_news(relays, b"L", {"room": room_id, "id": peer_id})

    def _relays_of(self, room_id: str) -> set[str]:
        room = self.hub.rooms.get(room_id)
        return {p.relay_id for p in room.peers.values() if p.relay_id is not None} if room else set()

    async def deliver(self, relay_id: str, room_id: str, ids: list[int], data: str | bytes) -> None:
        """Send a frame to peers ``ids`` of room ``room_id`` that relay ``relay_id`` holds."""
        if not self.up:
            return  # its peers have been told the others left; the frame has nobody to reach
        if isinstance(data, str):
            kind, body = b"t", data.encode()
        else:
            kind, body = b"b", data
        head = b"D" + room_id.encode() + _COUNT.pack(len(ids)) + b"".join(_IDS.pack(i) for i in ids) + kind
        try:
            await self.redis.publish(f"{PREFIX}relay:{relay_id}", head + body)
        except (RedisError, OSError) as exc:
            self._lost(exc)

    # -- downloads asked for on one relay for a page on another (see download.py) ----------------

    async def _command(self, call, default=None):
        """``await call()`` against Redis; ``default`` while Redis is away (nobody else can be reached)."""
        if not self.up:
            return default
        try:
            return await call()
        except (RedisError, OSError) as exc:
            self._lost(exc)
            return default

    async def own_download(self, token: str) -> None:
        """Note in Redis that this relay streams the download with ``token``."""
        await self._command(lambda: self.redis.set(f"{PREFIX}dl:{token}", self.relay_id, ex=DOWNLOAD_KEY_SECONDS))

    async def drop_download(self, token: str) -> None:
        await self._command(lambda: self.redis.delete(f"{PREFIX}dl:{token}"))

    async def download_owner(self, token: str) -> str | None:
        """The relay that streams the download with ``token``, if any."""
        owner = await self._command(lambda: self.redis.get(f"{PREFIX}dl:{token}"))
        return _text(owner) if owner is not None else None

    async def relay_alive(self, relay_id: str) -> bool:
        return bool(await self._command(lambda: self.redis.exists(f"{PREFIX}alive:{relay_id}"), 0))

    async def to_relay(self, relay_id: str, kind: bytes, body: bytes | dict) -> None:
        """Publish one message of ``kind`` to relay ``relay_id``'s channel (a dict goes as JSON)."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        await self._command(lambda: self.redis.publish(f"{PREFIX}relay:{relay_id}", kind + body))

    async def _publish_news(self, relays, kind: bytes, news: dict) -> None:
        if not relays:
            return
        body = kind + json.dumps(news).encode()
        try:
            for relay_id in relays:
                await self.redis.publish(f"{PREFIX}relay:{relay_id}", body)
        except (RedisError, OSError) as exc:
            self._lost(exc)

    # -- what arrives from other relays ---------------------------------------------------

    async def _received(self, data: bytes) -> None:
        kind = data[:1]
        if kind == b"D":
            room_id = data[1 : 1 + _ROOM_CHARS].decode("ascii")
            (count,) = _COUNT.unpack_from(data, 1 + _ROOM_CHARS)
            start = 1 + _ROOM_CHARS + _COUNT.size
            ids = [_IDS.unpack_from(data, start + 4 * i)[0] for i in range(count)]
            start += 4 * count
            frame_kind, body = data[start : start + 1], data[start + 1 :]
            await self._frame(room_id, ids, body.decode() if frame_kind == b"t" else body)
            return
        if kind in _DOWNLOAD_KINDS:
            self.relay.downloads.from_bus(kind, data[1:])
            return
        news = json.loads(data[1:])
        room_id = news["room"]
        if kind == b"J":
            info = _info(news["peer"])
            if info is not None:
                self._remote_joined(room_id, news["relay"], info)
        elif kind == b"L":
            self._remote_left(room_id, int(news["id"]))
        elif kind == b"E":
            room = self.hub.rooms.get(room_id)
            peer = room.peers.get(int(news["id"])) if room else None
            if peer is not None and peer.relay_id is None:
                peer.dead = True
                asyncio.get_running_loop().create_task(self.relay.evict(peer, int(news["code"])))

    async def _frame(self, room_id: str, ids: list[int], data: str | bytes) -> None:
        room = self.hub.rooms.get(room_id)
        if room is None:
            return
        targets = [room.peers[i] for i in ids if i in room.peers and room.peers[i].relay_id is None]
        message = None
        try:
            if isinstance(data, str):
                message = parse_message(data, max_size=self.hub.limits.max_control_frame)
                sender = message.sender
                to = message.to
                if to and isinstance(message, (Accept, Reject, Cancel)):
                    self.hub.subscribe(room_id, to, message.transfer, sender, isinstance(message, Accept))
                elif to and isinstance(message, Done):
                    self.hub.finished(room_id, sender, message.transfer, to)
            else:
                sender = parse_header(data)[0]
        except ProtocolError:
            log.warning("dropped a broken frame from the bus")
            return
        if not targets:
            return
        if await self.relay.downloads.intercept(
            room_id, sender, message, data if message is None else None, targets, from_bus=True
        ):
            return
        for peer in targets:
            self._post(peer, data)

    def _post(self, peer, data: str | bytes) -> None:
        """Queue a frame for our ``peer``: frames and news from the bus reach it in the order they came."""
        key = (peer.room, peer.info.id)
        box = self._outboxes.get(key)
        if box is None or box.peer is not peer:
            box = self._outboxes[key] = _Outbox(peer)
        box.put(data)

    def _remote_joined(self, room_id: str, relay_id: str, info: PeerInfo) -> None:
        room = self.hub.rooms.get(room_id)
        if room is None or info.id in room.peers or (room_id, info.id) in self._departed:
            return
        self.hub.seat(room_id, info.id, RemotePeer(self, room_id, relay_id, info), room.creator_address)
        message = serialize(PeerJoined(peer=info))
        for peer in self.hub.local_peers(room_id, but=info.id):
            self._post(peer, message)

    def _remote_left(self, room_id: str, peer_id: int, gone: bool = True) -> None:
        """A remote peer left (``gone``), or is out of reach while Redis is (not ``gone``)."""
        room = self.hub.rooms.get(room_id)
        peer = room.peers.get(peer_id) if room else None
        if room is not None and gone:
            self._departed[(room_id, peer_id)] = time.monotonic()  # ids are never reused
        if peer is None or peer.relay_id is None:
            return
        self.relay.downloads.peer_left(room_id, peer_id)
        self.hub.leave(room_id, peer_id)
        message = serialize(PeerLeft(peer_id=peer_id))
        for other in self.hub.local_peers(room_id):
            self._post(other, message)

    def status(self) -> dict:
        return {
            "redis": "up" if self.up else "down",
            "relay_id": self.relay_id,
            **({} if self.up else {"redis_error": self.last_error}),
        }


def _busy(exc: BaseException) -> bool:
    """Whether ``exc`` says only that this relay's connections to Redis were all in use."""
    return isinstance(exc, MaxConnectionsError) or "No connection available" in str(exc)


def _why(exc: BaseException) -> str:
    """A Redis failure in a few words."""
    text = str(exc) or type(exc).__name__
    if "Connect call failed" in text or "Connection refused" in text or "Error 111" in text:
        return "connection refused"
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)) or "Timeout" in type(exc).__name__:
        return "timed out"
    if "Connection closed by server" in text or "Connection reset" in text:
        return "the connection was closed"
    return text


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _info_dict(info: PeerInfo) -> dict:
    return {"id": info.id, "name": info.name, "role": info.role, "client": info.client}


def _info(entry: dict) -> PeerInfo | None:
    try:
        return PeerInfo(id=int(entry["id"]), name=entry["name"], role=entry["role"], client=entry.get("client", ""))
    except (KeyError, TypeError, ValueError, ProtocolError):
        log.warning("dropped a broken peer entry from Redis")
        return None


def _members(fields: dict) -> dict[int, tuple[str, PeerInfo]]:
    """A room hash (or the others part of a join's reply) as {peer id: (relay id, info)}."""
    members = {}
    for field, value in fields.items():
        field = _text(field)
        if not field.startswith("p"):
            continue
        try:
            entry = json.loads(value)
            peer_id = int(field[1:])
        except ValueError:
            continue
        info = _info({**entry, "id": peer_id})
        if info is not None:
            members[peer_id] = (entry["relay"], info)
    return members


_REFUSALS = {  # the same words as the hub's own refusals
    "rate-limited": ("too many joins from this address; wait a minute", CLOSE_RATE_LIMITED),
    "room-not-found": ("no room with this code is open", CLOSE_ROOM_NOT_FOUND),
    "relay-full": ("this relay holds as many rooms as it can", CLOSE_RATE_LIMITED),
    "too-many-rooms": ("too many open rooms from this address", CLOSE_RATE_LIMITED),
    "room-full": ("this room is full", CLOSE_ROOM_FULL),
}


def _refusal(code: str) -> JoinRefused:
    message, close_code = _REFUSALS.get(code, ("the relay refused the join", 4000))
    return JoinRefused(code, message, close_code)
