"""Run the relay app with uvicorn, either as ``xfer serve`` or inside a peer's process."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import signal
import socket
import ssl
from collections.abc import Iterable

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..errors import LocalFileError, UsageError
from ..protocol.limits import LIMITS, Limits
from ..protocol.room import Room
from .app import create_app
from .buses import Bus, Handle, LocalBus
from .download import QuietAborts
from .gate import Gate, connection_cap
from .wire import WireProtocol


class _HttpProtocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for the first request.

    uvicorn waits for ever on a connection that sends nothing, or sends its
    headers a byte at a time; each such client would hold a socket for good.
    """

    handshake_timeout = LIMITS.handshake_timeout  # each server sets its own Limits' (see RelayServer)
    gate = Gate(LIMITS.max_connections)  # each server has its own (see RelayServer)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._deadline = self.loop.call_later(self.handshake_timeout, self._handshake_expired)
        if not self.gate.admit(len(self.server_state.connections)):  # this one included
            self.transport.abort()  # the newest goes: those already open stay

    def connection_lost(self, exc: Exception | None) -> None:
        self._deadline.cancel()
        super().connection_lost(exc)

    def _handshake_expired(self) -> None:
        transport = self.transport
        cycle: object = self.cycle  # None until the first request came
        if cycle is None and transport.get_protocol() is self and not transport.is_closing():
            transport.abort()  # no request in time: nothing to answer


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind a listening TCP socket. ``host`` may be IPv4, IPv6, a name, or "" for all."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    # Prefer IPv4 for wildcard binds: phones on a LAN reach it, and IPv6 wildcard may be dual-stack-less.
    infos.sort(key=lambda info: info[0] != socket.AF_INET)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(512)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class _KeyIsEncrypted(Exception):
    pass


def _no_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal, which a server must not do.
    raise _KeyIsEncrypted


