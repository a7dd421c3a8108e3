"""The Redis bus's channel: what other relays send to this one, and the stand-ins for
the peers they hold.

Each relay subscribes to one channel, ``xfer:relay:<relay id>``, and other relays
publish there what their peers send to peers of this relay (frames, once per relay
however many receivers it holds) and membership news; messages are
``protocol.relays`` messages, parsed by its one parser. Pub/sub does not push back,
so every frame taken off the channel goes to an outbox per receiving peer at once;
the senders' end-to-end credit window bounds those outboxes and Redis's output
buffer for the channel.
"""

from __future__ import annotations

import asyncio
import time

from ..protocol import PeerInfo, PeerJoined, PeerLeft, ProtocolError, parse_header, parse_message, serialize
from ..protocol.messages import Message
from ..protocol.relays import (
    DOWNLOAD_KINDS,
    Deliver,
    Evict,
    RemoteJoined,
    RemoteLeft,
    parse_relay_message,
    serialize_relay,
)
from ..protocol.room import Member
from .buses import Handle
from .outbox import Outbox
from .redis_core import FAILURES, PREFIX, RedisCore, log


class RemotePeer:
    """A peer that another relay holds: what is sent to it goes through Redis."""

    __slots__ = ("info", "relay_id", "room", "bus", "dead")

    def __init__(self, bus: ChannelPart, room: str, relay_id: str, info: PeerInfo) -> None:
        self.bus = bus
        self.room: str | None = room
        self.relay_id = relay_id
        self.info: PeerInfo | None = info
        self.dead = False

    async def send(self, data: str | bytes) -> None:
        assert self.info is not None and self.room is not None
        await self.bus.deliver(self.relay_id, self.room, [self.info.id], data)

    def drop(self, code: int) -> None:  # its own relay decides that
        pass

    async def close(self, code: int, error: object = None) -> None:
        pass


def remote_member(bus: ChannelPart, room_id: str, relay_id: str, info: PeerInfo) -> Member[Handle]:
    return Member(info, RemotePeer(bus, room_id, relay_id, info), address="remote", relay_id=relay_id)


class ChannelPart(RedisCore):
    """Listening on this relay's channel, and the remote peers' comings and goings."""

    _subscribed: asyncio.Event

    async def deliver(self, relay_id: str, room_id: str, ids: list[int], data: str | bytes) -> None:
        """Send a frame to peers ``ids`` of room ``room_id`` that relay ``relay_id`` holds."""
        if not self.up:
            return  # its peers have been told the others left; the frame has nobody to reach
        try:
            await self.redis.publish(f"{PREFIX}relay:{relay_id}", serialize_relay(Deliver(room_id, tuple(ids), data)))
        except FAILURES as exc:
            self._lost(exc)

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
            except FAILURES as exc:
                self._lost(exc)
                self._subscribed.clear()
            finally:
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]  # typed from redis 8
                except FAILURES:
                    pass
            await asyncio.sleep(min(1.0, self.expiry / 4))

    async def _received(self, data: bytes) -> None:
        if data[:1] in DOWNLOAD_KINDS:
            try:
                parse_relay_message(data)
            except ProtocolError as exc:
                log.warning("dropped a broken download message from the bus: %s", exc)
                return
            self.inbound.download(data[:1], data[1:])
            return
        try:
            message = parse_relay_message(data)
        except ProtocolError as exc:
            log.warning("dropped a broken message from the bus: %s", exc)
            return
        if isinstance(message, Deliver):
            await self._frame(message.room, message.ids, message.frame)
        elif isinstance(message, RemoteJoined):
            self._remote_joined(message.room, message.relay, message.peer)
        elif isinstance(message, RemoteLeft):
            self._remote_left(message.room, message.id)
        elif isinstance(message, Evict):
            member = self.room.member(message.room, message.id)
            if member is not None and member.here:
                member.handle.drop(message.code)

    async def _frame(self, room_id: str, ids: tuple[int, ...], data: str | bytes) -> None:
        room = self.room.rooms.get(room_id)
        if room is None:
            return
        targets = [room.peers[i].handle for i in ids if i in room.peers and room.peers[i].here]
        message: Message | None = None
        try:
            if isinstance(data, str):
                message = parse_message(data, limits=self.limits)
                sender = message.sender
                if sender is None:
                    raise ProtocolError("a frame from another relay names no sender")
                self.room.note(room_id, sender, message)
            else:
                sender = parse_header(data)[0]
        except ProtocolError:
            log.warning("dropped a broken frame from the bus")
            return
        if not targets:
            return
        binary = data if isinstance(data, bytes) else None
        if await self.inbound.intercept(room_id, sender, message, binary, targets):
            return
        for peer in targets:
            self._post(peer, data)

    def _post(self, peer: Handle, data: str | bytes) -> None:
        """Queue a frame for our ``peer``: frames and news from the bus reach it in the order they came."""
        assert peer.room is not None and peer.info is not None
        key = (peer.room, peer.info.id)
        box = self._outboxes.get(key)
        if box is None or box.peer is not peer:
            box = self._outboxes[key] = Outbox(peer, self.limits.outbox_bytes)
        box.put(data)

    def _remote_joined(self, room_id: str, relay_id: str, info: PeerInfo) -> None:
        room = self.room.rooms.get(room_id)
        if room is None or info.id in room.peers or (room_id, info.id) in self._departed:
            return
        self.room.seat(room_id, remote_member(self, room_id, relay_id, info), room.creator_address)
        message = serialize(PeerJoined(peer=info))
        for peer in self.room.local_peers(room_id, but=info.id):
            self._post(peer, message)

    def _remote_left(self, room_id: str, peer_id: int, gone: bool = True) -> None:
        """A remote peer left (``gone``), or is out of reach while Redis is (not ``gone``)."""
        room = self.room.rooms.get(room_id)
        member = room.peers.get(peer_id) if room else None
        if room is not None and gone:
            self._departed[(room_id, peer_id)] = time.monotonic()  # ids are never reused
        if member is None or member.here:
            return
        self.inbound.peer_left(room_id, peer_id)
        self.room.leave(room_id, peer_id)
        message = serialize(PeerLeft(peer_id=peer_id))
        for other in self.room.local_peers(room_id):
            self._post(other, message)

    def _forget_remote(self) -> None:
        """Redis is gone: the peers other relays hold are out of reach; tell ours they left."""
        for room in list(self.room.rooms.values()):
            for pid, member in list(room.peers.items()):
                if not member.here:
                    self._remote_left(room.id, pid, gone=False)
