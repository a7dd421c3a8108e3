"""Open or join a room: on the relay given (--relay, XFER_RELAY, the config file), or on
one inside this process that the LAN finds by its nameplate."""

from __future__ import annotations

import secrets
import socket
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ..addresses import lan_address, page_url, relay_ws_url, ws_url_for
from ..errors import RelayUnreachable, UsageError
from ..protocol.guard import Guard
from ..protocol.keys import Runs, link_fragment, link_secret, warm_up
from ..protocol.words import DEFAULT_WORDS, SpokenCode, new_code
from ..transfer.base import peer_dict
from ..transfer.connection import open_room
from ..transfer.secure import SecureLink
from .display import RoomOpened
from .lan import Announced, announce, find_relay
from .verify import Ask, Verifier

if TYPE_CHECKING:
    from ..protocol.keys import Side
    from ..relay.server import RelayServer
    from ..transfer.link import Link
    from .display import Display


@dataclass(frozen=True)
class RoomOptions:
    room: SpokenCode | None  # the room to join (parsed by code_input); None: open one
    relay: str | None  # None: a relay inside this process
    port: int | None
    host: str | None
    public_url: str | None
    name: str | None
    qr: bool
    keepalive: float = 20.0
    reconnect_for: float = 60.0
    peer_timeout: float = 60.0
    code_words: int = DEFAULT_WORDS
    code: SpokenCode | None = None  # --code: the whole code of the room we open
    relay_known: bool = False  # the other side finds the relay without --relay (XFER_RELAY, config)
    ask: Ask | None = None  # --verify: how to ask whether the words match
    runs: Runs | None = None  # this run's secrets, when it goes on from a stopped one (transfer/sender_runs.py)


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
            "peers_relay": self.options.room is not None and self.options.relay is None,  # found on the LAN
        }

    def current(self) -> Link:
        conn: Link | None = getattr(self.task, "conn", None)
        return conn or self.conn


def default_name() -> str:
    return (socket.gethostname() or "xfer").split(".")[0][:64]


def relay_command(role: str, code: str, relay: str | None) -> str:
    """What the other side types: with ``relay`` None, it finds the relay itself (the
    LAN's announcement, or its own default relay)."""
    other = f"xfer receive {code}" if role == "sender" else f"xfer send FILE --room {code}"
    return other if relay is None else f"{other} --relay {relay}"


