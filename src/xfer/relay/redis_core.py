"""What the parts of the Redis bus share: the keys and Lua scripts, the connections,
and how a Redis failure is told apart from a busy pool (by exception type).

What lives in Redis (``xfer:`` keys, one Redis database, not Redis Cluster):

- ``xfer:room:<nameplate>``: a hash, ``creator`` (the address that opened the room) and
  one field ``p<peer id>`` per peer, ``{"relay", "name", "role", "client", "session"}``
  (``session`` is a digest of the peer's session secret, never the secret). Joins and
  leaves are Lua scripts, so two relays never seat the same id or overfill a room.
- ``xfer:rooms`` and ``xfer:addr:<address>``: sorted sets of open rooms (all, and by
  creator address) with the time a relay last vouched for them: ``--max-rooms`` and
  the rooms-per-address limit hold across relays.
- ``xfer:rate:<address>``: the join token bucket of an address, shared by all relays;
  ``xfer:miss:<address>``: its bucket of joins that named a room not open.
- ``xfer:alive:<relay id>``: each relay's heartbeat, a key that expires ``expiry``
  seconds after the relay last renewed it (every ``expiry / 4`` s).
- ``xfer:dl:<token>``: the relay that streams a page's download.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..protocol import PeerInfo, ProtocolError
from ..protocol.limits import LIMITS, Limits
from ..protocol.relays import RelayMessage, serialize_relay
from ..protocol.room import Room
from .buses import Handle, Inbound
from .outbox import Outbox

log = logging.getLogger("xfer.relay.bus")

T = TypeVar("T")

PREFIX = "xfer:"
FAILURES = (RedisError, OSError)  # what a command to Redis raises when Redis is slow or away

# Seat a peer. KEYS: room (none when the relay picks it), rooms, rooms of the address,
#       rate bucket of the address, missed-joins bucket of the address.
# ARGV: now (ms), field, peer JSON, create, session digest, max peers, max rooms,
#       max rooms per address, joins per minute, room ttl (ms), room id ('' to pick one),
#       address, missed joins per minute, prefix of room keys, nameplates to try in order,
#       then nameplates drawn at random to try after them.
# Returns {"ok", room id, creator, stale field, stale JSON, field, JSON, field, JSON...} or {code}.
#
# A room opened without a nameplate gets the smallest whose room key does not exist, in
# this script, so two relays never hand out one nameplate. A nameplate that is named is
# a possible probe: joins of rooms that are not open are counted per address, and an
# address out of misses may name no room (as ``Room.join`` does; ``missed`` is its code).
JOIN = """
local now = tonumber(ARGV[1])
local function bucket(key, rate, take)
  local b = redis.call('HMGET', key, 't', 's')
  local tokens = tonumber(b[1]) or rate
  local stamp = tonumber(b[2]) or now
  tokens = math.min(rate, tokens + math.max(0, now - stamp) * rate / 60000)
  local allowed = tokens >= 1
  if allowed and take then tokens = tokens - 1 end
  redis.call('HSET', key, 't', tostring(tokens), 's', tostring(now))
  redis.call('PEXPIRE', key, 120000)
  return allowed
end
if not bucket(KEYS[4], tonumber(ARGV[9]), true) then return {'rate-limited'} end
local ttl = tonumber(ARGV[10])
local room_id, room_key = ARGV[11], KEYS[1]
if room_id == '' then
  if ARGV[4] ~= '1' then return {'room-not-found'} end
  for n = 1, tonumber(ARGV[15]) do
    if redis.call('EXISTS', ARGV[14] .. n) == 0 then room_id = tostring(n) break end
  end
  if room_id == '' then
    for i = 16, #ARGV do
      if redis.call('EXISTS', ARGV[14] .. ARGV[i]) == 0 then room_id = ARGV[i] break end
    end
  end
  if room_id == '' then return {'relay-full'} end
  room_key = ARGV[14] .. room_id
else
  local misses = tonumber(ARGV[13])
  if not bucket(KEYS[5], misses, false) then return {'missed'} end
  if redis.call('EXISTS', room_key) == 0 then bucket(KEYS[5], misses, true) end
