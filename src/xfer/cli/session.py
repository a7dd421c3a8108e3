"""Open or join a room, with the relay given by --relay or one embedded in this process."""

from __future__ import annotations

import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..addresses import lan_address, page_url, relay_ws_url, ws_url_for
from ..errors import RelayUnreachable, UsageError
from ..protocol.guard import Guard
from ..protocol.keys import link_fragment, link_secret
from ..protocol.words import DEFAULT_WORDS, CodeError, SpokenCode, new_code, parse_code
from ..transfer.connection import open_room
from ..transfer.secure import SecureLink
from ..transfer.sender import peer_dict
from .display import RoomOpened

if TYPE_CHECKING:
    from ..protocol.keys import Side
    from ..relay.server import RelayServer
    from ..transfer.link import Link
    from .display import Display


@dataclass(frozen=True)
class RoomOptions:
    room: str | None
    relay: str | None
    port: int | None
    host: str | None
    public_url: str | None
    name: str | None
    qr: bool
    keepalive: float = 20.0
    reconnect_for: float = 60.0
    peer_timeout: float = 60.0
    code_words: int = DEFAULT_WORDS


@dataclass
class Session:
    """The room as the commands use it: the first connection, and how to get another."""

    conn: Link
    reconnect: Callable[[], Awaitable[Link]]
    options: RoomOptions
    task: Any = None  # the sender or receiver, whose connection may have been replaced
    code: str = ""  # the room's spoken code, like 7-guitar-nebula
    relay_url: str | None = None  # the relay as others reach it; None: the one in this process

    def task_options(self) -> dict[str, Any]:
        return {
            "reconnect": self.reconnect,
            "reconnect_for": self.options.reconnect_for,
            "peer_timeout": self.options.peer_timeout,
        }

    def current(self) -> Link:
        conn: Link | None = getattr(self.task, "conn", None)
        return conn or self.conn


def default_name() -> str:
    return (socket.gethostname() or "xfer").split(".")[0][:64]


def relay_command(role: str, code: str, relay: str) -> str:
    other = "receive" if role == "sender" else "send FILE --room"
    return f"xfer {other} {code} --relay {relay}"


@asynccontextmanager
async def room_session(opts: RoomOptions, role: str, display: Display) -> AsyncIterator[Session]:
    """Yield a session in the room; print the room's code and QR when we opened it.

    Opening a room, the relay picks its nameplate and we pick the words; the page that
    scans the QR proves the link's secret instead. Each connection (the first, and each
    after a reconnection) makes new keys with every peer: ``SecureLink`` over the link.
    """
    given = _code(opts.room)
    opening = given is None
    server: RelayServer | None = None
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
        name = opts.name or default_name()
        secret = secrets.token_hex(16)  # the same on every reconnect: the relay drops our stale connection
        link = link_secret() if opening else None  # for the page that scans our QR code

        async def join(room: str, create: bool) -> Link:
            # The relay learns no name: ours travels sealed, to the peers that proved the code.
            if server is not None:  # our own relay: join it in-process, no loopback socket
                from ..relay.local import open_local

                relay = server.app.state.relay
                return await open_local(relay, room, role=role, name="", create=create, session=secret)
            return await open_room(
                connect_url,
                room,
                role=role,
                name="",
                create=create,
                session=secret,
                ping_interval=opts.keepalive,
                ping_timeout=opts.keepalive,
            )

        first = await join("" if given is None else str(given.nameplate), opening)
        code = given or new_code(int(first.room), opts.code_words)
        side: Side = "sender" if role == "sender" else "receiver"

        async def secure(inner: Link) -> Link:
            return await SecureLink.open(inner, Guard(side, name, code, link=link), display.emit)

        async def reconnect() -> Link:
            # A peer coming back opens the room again if the relay lost it (a restart).
            return await secure(await join(str(code.nameplate), True))

        relay_url = public if server is None else None
        shown = str(code)
        session = Session(await secure(first), reconnect, opts, code=shown, relay_url=relay_url)
        try:
            if opening:
                assert link is not None
                url = page_url(public, link_fragment(code.nameplate, link))
                display.show(RoomOpened(shown, url, public, relay_command(role, shown, public), opts.qr))
            else:
                display.emit("joined", code=shown, peers=[peer_dict(p) for p in session.conn.peers.values()])
            yield session
        finally:
            for conn in {id(c): c for c in (session.conn, session.current())}.values():
                try:
                    await conn.close()
                except Exception:
                    pass
    finally:
        if server is not None:
            await _drain(server)
            await server.stop()


async def _drain(server: RelayServer, timeout: float = 3.0) -> None:
    """Let the other peers finish with our embedded relay before it closes on them."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while server.hub.peer_count > 0 and loop.time() < deadline:
        await asyncio.sleep(0.05)


def _code(room: str | None) -> SpokenCode | None:
    if room is None:
        return None
    try:
        return parse_code(room)
    except CodeError as exc:
        raise UsageError(str(exc)) from None


async def _embedded_relay(opts: RoomOptions) -> tuple[RelayServer, str, str]:
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
    server = RelayServer(sock, ping_interval=opts.keepalive, ping_timeout=opts.keepalive)
    await server.start()
    bound = sock.getsockname()[0]
    local = "127.0.0.1" if bound in ("0.0.0.0", "") else ("::1" if bound == "::" else bound)
    shown = (lan_address() or "127.0.0.1") if bound in ("0.0.0.0", "", "::") else bound
    return server, ws_url_for(local, server.port), ws_url_for(shown, server.port)
