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
        import asyncio

        from ..addresses import lan_address, relay_ws_url, ws_url_for
        from ..errors import UsageError
        from ..relay import RelayLimits, RelayServer, bind_socket
        from ..relay.server import quiet_uvicorn, tls_context, trusted_proxies

        if not debug:
            quiet_uvicorn()
        limits = RelayLimits(
            max_peers_per_room=max_peers,
            max_rooms=max_rooms,
            joins_per_minute=joins_per_minute,
            missed_joins_per_minute=missed_joins_per_minute,
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
        console.print(
            f"xfer relay {__version__} listening on {host}:{server.port}" + (" (HTTPS and WSS)" if tls else "")
        )
        if proxies:
            console.print(f"[dim]X-Forwarded-For believed from {', '.join(proxies)}[/dim]")
        console.print(f"Others use it with:  [bold]xfer send FILE --relay {public}[/bold]")
        console.print("[dim]Ctrl-C stops it.[/dim]")
        asyncio.run(_serve(server, bus, console))
        console.print("Relay stopped.")

    status = run_command(body, display, env, role="serve", debug=debug, close=display.close)
    if status:
        raise typer.Exit(status)


async def _serve(server: Any, bus: Any, console: Console) -> None:
    if bus is not None:
        import logging

        from ..protocol.names import escape_hostile

        class Say(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                style = "yellow" if record.levelno >= logging.WARNING else ""
                console.print(escape_hostile(record.getMessage()), style=style, markup=False)

        # The bus says when Redis answers, goes and comes back: one line each.
        handler = Say()
        logger = logging.getLogger("xfer.relay.bus")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
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