@asynccontextmanager
async def room_session(opts: RoomOptions, role: str, display: Display) -> AsyncIterator[Session]:
    """Yield a session in the room; print the room's code and QR when we opened it.

    Opening a room, we pick the words and the nameplate comes from: ``--code``; else,
    on a relay in this process, one free on the LAN that we announce (lan.py); else the
    relay picks it. The page that scans the QR proves the link's secret instead of the
    code. Joining without a relay, the LAN says which relay holds the nameplate. Each
    connection (the first, and each after a reconnection) makes new keys with every
    peer: ``SecureLink`` over the link.
    """
    given = opts.room
    opening = given is None
    if not opening:  # we make keys as soon as we are in: SPAKE2's import rides on the lookup and connection
        # (not a daemon: one stopped at exit in the middle of an import can abort the process)
        threading.Thread(target=warm_up, name="xfer-warm-up").start()
    server: RelayServer | None = None
    announced: Announced | None = None
    other = "receiver" if role == "sender" else "sender"
    try:
        if opts.relay:
            candidates = [relay_ws_url(opts.relay)]
        elif given is not None:
            candidates = await find_relay(str(given), given.nameplate, who=other)
        else:
            server, local, public = await _embedded_relay(opts)
            candidates = [local]
        if server is None:
            public = candidates[0]
        if opts.public_url:
            public = relay_ws_url(opts.public_url)
            if server is not None:  # pages reach our relay by that name: it answers to it
                server.app.state.allowed_hosts = (urlsplit(public).hostname or "",)
        name = opts.name or default_name()
        secret = secrets.token_hex(16)  # the same on every reconnect: the relay drops our stale connection
        link = link_secret() if opening else None  # for the page that scans our QR code
        connect_url = candidates[0]

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

        async def first_join(room: str, create: bool) -> Link:
            # The LAN may name several addresses of the relay: the first that answers.
            nonlocal connect_url
            for url in candidates[:-1]:
                connect_url = url
                try:
                    return await join(room, create)
                except RelayUnreachable:
                    continue
            connect_url = candidates[-1]
            return await join(room, create)

        nameplate = ""
        if given is not None:
            nameplate = str(given.nameplate)
        elif opts.code is not None:
            nameplate = str(opts.code.nameplate)
            if server is not None:
                if nameplate in server.room.rooms:
                    raise UsageError(f"nameplate {nameplate} is in use on this relay; choose another code")
                announced = await announce(server.port, opts.host, nameplate=opts.code.nameplate)
        elif server is not None:
            announced = await announce(server.port, opts.host, taken=frozenset(map(int, server.room.rooms)))
            nameplate = str(announced.nameplate) if announced is not None else ""
        first = await first_join(nameplate, opening)
        if server is None and not opts.public_url:
            public = connect_url  # the address of the LAN's relay that answered
        code = given or opts.code or new_code(int(first.room), opts.code_words)
        side: Side = "sender" if role == "sender" else "receiver"
        verifier = Verifier(display.emit, opts.ask)
        runs = opts.runs or Runs()  # this run, across its connections: a sender proves it is the same one

        async def secure(inner: Link) -> Link:
            admit = verifier.check if opts.ask is not None else None
            return await SecureLink.open(inner, Guard(side, name, code, link=link, runs=runs), verifier.emit, admit)

        async def reconnect() -> Link:
            # A peer coming back opens the room again if the relay lost it (a restart).
            return await secure(await join(str(code.nameplate), True))

        relay_url = public if server is None else None
        shown = str(code)
        # The other side finds the relay without --relay: the LAN's announcement (unless the
        # relay is reached elsewhere, --public-url), or its own default relay.
        findable = (announced is not None and not opts.public_url) or (server is None and opts.relay_known)
        session = Session(await secure(first), reconnect, opts, code=shown, relay_url=relay_url)
        try:
            if opening:
                assert link is not None
                url = page_url(public, link_fragment(code.nameplate, link))
                command = relay_command(role, shown, None if findable else public)
                display.show(RoomOpened(shown, url, public, command, opts.qr))
                if isinstance(session.conn, SecureLink):  # while the other side types the code
                    session.conn.guard.prepare()
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
        if announced is not None:
            await announced.close()
        if server is not None:
            await _drain(server)
            await server.stop()


async def _drain(server: RelayServer, timeout: float = 3.0) -> None:
    """Let the other terminals finish with our embedded relay before it closes on them.

    Pages are not waited for: a phone's tab stays in the room until someone closes it, so
    waiting for it cost the whole timeout at every exit (Ctrl-C included); what was sent to
    it is on its socket before the relay's close (1012), which the page shows as the end."""
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while _terminals_left(server) and loop.time() < deadline:
        await asyncio.sleep(0.05)


def _terminals_left(server: RelayServer) -> bool:
    from ..relay.download import WEB_CLIENT

    return any(
        m.here and not m.info.client.startswith(WEB_CLIENT)
        for room in server.room.rooms.values()
        for m in room.peers.values()
    )


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
    server = RelayServer(sock, ping_interval=opts.keepalive, ping_timeout=opts.keepalive, builtin=True)
    await server.start()
    bound = sock.getsockname()[0]
    local = "127.0.0.1" if bound in ("0.0.0.0", "") else ("::1" if bound == "::" else bound)
    shown = (lan_address() or "127.0.0.1") if bound in ("0.0.0.0", "", "::") else bound
    return server, ws_url_for(local, server.port), ws_url_for(shown, server.port)