end
if redis.call('EXISTS', room_key) == 0 then
  if ARGV[4] ~= '1' then return {'room-not-found'} end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
  if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[7]) then return {'relay-full'} end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - ttl)
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[8]) then return {'too-many-rooms'} end
  redis.call('HSET', room_key, 'creator', ARGV[12])
  redis.call('ZADD', KEYS[2], now, room_id)
  redis.call('ZADD', KEYS[3], now, room_id)
end
if redis.call('HEXISTS', room_key, ARGV[2]) == 1 then return {'retry'} end
local stale_field, stale_value = '', ''
local all = redis.call('HGETALL', room_key)
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
if stale_field ~= '' then redis.call('HDEL', room_key, stale_field) end
redis.call('HSET', room_key, ARGV[2], ARGV[3])
redis.call('PEXPIRE', room_key, ttl)
local reply = {'ok', room_id, creator, stale_field, stale_value}
for i = 1, #others do reply[#reply + 1] = others[i] end
return reply
"""

# Remove a peer if the given relay holds it; forget the room once empty.
# KEYS: room, rooms. ARGV: field, relay id, room id, prefix of address keys.
LEAVE = """
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
RESEAT = """
redis.call('HSETNX', KEYS[1], 'creator', ARGV[4])
redis.call('HSET', KEYS[1], ARGV[5], ARGV[6])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), ARGV[3])
redis.call('ZADD', KEYS[3], tonumber(ARGV[1]), ARGV[3])
return 1
"""


class _Pool(aioredis.BlockingConnectionPool):
    """A blocking pool that says "all connections in use" with its own exception type.

    redis-py raises a plain ConnectionError when the wait for a free connection times
    out, the same type as for Redis being gone; the bus must tell them apart (slow is
    not lost), so a timed-out wait while the pool is full becomes MaxConnectionsError.
    """

    async def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, asyncio.TimeoutError) and not self.can_get_connection():
                raise MaxConnectionsError("every connection to Redis is in use") from exc
            raise


def busy(exc: BaseException) -> bool:
    """Whether ``exc`` says only that this relay's connections to Redis were all in use."""
    return isinstance(exc, MaxConnectionsError)


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def why(exc: BaseException) -> str:
    """A Redis failure in a few words, from the types of the exception and its causes."""
    chain = _causes(exc)
    if any(isinstance(e, ConnectionRefusedError) for e in chain):
        return "connection refused"
    if any(isinstance(e, (TimeoutError, asyncio.TimeoutError, RedisTimeoutError)) for e in chain):
        return "timed out"
    if any(isinstance(e, (ConnectionResetError, BrokenPipeError, EOFError)) for e in chain):
        return "the connection was closed"
    if isinstance(exc, RedisConnectionError) and not any(isinstance(e, OSError) for e in chain):
        return "the connection was closed"  # redis-py's own: the server closed it
    return str(exc) or type(exc).__name__


def digest(session: str | None) -> str:
    return hashlib.sha256(b"xfer session\0" + session.encode()).hexdigest()[:32] if session else ""


def field_of(peer_id: int) -> str:
    return f"p{peer_id}"


def text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def peer_info(entry: dict[str, Any]) -> PeerInfo | None:
    try:
        return PeerInfo(id=int(entry["id"]), name=entry["name"], role=entry["role"], client=entry.get("client", ""))
    except (KeyError, TypeError, ValueError, ProtocolError):
        log.warning("dropped a broken peer entry from Redis")
        return None


def members(fields: dict[Any, Any]) -> dict[int, tuple[str, PeerInfo]]:
    """A room hash (or the others part of a join's reply) as {peer id: (relay id, info)}."""
    found = {}
    for raw_field, value in fields.items():
        name = text(raw_field)
        if not name.startswith("p"):
            continue
        try:
            entry = json.loads(value)
            peer_id = int(name[1:])
            relay = str(entry["relay"])
        except (ValueError, TypeError, KeyError):
            continue
        info = peer_info({**entry, "id": peer_id})
        if info is not None:
            found[peer_id] = (relay, info)
    return found


