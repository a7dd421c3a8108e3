"""``xfer serve``: host a relay (the phone page and the WebSocket endpoint on one port)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from .. import __version__
from .options import DebugOpt, environment

if TYPE_CHECKING:
    from rich.console import Console


def serve(
    ctx: typer.Context,
    host: str = typer.Option("0.0.0.0", "--host", metavar="ADDR", help="Address to listen on."),
    port: int = typer.Option(
        8765,
        "--port",
        "-p",
        envvar="PORT",
        show_envvar=True,
        metavar="PORT",
        help="Port for the page and the WebSocket endpoint.",
    ),
    public_url: str | None = typer.Option(
        None, "--public-url", metavar="URL", help="The address people use to reach this relay, to print."
    ),
    max_peers: int = typer.Option(20, "--max-peers", metavar="N", help="Peers in one room at most."),
    max_rooms: int = typer.Option(10_000, "--max-rooms", metavar="N", help="Rooms open at once at most."),
    max_memory: int = typer.Option(
        1024,
        "--max-memory",
        min=0,
        metavar="MIB",
        help="Resident memory (MiB) past which the relay opens no new rooms; rooms open go on (0: no bound).",
    ),
    joins_per_minute: int = typer.Option(
        60, "--joins-per-minute", metavar="N", help="Joins one address may make a minute."
    ),
    missed_joins_per_minute: int = typer.Option(
        10,
        "--missed-joins-per-minute",
        min=1,
        metavar="N",
        help="Joins to rooms that are not open one address may make a minute (so scanning codes is slow).",
    ),
    max_connections: int = typer.Option(
        10_000,
        "--max-connections",
        min=1,
        metavar="N",
        help="Connections open at once at most (fewer if the limit of open files is lower); "
        "past it the newest are refused.",
    ),
    peer_messages: int = typer.Option(
        500,
        "--peer-messages-per-second",
        min=1,
        metavar="N",
        help="Control messages one connection may send a second; past it the relay reads it more slowly.",
    ),
    peer_control_bytes: int = typer.Option(
        512 * 1024,
        "--peer-control-bytes-per-second",
        min=1,
        metavar="BYTES",
        help="Bytes of control messages (offers, texts) one connection may send a second, likewise.",
    ),
    peer_bytes: int = typer.Option(
        0,
        "--peer-bytes-per-second",
        min=0,
        metavar="BYTES",
        help="Bytes of everything, files included, one connection may send a second (0: no bound).",
    ),
    keepalive: float = typer.Option(
        20.0,
        "--keepalive",
        min=1.0,
        metavar="SECONDS",
        help="Ping peers this often; one silent for twice this long is dropped and its room told.",
    ),
    allow_origin: list[str] = typer.Option(
        [],
        "--allow-origin",
        metavar="URL",
        help="Also accept browser WebSockets from pages at this origin "
        "(repeatable), e.g. https://xfer.example behind a reverse proxy "
        "that rewrites Host.",
    ),
    allow_host: list[str] = typer.Option(
        [],
        "--allow-host",
        metavar="NAME",
        help="Also answer pages and browsers that reach this relay by this host name (repeatable), "
        "e.g. relay.lan. It answers IP addresses, localhost, this machine's name and the names "
        "in --public-url and --allow-origin by itself.",
    ),
    tls_cert: str | None = typer.Option(
        None,
        "--tls-cert",
        metavar="FILE",
        help="Serve HTTPS and WSS with this PEM certificate (chain); needs --tls-key.",
    ),
    tls_key: str | None = typer.Option(
        None, "--tls-key", metavar="FILE", help="The certificate's private key (PEM, without a passphrase)."
    ),
    trust_proxy: list[str] = typer.Option(
        [],
        "--trust-proxy",
        metavar="ADDR",
        help="Believe X-Forwarded-For from this proxy address or network "
        "(repeatable, or a comma list), e.g. 127.0.0.1 behind nginx. "
        "Off by default: limits count the address that connected.",
    ),
    redis: str | None = typer.Option(
        None,
        "--redis",
        envvar="XFER_REDIS",
        show_envvar=True,
        metavar="URL",
        help="Share rooms with every relay that uses this Redis, e.g. "
        "redis://10.0.0.5:6379/0 (or rediss://, unix://): peers on "
        "different relays exchange files as if on one.",
    ),
    redis_expiry: float = typer.Option(
        10.0,
        "--redis-expiry",
        min=1.0,
        max=300.0,
        metavar="SECONDS",
        help="With --redis: a relay silent this long is taken for dead and "
        "its peers leave their rooms (it beats 4 times as often).",
    ),
    debug: bool = DebugOpt,
) -> None:
    """Host a relay: the phone page and the WebSocket endpoint on one port.

    \b
    Examples:
      xfer serve                           listen on all interfaces, port 8765 (or $PORT)
      xfer serve --host 127.0.0.1 --port 9000
      PORT=8080 xfer serve                 as hosted platforms start it
      xfer serve --tls-cert cert.pem --tls-key key.pem    HTTPS and WSS on the same port
      xfer serve --host 127.0.0.1 --trust-proxy 127.0.0.1 behind nginx on this machine
      xfer serve --redis redis://10.0.0.5:6379/0          one of several relays sharing rooms
    """
    from ..errors import RelayUnreachable
    from .rich_display import RichDisplay
    from .status import run_command

    env = environment(ctx)
    display = RichDisplay(env, role="serve")
    console = display.console

    def body() -> None:

        from .. import loops, memory
        from ..addresses import lan_address, relay_ws_url, ws_url_for
        from ..errors import UsageError
        from ..relay import RelayLimits, RelayServer, bind_socket
        from ..relay.gate import raise_descriptor_limit
        from ..relay.server import quiet_uvicorn, tls_context, trusted_proxies

        if not debug:
            quiet_uvicorn()
        descriptors = raise_descriptor_limit()
        limits = RelayLimits(
            max_peers_per_room=max_peers,
            max_rooms=max_rooms,
            joins_per_minute=joins_per_minute,
            missed_joins_per_minute=missed_joins_per_minute,
            max_connections=max_connections,
            max_memory=max_memory * 1024 * 1024,
            control_messages_per_second=peer_messages,
            control_bytes_per_second=peer_control_bytes,
            peer_bytes_per_second=peer_bytes,
        )
        proxies = trusted_proxies(trust_proxy)
        if bool(tls_cert) != bool(tls_key):
            raise UsageError("--tls-cert and --tls-key go together: give both, or neither")
        tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        origins = allowed_origins(allow_origin)
        bus = redis_bus(redis, redis_expiry) if redis else None
        try:
            sock = bind_socket(host, port)
        except OSError as exc:
            raise RelayUnreachable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        wildcard = host in ("0.0.0.0", "", "::")
        shown = (lan_address() or "127.0.0.1") if wildcard else host
        try:
            public = (
                relay_ws_url(public_url)
                if public_url
                else ws_url_for(shown, sock.getsockname()[1], tls=tls is not None)
            )
        except BaseException:
            sock.close()
            raise
        server = RelayServer(
            sock,
            limits=limits,
            public_relay=public,
            ping_interval=keepalive,
            ping_timeout=keepalive,
            tls=tls,
            trusted_proxies=proxies,
            bus=bus,
        )
        server.app.state.allowed_origins = origins
        server.app.state.allowed_hosts = allowed_hosts([*allow_host, host])
        console.print(
            f"xfer relay {__version__} listening on {host}:{server.port}" + (" (HTTPS and WSS)" if tls else "")
        )
        if proxies:
            console.print(f"[dim]X-Forwarded-For believed from {', '.join(proxies)}[/dim]")
        files = f" (limit of open files: {descriptors})" if descriptors is not None else ""
        console.print(f"[dim]Up to {server.gate.cap} connections at once{files}.[/dim]")
        console.print(f"Others use it with:  [bold]xfer send FILE --relay {public}[/bold]")
        console.print("[dim]Ctrl-C stops it.[/dim]")
        memory.keep_big_blocks()  # a relay moves frames for hours: never a fresh mapping per frame
        loops.run(_serve(server, bus, console))
        console.print("Relay stopped.")

    status = run_command(body, display, env, role="serve", debug=debug, close=display.close)
    if status:
        raise typer.Exit(status)


async def _serve(server: Any, bus: Any, console: Console) -> None:
    import gc
    import logging

    from ..protocol.names import escape_hostile

    class Say(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            style = "yellow" if record.levelno >= logging.WARNING else ""
            console.print(escape_hostile(record.getMessage()), style=style, markup=False)

    # One line each: the bus says when Redis answers, goes and comes back; the relay,
    # when it starts and stops refusing connections for having as many as it takes.
    handler = Say()
    for name in ("xfer.relay.bus", "xfer.relay.connections") if bus is not None else ("xfer.relay.connections",):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    # What start-up made lives as long as the relay (typer, rich, uvicorn, Starlette, the app:
    # about 40,000 objects). Frozen, a full garbage collection no longer walks them: one took
    # 50-75 ms, a pause of every room's frames, a few times a minute under a load of joins
    # (issue 17). Nothing is collected first: start-up leaves next to no garbage.
    gc.freeze()
    await server.run_until_signal()


def redis_bus(url: str, expiry: float) -> Any:
    """A Redis bus for ``--redis``, or a ``UsageError`` that says what is wrong with the URL."""
    from urllib.parse import urlsplit

    from ..errors import UsageError

    if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
        raise UsageError(f"--redis wants a URL like redis://HOST:6379/0, not {url!r}")
    try:
        from ..relay.bus import RedisBus
    except ImportError:
        raise UsageError("--redis needs the redis package: pip install 'xfer[redis]'") from None
    try:
        return RedisBus(url, expiry=expiry)
    except ValueError as exc:
        raise UsageError(f"--redis: {exc}") from None


def allowed_hosts(names: list[str]) -> tuple[str, ...]:
    """``--allow-host`` values (and ``--host`` when it is a name) as the relay matches
    ``Host``: lower case, no port; addresses need no entry."""
    import ipaddress

    from ..errors import UsageError

    hosts = []
    for name in names:
        name = name.strip().lower().rstrip(".")
        try:
            ipaddress.ip_address(name.strip("[]"))
            continue
        except ValueError:
            pass
        if not name:
            continue
        if not all(part and len(part) <= 63 and part.replace("-", "").isalnum() for part in name.split(".")):
            raise UsageError(f"--allow-host {name!r}: give a host name like relay.lan, without a port")
        hosts.append(name)
    return tuple(hosts)


def allowed_origins(urls: list[str]) -> tuple[str, ...]:
    """``--allow-origin`` values as browsers send Origin: scheme://host[:port], nothing more."""
    from urllib.parse import urlsplit

    from ..errors import UsageError

    origins = []
    for url in urls:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            raise UsageError(f"--allow-origin {url!r}: give an origin like https://xfer.example")
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)
