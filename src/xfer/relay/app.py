"""The relay as an ASGI app: the page, /healthz and the WebSocket endpoint on one port.

``Relay`` is the WebSocket shell around ``protocol.room.Room``: it reads frames,
checks them, asks the room whom they go to and sends them; joins go through the bus
(``buses.LocalBus`` on its own, ``bus.RedisBus`` when relays share rooms).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import __version__
from ..protocol import (
    PROTOCOL_VERSION,
    Error,
    Hello,
    Limits,
    Message,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    VersionMismatch,
    Welcome,
    check_version,
    parse_header,
    parse_message,
    serialize,
)
from ..protocol.closes import Close, Refusal
from ..protocol.limits import LIMITS
from ..protocol.message_fields import PROTOCOL_MAJOR, VERSION_PATTERN
from ..protocol.room import Joined, Refused, Room
from .budget import Budget
from .buses import Bus, Handle, Inbound, LocalBus
from .download import DownloadBridge
from .memory import Memory
from .peer import PeerConnection
from .web import HostCheck, env_hosts, origin_allowed, own_names, page_routes
from .wire import Door, wire_of

log = logging.getLogger("xfer.relay")

WS_PATH = "/ws"
PLACEHOLDER_RELAY = "ws://HOST:PORT"  # a relay's public address when nobody gave one
CLOSE_NORMAL = Close.NORMAL


MEMORY_FULL = Refused(
    Refusal.RELAY_FULL, "this relay is using all the memory it may (--max-memory); try again later or use another relay"
)


async def _broadcast(peers: list[Handle], data: str | bytes) -> None:
    for peer in peers:
        await peer.send(data)


class Relay:
    """Speaks the protocol with each peer of this relay, around the ``Room`` and a ``Bus``."""

    def __init__(self, room: Room[Handle], bus: Bus) -> None:
        self.room = room
        self.bus = bus
        self.downloads = DownloadBridge(room, bus)  # files to browser pages leave as HTTP downloads
        self.memory = Memory(room.limits.max_memory)
        bus.bind(
            room,
            Inbound(
                intercept=self._intercept_from_bus, peer_left=self.downloads.peer_left, download=self.downloads.from_bus
            ),
        )

    @property
    def limits(self) -> Limits:
        return self.room.limits

    async def _intercept_from_bus(
        self, room: str, sender: int, message: Message | None, data: bytes | None, targets: list[Handle]
    ) -> bool:
        return bool(await self.downloads.intercept(room, sender, message, data, targets, from_bus=True))

    async def _forward(self, room: str, peers: list[Handle], data: str | bytes) -> None:
        """Send a frame to peers; those other relays hold get it through the bus, once per relay."""
        remote: dict[str, list[int]] | None = None
        for peer in peers:
            relay_id = peer.relay_id
            if relay_id is None:
                await peer.send(data)
            elif peer.info is not None:
                if remote is None:
                    remote = {}
                remote.setdefault(relay_id, []).append(peer.info.id)
        if remote:
            for relay_id, ids in remote.items():
                await self.bus.deliver(relay_id, room, ids, data)

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        conn = PeerConnection(ws, self.limits.send_timeout, self.evict)
        wire = wire_of(ws.scope)
        try:
            if await self._hello(conn):
                budget = Budget(self.limits, asyncio.get_running_loop().time())
                if wire is not None:
                    wire.attach(conn, self, budget)  # its chunks may skip this app from now on
                await self._serve_peer(conn, budget)
        finally:
            if wire is not None:
                wire.detach()
            await self.leave(conn)

    async def evict(self, peer: Handle, code: int) -> None:
        """Remove a peer from its room now and tell the others; close it if it listens."""
        await self.leave(peer)
        if not isinstance(peer, PeerConnection):
            await peer.close(code)  # an in-process peer ends its queue; a remote one is its relay's
            return
        try:
            await asyncio.wait_for(peer.ws.close(code), 2.0)
        except Exception:
            log.debug("close of an unresponsive peer", exc_info=True)

    async def _hello(self, conn: PeerConnection) -> bool:
        limits = self.limits
        try:
            first = await asyncio.wait_for(conn.ws.receive(), limits.hello_timeout)
        except asyncio.TimeoutError:
            await conn.close(Close.HELLO_TIMEOUT, Error(code="timeout", message="no hello in time"))
            return False
        if first["type"] == "websocket.disconnect":
            return False
        try:
            text = first.get("text")
            if text is None:
                raise ProtocolError("the first message must be a hello text frame")
            other = _other_version(text, limits)
            if other is not None:  # before parsing: a 1.x hello names its room in a way 2.0 refuses
                await conn.close(Close.VERSION, other)
                return False
            hello = parse_message(text, limits=limits)
            if not isinstance(hello, Hello):
                raise ProtocolError("the first message must be a hello")
            check_version(hello.version)
        except VersionMismatch as exc:
            await conn.close(Close.VERSION, Error(code=exc.code, message=str(exc)))
            return False
        except ProtocolError as exc:
            await conn.close(Close.PROTOCOL, Error(code=exc.code, message=str(exc)))
            return False
        result = await self.join(conn, hello, conn.address)
        if isinstance(result, Refused):
            await conn.close(result.close, Error(code=result.code, message=result.message))
            return False
        welcome = Welcome(version=PROTOCOL_VERSION, peer_id=result.peer.id, peers=result.others, room=conn.room)
        await conn.send(serialize(welcome))
        await self.announce(conn)
        return True

    async def join(self, peer: Handle, hello: Hello, address: str) -> Joined[Handle] | Refused:
        """Seat ``peer`` (sets its ``info`` and ``room``); a stale connection it replaces is
        taken out and its room told. The caller welcomes the peer, then ``announce``s it."""
        if hello.create and hello.room not in self.room.rooms and self.memory.full():
            return MEMORY_FULL
        result = await self.bus.join(hello, peer, address)
        if isinstance(result, Refused):
            return result
        peer.info = result.peer
        peer.room = result.room or hello.room
        stale = result.replaced
        if stale is not None:
            stale.handle.dead = True
            others = self.room.local_peers(peer.room, but=result.peer.id)  # other relays tell their own
            await _broadcast(others, serialize(PeerLeft(peer_id=stale.info.id)))
            if stale.here:
                asyncio.get_running_loop().create_task(self.evict(stale.handle, Close.REPLACED))
        return result

    async def announce(self, peer: Handle) -> None:
        """Tell the room that ``peer`` joined: our peers here, other relays through the bus."""
        assert peer.info is not None and peer.room is not None
        others = self.room.local_peers(peer.room, but=peer.info.id)
        await _broadcast(others, serialize(PeerJoined(peer=peer.info)))
        await self.bus.joined(peer.room, peer.info)

    async def _serve_peer(self, conn: PeerConnection, budget: Budget) -> None:
        loop = asyncio.get_running_loop()
        while True:
            event = await conn.ws.receive()
            if event["type"] == "websocket.disconnect":
                return
            text, data = event.get("text"), event.get("bytes")
            # wire.py charged it already, and says how long to wait
            wait = event.get("wait", 0.0) if event.get("charged") else budget.charge(text, data, loop.time())
            if wait > 0:  # over its budget: its socket is not read meanwhile (uvicorn reads on when we do)
                await asyncio.sleep(wait)
            if not await self.route(conn, text, data):
                return

    def direct_targets(self, peer: PeerConnection, data: bytes) -> list[Handle] | None:
        """Whom a chunk from ``peer`` goes to when it may skip ``route`` (wire.py): a chunk
        whose ``from`` is ``peer`` itself, to peers of this relay (on WebSockets, or in its own
        process), none of them a page's download; each has a ``wire.Door`` as its ``wire``.
        None: ``route`` it, which checks, refuses and routes all the rest."""
        try:
            sender, to, transfer = parse_header(data)
        except ProtocolError:
            return None
        if peer.info is None or peer.room is None or sender != peer.info.id or self.downloads.by_page:
            return None
        targets = self.room.targets(peer.room, sender, to or None, transfer)
        if targets is None:
            return None
        for target in targets:
            if getattr(target, "wire", None) is None:  # another relay's peer, or not attached yet
                return None
        return targets

    def direct_text(self, peer: PeerConnection, text: str) -> tuple[str, list[Door]] | None:
        """A text message from ``peer`` as it goes on, and the doors it goes through, when it
        may skip ``route`` (wire.py): a message between peers that parses (as ``route`` parses
        it), to peers of this relay whose buffers have room (on WebSockets, or in its own
        process), that the download bridge leaves alone. The room notes it, as ``route`` does.
        None: ``route`` it, which checks, refuses, waits and routes all the rest."""
        if peer.info is None or peer.room is None or peer.dead:
            return None
        try:
            message = parse_message(text, limits=self.limits)
        except ProtocolError:
            return None
        me, room = peer.info.id, peer.room
        targets = self.room.targets(room, me, message.to or None) if message.routed else None
        if targets is None or not self.downloads.passes(message, targets):
            return None
        doors: list[Door] = []
        for target in targets:
            door: Door | None = getattr(target, "wire", None)
            if door is None:  # another relay's peer, or not attached yet
                return None
            if target.dead or door.shut:
                continue  # gone: an awaited send to it did nothing either
            if not door.ready:
                return None  # full: route's send waits for it
            doors.append(door)
        self.room.note(room, me, message)
        return serialize(replace(message, sender=me)), doors

    async def route(self, conn: Handle, text: str | None, data: bytes | None) -> bool:
        """Check one frame from ``conn`` and pass it on; False when ``conn`` was closed for it."""
        assert conn.info is not None and conn.room is not None
        me, room = conn.info.id, conn.room
        message = None
        try:
            transfer = None
            if data is not None:
                sender, to, transfer = parse_header(data)
                if sender != me:
                    raise ProtocolError("chunk header names another peer as its sender")
                payload: str | bytes = data
            else:
                message = parse_message(text or "", limits=self.limits)
                if not message.routed:
                    raise ProtocolError(f"{message.type} is not a message between peers")
                to = message.to or 0
                payload = serialize(replace(message, sender=me))
                self.room.note(room, me, message)
        except ProtocolError as exc:
            await conn.close(Close.PROTOCOL, Error(code=exc.code, message=str(exc)))
            return False
        targets = self.room.targets(room, me, to or None, transfer)
        if targets is None:
            await conn.send(serialize(_no_such_peer(message)))
            return True
        if await self.downloads.intercept(room, me, message, data, targets):
            return True
        await self._forward(room, targets, payload)
        return True

    async def leave(self, peer: Handle) -> None:
        if peer.room is None or peer.info is None:
            return
        room, peer_id = peer.room, peer.info.id
        self.downloads.peer_left(room, peer_id)
        left = self.room.leave(room, peer_id)
        if left is None:
            return
        message = serialize(PeerLeft(peer_id=peer_id))
        await _broadcast([m.handle for m in left.remaining if m.here], message)
        await self.bus.left(room, peer_id, left.remaining)


def _other_version(text: str, limits: Limits) -> Error | None:
    """The ``version`` error for a hello of another major version, in words its user can act on.

    A 1.x xfer reads this error as 2.0 still writes it (same ``error`` message, close
    4001) and shows its message. Anything that is not such a hello is left to the parser."""
    if len(text) > limits.max_control_frame:
        return None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None
    version = data.get("version") if isinstance(data, dict) and data.get("type") == "hello" else None
    match = VERSION_PATTERN.match(version) if isinstance(version, str) else None
    if match is None or int(match.group(1)) == PROTOCOL_MAJOR:
        return None
    said = f"this relay speaks xfer protocol {PROTOCOL_VERSION} and this xfer speaks {version}"
    if int(match.group(1)) < PROTOCOL_MAJOR:
        return Error(code="version", message=f"{said}: update xfer (pip install -U xfer)")
    return Error(code="version", message=f"{said}: the relay is older; its owner must update it")


def _no_such_peer(message: Message | None) -> Error:
    transfer = getattr(message, "transfer", None)
    return Error(code="no-such-peer", message="that peer is not in the room", transfer=transfer)


def create_app(
    limits: Limits | None = None,
    *,
    public_relay: str = PLACEHOLDER_RELAY,
    allowed_origins: tuple[str, ...] = (),
    allowed_hosts: tuple[str, ...] = (),
    bus: Bus | None = None,
) -> Starlette:
    """``allowed_origins``: page origins besides the relay's own that may open WebSockets
    (a reverse proxy that rewrites Host); also settable later as ``app.state.allowed_origins``.
    ``allowed_hosts``: host names the relay answers to besides its own (``web.HostCheck``);
    also settable later as ``app.state.allowed_hosts``.
    ``bus``: a ``bus.RedisBus`` to share rooms with other relays (started by the server);
    by default the relay is on its own (``buses.LocalBus``)."""
    room: Room[Handle] = Room(limits or LIMITS)
    relay = Relay(room, bus if bus is not None else LocalBus())

    async def healthz(request: Request) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "rooms": len(room.rooms),
            "peers": room.peer_count,
            **relay.bus.status(),
        }
        if not relay.bus.up:  # no new joins here until Redis answers: load balancers should look elsewhere
            body["status"] = "degraded"
            return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    async def websocket(ws: WebSocket) -> None:
        if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), app.state.allowed_origins):
            await ws.close(Close.POLICY)  # before accept: the browser gets HTTP 403
            return
        try:
            await relay.handle(ws)
        except WebSocketDisconnect:
            pass

    def names() -> frozenset[str]:
        state = app.state
        public = (public_relay,) if public_relay != PLACEHOLDER_RELAY else ()
        return own_names((*public, *state.allowed_origins), (*state.allowed_hosts, *env_hosts()))

    app = Starlette(
        routes=[
            *page_routes(),
            relay.downloads.route(),
            Route("/healthz", healthz),
            WebSocketRoute(WS_PATH, websocket),
        ],
        middleware=[Middleware(HostCheck, names=names)],
    )
    app.state.room = room
    app.state.hub = room  # the name tests and the CLI have used
    app.state.relay = relay
    app.state.allowed_origins = tuple(allowed_origins)
    app.state.allowed_hosts = tuple(allowed_hosts)
    app.state.limits = room.limits  # what the page's constants.js serves
    return app


__all__ = ["create_app", "WS_PATH", "CLOSE_NORMAL", "Relay"]
