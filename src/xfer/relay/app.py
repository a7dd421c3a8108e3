"""The relay as an ASGI app: the page, /healthz and the WebSocket endpoint on one port."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import replace

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from .. import __version__
from ..protocol import (
    PROTOCOL_VERSION,
    Accept,
    Cancel,
    Done,
    Error,
    Hello,
    Message,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    ProtocolError,
    Reject,
    VersionMismatch,
    Welcome,
    check_version,
    parse_header,
    parse_message,
    serialize,
)
from .download import DownloadBridge
from .hub import (
    CLOSE_HELLO_TIMEOUT,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL,
    CLOSE_REPLACED,
    CLOSE_TOO_SLOW,
    CLOSE_VERSION,
    Hub,
    JoinRefused,
    RelayLimits,
)
from .web import origin_allowed, page_routes

log = logging.getLogger("xfer.relay")

WS_PATH = "/ws"

CLOSE_POLICY = 1008  # a browser upgrade from another site's page (Origin check)


if sys.version_info >= (3, 11):

    async def _within(coro, seconds: float):
        """``wait_for`` without a task per call: this runs once per forwarded frame."""
        async with asyncio.timeout(seconds):
            return await coro
else:  # pragma: no cover - Python 3.10
    _within = asyncio.wait_for


class PeerConnection:
    """One WebSocket peer, as the hub sees it."""

    __slots__ = ("ws", "address", "info", "room", "session", "dead", "send_timeout", "evict", "_send_lock")
    relay_id = None  # on this relay (a peer that another relay holds is a bus.RemotePeer)

    def __init__(self, ws: WebSocket, send_timeout: float, evict) -> None:
        self.ws = ws
        self.evict = evict  # coroutine function (peer, close code): the relay's way to remove a peer
        self.address = ws.client.host if ws.client else "unknown"
        self.info: PeerInfo | None = None
        self.room: str | None = None
        self.session: str | None = None
        self.dead = False
        self.send_timeout = send_timeout
        self._send_lock = asyncio.Lock()

    async def send(self, data: str | bytes) -> None:
        # Awaited sends are the backpressure: a peer that reads slowly slows its sender.
        # One that stops reading is dropped after send_timeout, so it cannot stall the others.
        if self.dead:
            return
        try:
            async with self._send_lock:
                if isinstance(data, str):
                    await _within(self.ws.send_text(data), self.send_timeout)
                else:
                    await _within(self.ws.send_bytes(data), self.send_timeout)
        except asyncio.TimeoutError:
            log.info("dropping a peer that stopped reading")
            self.drop(CLOSE_TOO_SLOW)
        except Exception:  # the peer went away; its own handler cleans up
            self.dead = True
            log.debug("send to a departed peer dropped", exc_info=True)

    def drop(self, code: int) -> None:
        """Stop sending to this peer, take it out of its room and close it, without
        waiting on it (it may not be reading)."""
        if not self.dead:
            self.dead = True
            asyncio.get_running_loop().create_task(self.evict(self, code))

    async def close(self, code: int, error: Error | None = None) -> None:
        try:
            if error is not None:
                await self.ws.send_text(serialize(error))
            await self.ws.close(code)
        except Exception:
            log.debug("close of a departed peer", exc_info=True)


async def _broadcast(peers: list, data: str | bytes) -> None:
    for peer in peers:
        await peer.send(data)


class Relay:
    """Holds the hub and speaks the protocol with each WebSocket peer.

    ``bus``: a ``bus.RedisBus`` when relays share rooms, else None (the hub alone).
    """

    def __init__(self, hub: Hub, bus=None) -> None:
        self.hub = hub
        self.bus = bus
        self.downloads = DownloadBridge(hub, bus)  # files to browser pages leave as HTTP downloads
        if bus is not None:
            bus.attach(self)

    async def _forward(self, room: str, peers: list, data: str | bytes) -> None:
        """Send a frame to peers; those other relays hold get it through the bus, once per relay."""
        remote = None
        for peer in peers:
            if peer.relay_id is None:
                await peer.send(data)
            else:
                if remote is None:
                    remote = {}
                remote.setdefault(peer.relay_id, []).append(peer.info.id)
        if remote:
            for relay_id, ids in remote.items():
                await self.bus.deliver(relay_id, room, ids, data)

    async def handle(self, ws: WebSocket) -> None:
        await ws.accept()
        conn = PeerConnection(ws, self.hub.limits.send_timeout, self.evict)
        try:
            hello = await self._hello(conn)
            if hello is None:
                return
            await self._serve_peer(conn)
        finally:
            await self.leave(conn)

    async def evict(self, conn: PeerConnection, code: int) -> None:
        """Remove a peer from its room now and tell the others; close it if it listens."""
        await self.leave(conn)
        try:
            await asyncio.wait_for(conn.ws.close(code), 2.0)
        except Exception:
            log.debug("close of an unresponsive peer", exc_info=True)

    async def _hello(self, conn: PeerConnection) -> Hello | None:
        limits = self.hub.limits
        try:
            first = await asyncio.wait_for(conn.ws.receive(), limits.hello_timeout)
        except asyncio.TimeoutError:
            await conn.close(CLOSE_HELLO_TIMEOUT, Error(code="timeout", message="no hello in time"))
            return None
        if first["type"] == "websocket.disconnect":
            return None
        try:
            text = first.get("text")
            if text is None:
                raise ProtocolError("the first message must be a hello text frame")
            hello = parse_message(text, max_size=limits.max_control_frame)
            if not isinstance(hello, Hello):
                raise ProtocolError("the first message must be a hello")
            check_version(hello.version)
        except VersionMismatch as exc:
            await conn.close(CLOSE_VERSION, Error(code=exc.code, message=str(exc)))
            return None
        except ProtocolError as exc:
            await conn.close(CLOSE_PROTOCOL, Error(code=exc.code, message=str(exc)))
            return None
        conn.session = hello.session
        try:
            if self.bus is not None:
                peer_id, others, stale = await self.bus.join(hello, conn)
            else:
                peer_id, others, stale = self.hub.join(hello.room, hello.create, conn)
        except JoinRefused as exc:
            await conn.close(exc.close_code, Error(code=exc.code, message=str(exc)))
            return None
        conn.info = PeerInfo(id=peer_id, name=hello.name, role=hello.role, client=hello.client)
        conn.room = hello.room
        targets = self.hub.local_peers(hello.room, but=peer_id)  # other relays tell their own peers
        if stale is not None and stale.info is not None:
            stale.dead = True
            await _broadcast(targets, serialize(PeerLeft(peer_id=stale.info.id)))
            if stale.relay_id is None:
                asyncio.get_running_loop().create_task(self.evict(stale, CLOSE_REPLACED))
        await conn.send(serialize(Welcome(version=PROTOCOL_VERSION, peer_id=peer_id, peers=tuple(others))))
        await _broadcast(targets, serialize(PeerJoined(peer=conn.info)))
        if self.bus is not None:
            await self.bus.joined(hello.room, conn)
        return hello

    async def _serve_peer(self, conn: PeerConnection) -> None:
        while True:
            event = await conn.ws.receive()
            if event["type"] == "websocket.disconnect":
                return
            if not await self.route(conn, event.get("text"), event.get("bytes")):
                return

    async def route(self, conn, text: str | None, data: bytes | None) -> bool:
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
                message = parse_message(text or "", max_size=self.hub.limits.max_control_frame)
                if not message.routed:
                    raise ProtocolError(f"{message.type} is not a message between peers")
                to = message.to
                payload = serialize(replace(message, sender=me))
                if to and isinstance(message, (Accept, Reject, Cancel)):
                    self.hub.subscribe(room, to, message.transfer, me, isinstance(message, Accept))
                elif to and isinstance(message, Done):
                    self.hub.finished(room, me, message.transfer, to)
        except ProtocolError as exc:
            await conn.close(CLOSE_PROTOCOL, Error(code=exc.code, message=str(exc)))
            return False
        targets = self.hub.targets(room, me, to or None, transfer)
        if targets is None:
            await conn.send(serialize(_no_such_peer(message)))
            return True
        if await self.downloads.intercept(room, me, message, data, targets):
            return True
        await self._forward(room, targets, payload)
        return True

    async def join_local(self, peer, hello: Hello) -> tuple[int, list[PeerInfo]]:
        """Seat a peer that lives in this process (see ``local``); raises ``JoinRefused``."""
        peer.session = hello.session
        peer_id, others, _stale = self.hub.join(hello.room, hello.create, peer)
        peer.info = PeerInfo(id=peer_id, name=hello.name, role=hello.role, client=hello.client)
        peer.room = hello.room
        await _broadcast(self.hub.targets(hello.room, peer_id, None) or [], serialize(PeerJoined(peer=peer.info)))
        return peer_id, others

    async def leave(self, peer) -> None:
        if peer.room is not None and peer.info is not None:
            self.downloads.peer_left(peer.room, peer.info.id)
            others = self.hub.leave(peer.room, peer.info.id)
            if others is None:
                return
            message = serialize(PeerLeft(peer_id=peer.info.id))
            await _broadcast([p for p in others if p.relay_id is None], message)
            if self.bus is not None:
                await self.bus.left(peer.room, peer.info.id, others)


def _no_such_peer(message: Message | None) -> Error:
    transfer = getattr(message, "transfer", None)
    return Error(code="no-such-peer", message="that peer is not in the room", transfer=transfer)


def create_app(
    limits: RelayLimits | None = None,
    *,
    public_relay: str = "ws://HOST:PORT",
    allowed_origins: tuple[str, ...] = (),
    bus=None,
) -> Starlette:
    """``allowed_origins``: page origins besides the relay's own that may open WebSockets
    (a reverse proxy that rewrites Host); also settable later as ``app.state.allowed_origins``.
    ``bus``: a ``bus.RedisBus`` to share rooms with other relays (started by the server)."""
    hub = Hub(limits)
    relay = Relay(hub, bus)

    async def healthz(request: Request) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "protocol": PROTOCOL_VERSION,
            "rooms": len(hub.rooms),
            "peers": hub.peer_count,
        }
        if bus is not None:
            body.update(bus.status())
            if not bus.up:  # no new joins here until Redis answers: load balancers should look elsewhere
                body["status"] = "degraded"
                return JSONResponse(body, status_code=503)
        return JSONResponse(body)

    async def websocket(ws: WebSocket) -> None:
        if not origin_allowed(ws.headers.get("origin"), ws.headers.get("host"), app.state.allowed_origins):
            await ws.close(CLOSE_POLICY)  # before accept: the browser gets HTTP 403
            return
        try:
            await relay.handle(ws)
        except WebSocketDisconnect:
            pass

    app = Starlette(
        routes=[
            *page_routes(),
            relay.downloads.route(),
            Route("/healthz", healthz),
            WebSocketRoute(WS_PATH, websocket),
        ]
    )
    app.state.hub = hub
    app.state.relay = relay
    app.state.allowed_origins = tuple(allowed_origins)
    return app


__all__ = ["create_app", "WS_PATH", "CLOSE_NORMAL"]