class RedisCore:
    """The connections to Redis and what every part of the bus shares."""

    def __init__(self, url: str, *, expiry: float | None = None) -> None:
        """``expiry``: how long a silent relay lives, if not the relay's ``Limits.redis_expiry``."""
        self.url = url
        self._given_expiry = expiry
        self.expiry = expiry if expiry is not None else LIMITS.redis_expiry
        self.relay_id = secrets.token_hex(8)
        self.channel = f"{PREFIX}relay:{self.relay_id}"
        self.up = False
        self.last_error = ""
        self._room: Room[Handle] | None = None
        self._inbound: Inbound | None = None
        self.limits: Limits = LIMITS
        self._outboxes: dict[tuple[str, int], Outbox] = {}  # (room, peer id) -> that peer's outbox
        # leaves Redis missed (it was away, or every connection busy): (room, peer) -> relays to tell
        self._pending_leaves: dict[tuple[str, int], set[str]] = {}
        self._departed: dict[tuple[str, int], float] = {}  # remote peers we heard leave, and when

    def bind(self, room: Room[Handle], inbound: Inbound) -> None:
        """Join the relay: its ``Limits`` (the room's) size the connections, which open here."""
        self._room = room
        self._inbound = inbound
        self.limits = room.limits
        if self._given_expiry is None:
            self.expiry = self.limits.redis_expiry
        self._connect()

    def _connect(self) -> None:
        # RESP2: with RESP3, redis-py logs str() of every pub/sub message (at debug level, but
        # the string is built anyway), which costs more than moving the message.
        # A blocking pool: a burst of joins and leaves waits for a connection instead of failing
        # (redis-py's default pool raises at its limit, which would read as Redis lost).
        expiry = self.expiry
        options: dict[str, Any] = dict(
            protocol=2, socket_connect_timeout=2.0, socket_timeout=max(2.0, expiry / 2), retry_on_timeout=False
        )
        pool = _Pool.from_url(
            self.url, max_connections=self.limits.redis_connections, timeout=max(10.0, expiry), **options
        )
        self.redis = aioredis.Redis(connection_pool=pool)
        # The heartbeat has a connection of its own: however busy the pool, the relay stays alive.
        self._heart = aioredis.Redis.from_url(self.url, max_connections=1, **options)
        self._leave = self.redis.register_script(LEAVE)

    @property
    def bound(self) -> bool:
        return self._room is not None

    @property
    def room(self) -> Room[Handle]:
        assert self._room is not None, "bind() first"
        return self._room

    @property
    def inbound(self) -> Inbound:
        assert self._inbound is not None, "bind() first"
        return self._inbound

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

    def _lost(self, exc: BaseException) -> None:
        if busy(exc):  # every connection to Redis in use for a while: slow, not lost
            log.debug("Redis is slow to answer: %s", exc)
            return
        self.last_error = why(exc)
        if self.up:
            self.up = False
            log.warning(
                "lost Redis at %s (%s): rooms whose peers are all here go on; new joins wait until it answers again",
                self.display_url,
                self.last_error,
            )
            self._forget_remote()

    def _forget_remote(self) -> None:
        """Redis is gone: the peers other relays hold are out of reach (see the channel part)."""
        raise NotImplementedError

    async def _command(self, call: Callable[[], Awaitable[T]], default: T) -> T:
        """``await call()`` against Redis; ``default`` while Redis is away (nobody else can be reached)."""
        if not self.up:
            return default
        try:
            return await call()
        except FAILURES as exc:
            self._lost(exc)
            return default

    async def _publish(self, relays: set[str] | list[str], message: RelayMessage) -> None:
        """Send ``message`` to each relay's channel; a failure counts as Redis lost."""
        if not relays:
            return
        body = serialize_relay(message)
        try:
            for relay_id in relays:
                await self.redis.publish(f"{PREFIX}relay:{relay_id}", body)
        except FAILURES as exc:
            self._lost(exc)

    def _entry(self, info: PeerInfo, session: str | None) -> str:
        return json.dumps(
            {
                "relay": self.relay_id,
                "name": info.name,
                "role": info.role,
                "client": info.client,
                "session": digest(session),
            }
        )

    async def _leave_redis(self, room_id: str, peer_id: int, relay_id: str) -> None:
        await self._leave(
            keys=[f"{PREFIX}room:{room_id}", f"{PREFIX}rooms"],
            args=[field_of(peer_id), relay_id, room_id, f"{PREFIX}addr:"],
        )