def tls_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side TLS context from a PEM certificate (chain) and its unencrypted key.

    Raises LocalFileError with a message that names the file at fault.
    """
    texts = {}
    for option, path in (("--tls-cert", certfile), ("--tls-key", keyfile)):
        try:
            with open(path, "rb") as f:
                texts[option] = f.read()
        except OSError as exc:
            raise LocalFileError(f"cannot read {option} {path}: {exc.strerror or exc}") from None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password=_no_password)
    except _KeyIsEncrypted:
        raise LocalFileError(f"--tls-key {keyfile} is encrypted; give the key without a passphrase") from None
    except ssl.SSLError as exc:
        if b"-----BEGIN CERTIFICATE-----" not in texts["--tls-cert"]:
            reason = f"--tls-cert {certfile} holds no PEM certificate"
        elif b"PRIVATE KEY-----" not in texts["--tls-key"]:
            reason = f"--tls-key {keyfile} holds no PEM private key"
        elif exc.reason == "KEY_VALUES_MISMATCH":
            reason = f"--tls-key {keyfile} is not the key of --tls-cert {certfile}"
        else:
            reason = f"cannot use --tls-cert {certfile} with --tls-key {keyfile}: {exc.reason or exc}"
        raise LocalFileError(reason, "tls") from None
    except OSError as exc:  # the files changed between the reads above and here
        raise LocalFileError(f"cannot read the TLS files: {exc.strerror or exc}") from None
    return context


def trusted_proxies(values: Iterable[str]) -> tuple[str, ...]:
    """``--trust-proxy`` values (each may be a comma list) as addresses and networks uvicorn takes.

    No ``*``: uvicorn then takes the first X-Forwarded-For entry, which the client
    itself wrote when its proxy appends; with named proxies it takes the last entry
    that no trusted proxy added.
    """
    trusted = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            if item == "*":
                raise UsageError(
                    "--trust-proxy '*' would let every client choose its own address; "
                    "give the proxies' network instead, e.g. 10.0.0.0/8"
                )
            try:
                item = str(ipaddress.ip_network(item, strict=False)) if "/" in item else str(ipaddress.ip_address(item))
            except ValueError:
                raise UsageError(
                    f"--trust-proxy {item!r}: give the proxy's IP address or network, e.g. 127.0.0.1 or 10.0.0.0/8"
                ) from None
            trusted.append(item)
    return tuple(dict.fromkeys(trusted))


class RelayServer:
    """A relay on one listening socket, started and stopped inside a running event loop.

    ``tls``: serve HTTPS and WSS on the socket with this context (see ``tls_context``).
    ``trusted_proxies``: addresses or networks whose X-Forwarded-For and
    X-Forwarded-Proto are believed (see ``trusted_proxies``); by default none, so
    the per-address limits count the address that really connected.
    """

    def __init__(
        self,
        sock: socket.socket,
        *,
        limits: Limits | None = None,
        public_relay: str = "",
        ping_interval: float | None = None,
        ping_timeout: float | None = None,
        tls: ssl.SSLContext | None = None,
        trusted_proxies: tuple[str, ...] = (),
        bus: Bus | None = None,
        builtin: bool = False,
    ) -> None:
        """``bus``: a ``bus.RedisBus`` to share rooms with other relays; it starts and stops with the server.
        ``builtin``: the relay runs inside ``xfer send``/``xfer receive`` (their own room's relay), so a
        page's downloads through its bridge never leave that machine; the page then does not warn
        that the relay can read them (``constants.js``'s ``builtin_relay``).
        ``ping_interval``, ``ping_timeout``: WebSocket pings, by default every ``limits.keepalive`` seconds."""
        self.sock = sock
        self.tls = tls
        self.bus: Bus = bus if bus is not None else LocalBus()
        limits = limits or LIMITS
        self.app = create_app(limits, public_relay=public_relay, bus=self.bus)
        self.app.state.builtin_relay = builtin
        self._handshake_timeout = limits.handshake_timeout
        reserved = limits.redis_connections if bus is not None else 0
        self.gate = Gate(connection_cap(limits.max_connections, reserved))
        http = type(
            "HttpProtocol", (_HttpProtocol,), {"handshake_timeout": limits.handshake_timeout, "gate": self.gate}
        )
        config = uvicorn.Config(
            self.app,
            http=http,
            ws=WireProtocol,
            ws_max_size=limits.max_binary_frame,
            ws_per_message_deflate=False,
            ws_ping_interval=limits.keepalive if ping_interval is None else ping_interval,
            ws_ping_timeout=limits.keepalive if ping_timeout is None else ping_timeout,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
            server_header=False,
            # uvicorn believes X-Forwarded-For from 127.0.0.1 (or $FORWARDED_ALLOW_IPS) unless told
            # otherwise; anyone on the relay's machine could then pick the address the limits count.
            proxy_headers=bool(trusted_proxies),
            forwarded_allow_ips=list(trusted_proxies) or None,
        )
        config.load()
        logging.getLogger("uvicorn.error").addFilter(_QUIET_ABORTS)  # after uvicorn configured its logging
        config.ssl = tls  # what uvicorn's own ssl_certfile would have built, with our errors and no prompt
        self.server = uvicorn.Server(config)
        self.server.lifespan = config.lifespan_class(config)
        self._upkeep: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        port: int = self.sock.getsockname()[1]
        return port

    @property
    def room(self) -> Room[Handle]:
        room: Room[Handle] = self.app.state.room
        return room

    @property
    def hub(self) -> Room[Handle]:
        """The name the rooms had before (tests and the CLI read it)."""
        return self.room

    async def start(self) -> None:
        await self.bus.start()
        connections = self.server.server_state.connections
        self._upkeep = asyncio.get_running_loop().create_task(
            self.app.state.relay.memory.upkeep(lambda: len(connections))
        )
        if self.tls is None:
            await self.server.startup(sockets=[self.sock])
            return
        # A client that stalls in the TLS handshake never reaches _HttpProtocol's deadline, and
        # asyncio gives it 60 s. uvicorn has no setting for it: hand the same limit as for the
        # first request to the one create_server call of its startup.
        loop = asyncio.get_running_loop()
        limit = self._handshake_timeout
        patched = functools.partial(loop.create_server, ssl_handshake_timeout=limit)
        loop.create_server = patched  # type: ignore[method-assign]
        try:
            await self.server.startup(sockets=[self.sock])
        finally:
            del loop.create_server  # the loop's own method again

    async def stop(self) -> None:
        """Close every peer with 1012 (come back later) and stop listening."""
        server = self.server
        if not server.started:
            return
        server.started = False
        server.should_exit = True
        # uvicorn's own shutdown() stops at the first connection whose close
        # handshake is already under way (websockets raises InvalidState from
        # send_close), leaving the rest open; so close each one here.
        for listener in server.servers:
            listener.close()
        self.sock.close()
        for connection in list(server.server_state.connections):
            try:
                connection.shutdown()
            except Exception:
                transport = getattr(connection, "transport", None)
                if transport is not None:
                    transport.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.server.config.timeout_graceful_shutdown or 0)
        while (server.server_state.connections or server.server_state.tasks) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for task in list(server.server_state.tasks):
            task.cancel()
        for listener in server.servers:
            try:
                await asyncio.wait_for(listener.wait_closed(), 1.0)
            except asyncio.TimeoutError:
                pass
        await self.app.state.relay.downloads.close()
        if self._upkeep is not None:
            self._upkeep.cancel()
        await self.bus.stop()

    async def run_until_signal(self) -> int:
        """Serve until SIGINT or SIGTERM; return the signal number that stopped it."""
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[int] = loop.create_future()

        def stop_on(sig: int) -> None:
            if not stopped.done():
                stopped.set_result(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop_on, sig)
        await self.start()
        try:
            return await stopped
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await self.stop()


_QUIET_ABORTS = QuietAborts()


def quiet_uvicorn() -> None:
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
