"""Open or join a room, with the relay given by --relay or one embedded in this process."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..addresses import lan_address, page_url, relay_ws_url, ws_url_for
from ..errors import RelayUnreachable, UsageError
from ..protocol import ProtocolError, new_code, parse_code, room_id
from ..transfer.connection import RelayConnection, open_room
from ..transfer.sender import peer_dict


@dataclass(frozen=True)
class RoomOptions:
    room: str | None
    relay: str | None
    port: int | None
    host: str | None
    public_url: str | None
    name: str | None
    qr: bool


def default_name() -> str:
    return (socket.gethostname() or "xfer").split(".")[0][:64]


def relay_command(role: str, code: str, relay: str) -> str:
    other = "receive" if role == "sender" else "send FILE"
    return f"xfer {other} --room {code} --relay {relay}"


@asynccontextmanager
async def room_session(opts: RoomOptions, role: str, out) -> AsyncIterator[RelayConnection]:
    """Yield a connection in the room; print the room's code and QR when we opened it."""
    code = _code(opts.room)
    server = None
    try:
        if opts.relay:
            connect_url = public = relay_ws_url(opts.relay)
        else:
            if opts.room:
                raise UsageError(
                    "--room needs --relay (or XFER_RELAY): the room lives on the relay of the side that opened it"
                )
            server, connect_url, public = await _embedded_relay(opts)
        if opts.public_url:
            public = relay_ws_url(opts.public_url)
        conn = await open_room(connect_url, room_id(code), role=role, name=opts.name or default_name(),
                               create=opts.room is None)
        try:
            if opts.room is None:
                out.room(code, page_url(public, code), public, relay_command(role, code, public), opts.qr)
            else:
                out("joined", code=code, peers=[peer_dict(p) for p in conn.peers.values()])
            yield conn
        finally:
            try:
                await conn.close()
            except Exception:
                pass
    finally:
        if server is not None:
            await _drain(server)
            await server.stop()


async def _drain(server, timeout: float = 3.0) -> None:
    """Let the other peers finish with our embedded relay before it closes on them."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.hub.peer_count > 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)


def _code(room: str | None) -> str:
    if room is None:
        return new_code()
    try:
        return parse_code(room)
    except ProtocolError as exc:
        raise UsageError(f"{room!r} is not a room code: {exc}") from None


async def _embedded_relay(opts: RoomOptions):
    from ..relay import RelayServer, bind_socket
    from ..relay.server import quiet_uvicorn

    quiet_uvicorn()
    host = opts.host if opts.host is not None else "0.0.0.0"
    try:
        sock = bind_socket(host, opts.port or 0)
    except OSError as exc:
        raise RelayUnreachable(
            f"cannot listen on {host or '*'}:{opts.port or 0} for the embedded relay: {exc.strerror or exc}"
        ) from None
    server = RelayServer(sock)
    await server.start()
    bound = sock.getsockname()[0]
    local = "127.0.0.1" if bound in ("0.0.0.0", "") else ("::1" if bound == "::" else bound)
    shown = (lan_address() or "127.0.0.1") if bound in ("0.0.0.0", "", "::") else bound
    return server, ws_url_for(local, server.port), ws_url_for(shown, server.port)
