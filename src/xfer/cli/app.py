"""The `xfer` Typer app: parse, build the reporter, call the transfer layer, map errors.

Heavy imports (the relay stack, websockets, rich progress) happen inside the
commands, so that ``xfer --version`` and ``--help`` start fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from typer.core import TyperArgument, TyperCommand

from .. import __version__
from .coerce import install as _plain_coercion

_plain_coercion()  # str/int/float/bool/Path options without pydantic: a third of a small transfer's time

app = typer.Typer(
    name="xfer",
    help="Move files and text between devices: terminals, and phones that scan a QR code.",
    epilog=(
        "Examples:  xfer send photo.jpg  ·  xfer receive  ·  "
        "xfer receive --room 7KQ2-M9XD-41TR-PZ8H --relay ws://192.168.1.20:8765  ·  xfer serve"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"xfer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Move files and text between devices: terminals, and phones that scan a QR code."""


class _Command(TyperCommand):
    """Arguments with a metavar show it alone, as options do (typer adds its type, ``<list[Path]>``)."""

    def get_params(self, ctx):  # type: ignore[no-untyped-def]
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        return params


# Options shared by send and receive.
RoomOpt = typer.Option(
    None,
    "--room",
    "-r",
    metavar="CODE",
    help="Join this room (the code the other side printed) instead of opening one.",
)
RelayOpt = typer.Option(
    None,
    "--relay",
    envvar="XFER_RELAY",
    show_envvar=True,
    metavar="URL",
    help="Relay address: ws://host:port, wss://host, https://host or host:port. "
    "Without it, xfer runs a relay inside this process.",
)
PortOpt = typer.Option(None, "--port", "-p", metavar="PORT", help="Port for the embedded relay (default: a free one).")
HostOpt = typer.Option(
    None, "--host", metavar="ADDR", help="Address the embedded relay listens on (default: all interfaces)."
)
PublicOpt = typer.Option(
    None, "--public-url", metavar="URL", help="Relay address to print and put in the QR code, e.g. behind a proxy."
)
NameOpt = typer.Option(
    None, "--name", metavar="NAME", help="How others in the room see you (default: this computer's name)."
)
JsonOpt = typer.Option(False, "--json", help="Print one JSON event per line on stdout instead of progress bars.")
QuietOpt = typer.Option(False, "--quiet", "-q", help="Print only errors (and the room code).")
NoQrOpt = typer.Option(False, "--no-qr", help="Do not print the QR code.")
DebugOpt = typer.Option(False, "--debug", help="Show tracebacks for errors.")
KeepaliveOpt = typer.Option(
    20.0,
    "--keepalive",
    min=1.0,
    metavar="SECONDS",
    help="Ping the relay this often; a connection silent for twice this long is dead.",
)
PeerTimeoutOpt = typer.Option(
    60.0,
    "--peer-timeout",
    min=0.0,
    metavar="SECONDS",
    help="How long to wait for the other side to come back after it left or the relay was lost.",
)


def _run(make, *, json_mode: bool, quiet: bool, debug: bool, role: str) -> None:
    import asyncio

    from ..errors import Interrupted, XferError
    from .output import HumanReporter, JsonReporter

    out = JsonReporter() if json_mode else HumanReporter(quiet=quiet, role=role)
    try:
        asyncio.run(make(out))
    except XferError as exc:
        out.error(exc)
        if debug:
            import traceback

            traceback.print_exc()
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        if role == "receive":
            message = (
                "interrupted; what arrived so far stays hidden in the folder: run the same command again to resume"
            )
        else:
            message = "interrupted; the receiver was told to stop"
        out.error(Interrupted(message))
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: one line, the traceback with --debug
        out.error(XferError(f"unexpected error: {type(exc).__name__}: {exc} (run with --debug for details)"))
        if debug:
            import traceback

            traceback.print_exc()
        raise typer.Exit(1) from None
    finally:
        out.close()


@app.command(cls=_Command)
def send(
    paths: list[Path] = typer.Argument(
        None, metavar="PATH", help="Files or folders to send; - sends standard input.", show_default=False
    ),
    text: str | None = typer.Option(
        None,
        "--text",
        "-t",
        metavar="TEXT",
        help="Send this text instead of files ('-' reads it from stdin), then exit.",
    ),
    room: str | None = RoomOpt,
    relay: str | None = RelayOpt,
    port: int | None = PortOpt,
    host: str | None = HostOpt,
    public_url: str | None = PublicOpt,
    name: str | None = NameOpt,
    json_mode: bool = JsonOpt,
    quiet: bool = QuietOpt,
    no_qr: bool = NoQrOpt,
    limit_rate: str | None = typer.Option(
        None, "--limit-rate", metavar="SIZE", help="Send at most this much a second, e.g. 20MB or 512KiB."
    ),
    follow_symlinks: bool = typer.Option(
        False, "--follow-symlinks", help="Send what symlinks inside folders point to (skipped by default)."
    ),
    receivers: int = typer.Option(
        1,
        "--receivers",
        "-n",
        min=1,
        max=19,
        metavar="N",
        help="Wait for N receivers and send to all at once (the relay fans the data out).",
    ),
    keep_open: bool = typer.Option(
        False, "--keep-open", help="After each transfer, stay and send again to whoever joins next, until Ctrl-C."
    ),
    keepalive: float = KeepaliveOpt,
    peer_timeout: float = PeerTimeoutOpt,
    debug: bool = DebugOpt,
) -> None:
    """Send files (or a text) to whoever joins the room.

    \b
    Examples:
      xfer send photo.jpg                  open a room, print its code and a QR code
      xfer send a.pdf b.zip --room CODE --relay ws://192.168.1.20:8765
      xfer send report.pdf --json          events as JSON lines, for scripts
      xfer send photos/                    a folder, file by file, with its empty folders
      tar c project | xfer send -          standard input (no resume for streams)
      xfer send talk.pdf --receivers 3     wait for three receivers; the data leaves once
      xfer send --text "see you at 5" --room CODE --relay ws://192.168.1.20:8765
    """
    from .session import RoomOptions, room_session

    async def main(out) -> None:
        import asyncio

        from ..errors import Declined, PeerGone, UsageError
        from ..transfer.sender import Sender, check_sources

        opts = RoomOptions(
            room,
            relay,
            port,
            host,
            public_url,
            name,
            not no_qr,
            keepalive=keepalive,
            reconnect_for=peer_timeout,
            peer_timeout=peer_timeout,
        )
        if text is not None:
            from ..transfer.text import TextSender, check_text

            if paths:
                raise UsageError("give files or --text, not both")
            message = check_text(sys.stdin.read() if text == "-" else text)
            async with room_session(opts, "sender", out) as session:
                session.task = TextSender(
                    session.conn, message, out, wait_forever=room is None, **session.task_options()
                )
                sent = await session.task.run()
                if hasattr(out, "say"):  # people see a line; --json has the "text-sent" event
                    out.say("Sent the text to " + ", ".join(out._peer(p) for p in sent["to"]))
            return
        if not paths:
            raise UsageError("nothing to send: give files, or --text TEXT")
        rate = _rate(limit_rate)
        files = check_sources(paths, follow_symlinks=follow_symlinks, warn=lambda m: out("warning", message=m))
        served: set[int] = set()
        async with room_session(opts, "sender", out) as session:
            while True:
                sender = session.task = Sender(
                    session.current(),
                    files,
                    out,
                    rate=rate,
                    receivers=receivers,
                    exclude=served,
                    **session.task_options(),
                )
                try:
                    summary = await sender.run()
                except asyncio.CancelledError:  # Ctrl-C: tell the receivers, so they drop the partial files
                    await asyncio.wait_for(sender.cancel("the sender stopped (Ctrl-C)"), 2)
                    raise
                except (Declined, PeerGone) as exc:
                    if not keep_open:
                        raise
                    out("warning", message=f"{exc}; waiting for the next receiver")
                    served.update(sender.chosen)  # do not offer again to whoever declined or left
                    continue
                if not keep_open:
                    break
                served.update(p["id"] for p in summary["peers"])

    _run(main, json_mode=json_mode, quiet=quiet, debug=debug, role="send")


@app.command()
def receive(
    room: str | None = RoomOpt,
    relay: str | None = RelayOpt,
    folder: Path = typer.Option(
        Path("."),
        "--dir",
        "-d",
        metavar="FOLDER",
        help="Folder to save into (created if missing).",
        show_default="the current folder",
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Accept the offer without asking (needed when stdin is not a terminal)."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace existing files instead of saving as 'name (1).ext'."
    ),
    no_resume: bool = typer.Option(
        False, "--no-resume", help="Start every file from zero, and keep no partial files after a failure."
    ),
    stdout: bool = typer.Option(
        False,
        "--stdout",
        help="Write the one received file or stream to standard output (messages go to stderr; no resume).",
    ),
    output: str | None = typer.Option(None, "--output", "-o", metavar="-", help="'-' is the same as --stdout."),
    keep_open: bool = typer.Option(False, "--keep-open", help="Stay in the room for more offers, until Ctrl-C."),
    port: int | None = PortOpt,
    host: str | None = HostOpt,
    public_url: str | None = PublicOpt,
    name: str | None = NameOpt,
    json_mode: bool = JsonOpt,
    quiet: bool = QuietOpt,
    no_qr: bool = NoQrOpt,
    keepalive: float = KeepaliveOpt,
    peer_timeout: float = PeerTimeoutOpt,
    debug: bool = DebugOpt,
) -> None:
    """Receive files into a folder: join a room, or open one and wait for a sender.

    \b
    Examples:
      xfer receive                         open a room; a phone scans the QR code
      xfer receive --room CODE --relay ws://192.168.1.20:8765 --dir ~/Downloads
      xfer receive --room CODE --relay wss://relay.example --yes --json
      xfer receive --room CODE --relay HOST:8765 --yes --stdout | tar x
    """
    from ..errors import UsageError
    from .session import RoomOptions, room_session

    async def main(out) -> None:
        from ..errors import Declined, IntegrityFailure, PeerGone
        from ..transfer.receiver import Receiver

        to_stdout = stdout or output is not None
        if output not in (None, "-"):
            raise UsageError("-o takes '-' (standard output); to save into a folder use --dir")
        if to_stdout and json_mode:
            raise UsageError("--stdout and --json both want standard output; pick one")
        if not yes and not sys.stdin.isatty():
            raise UsageError(
                "stdin is not a terminal, so xfer cannot ask before accepting; add --yes to accept without asking"
            )
        target = Path.cwd() if to_stdout else _target_folder(folder)
        opts = RoomOptions(
            room,
            relay,
            port,
            host,
            public_url,
            name,
            not no_qr,
            keepalive=keepalive,
            reconnect_for=peer_timeout,
            peer_timeout=peer_timeout,
        )

        async def decide(event: dict) -> bool:
            return True if yes else await _ask("Accept?", out)

        async with room_session(opts, "receiver", out) as session:
            while True:
                session.task = Receiver(
                    session.current(),
                    target,
                    out,
                    decide,
                    overwrite=overwrite,
                    resume=not no_resume,
                    stdout=to_stdout,
                    **session.task_options(),
                )
                try:
                    await session.task.run()
                except (Declined, PeerGone, IntegrityFailure) as exc:
                    if not keep_open or to_stdout:
                        raise
                    out("warning", message=f"{exc}; waiting for the next offer")
                    continue
                if not keep_open or to_stdout:
                    break

    _run(main, json_mode=json_mode, quiet=quiet, debug=debug, role="receive")


def _rate(text: str | None) -> int | None:
    from ..errors import UsageError
    from ..units import parse_size

    if text is None:
        return None
    try:
        rate = parse_size(text)
    except ValueError as exc:
        raise UsageError(f"--limit-rate: {exc}") from None
    if rate < 1024:
        raise UsageError("--limit-rate must be at least 1KiB a second")
    return rate


def _target_folder(folder: Path) -> Path:
    from ..errors import LocalFileError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LocalFileError(f"{folder} exists and is not a folder") from None
    except OSError as exc:
        raise LocalFileError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise LocalFileError(f"{folder} is not a folder")
    import os

    if not os.access(folder, os.W_OK | os.X_OK):
        raise LocalFileError(f"permission denied: cannot write in {folder}", "permission-denied")
    return folder.resolve()


async def _ask(question: str, out) -> bool:
    """Ask on the terminal without blocking the event loop (and without hanging Ctrl-C)."""
    import asyncio
    import threading

    from rich.console import Console
    from rich.prompt import Confirm

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def ask() -> None:
        try:
            result = Confirm.ask(question, console=Console(stderr=True), default=True)
        except (EOFError, KeyboardInterrupt):
            result = False
        loop.call_soon_threadsafe(lambda: answer.done() or answer.set_result(result))

    threading.Thread(target=ask, daemon=True).start()
    return await answer


@app.command()
def serve(
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
    import asyncio

    from rich.console import Console
    from rich.markup import escape

    from ..addresses import lan_address, relay_ws_url, ws_url_for
    from ..errors import UsageError, XferError
    from ..relay import RelayLimits, RelayServer, bind_socket
    from ..relay.server import quiet_uvicorn, tls_context, trusted_proxies

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    if not debug:
        quiet_uvicorn()
    limits = RelayLimits(max_peers_per_room=max_peers, max_rooms=max_rooms, joins_per_minute=joins_per_minute)
    try:
        proxies = trusted_proxies(trust_proxy)
        if bool(tls_cert) != bool(tls_key):
            raise UsageError("--tls-cert and --tls-key go together: give both, or neither")
        tls = tls_context(tls_cert, tls_key) if tls_cert and tls_key else None
        bus = _redis_bus(redis, redis_expiry) if redis else None
    except XferError as exc:
        console.print(f"[bold red]xfer:[/bold red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
    try:
        sock = bind_socket(host, port)
    except OSError as exc:
        console.print(f"[bold red]xfer:[/bold red] cannot listen on {host}:{port}: {exc.strerror or exc}")
        raise typer.Exit(3) from None
    wildcard = host in ("0.0.0.0", "", "::")
    shown = (lan_address() or "127.0.0.1") if wildcard else host
    try:
        public = (
            relay_ws_url(public_url) if public_url else ws_url_for(shown, sock.getsockname()[1], tls=tls is not None)
        )
    except XferError as exc:
        sock.close()
        console.print(f"[bold red]xfer:[/bold red] {escape(str(exc))}")
        raise typer.Exit(exc.exit_code) from None
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
    server.app.state.allowed_origins = _origins(allow_origin, console)
    console.print(f"xfer relay {__version__} listening on {host}:{server.port}" + (" (HTTPS and WSS)" if tls else ""))
    if proxies:
        console.print(f"[dim]X-Forwarded-For believed from {', '.join(proxies)}[/dim]")
    console.print(f"Others use it with:  [bold]xfer send FILE --relay {public}[/bold]")
    console.print("[dim]Ctrl-C stops it.[/dim]")
    asyncio.run(_serve(server, bus, console))
    console.print("Relay stopped.")


async def _serve(server, bus, console) -> None:
    if bus is not None:
        import logging

        class Say(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                style = "yellow" if record.levelno >= logging.WARNING else ""
                console.print(record.getMessage(), style=style, markup=False)

        # The bus says when Redis answers, goes and comes back: one line each.
        handler = Say()
        logger = logging.getLogger("xfer.relay.bus")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    await server.run_until_signal()


def _redis_bus(url: str, expiry: float):
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


def _origins(urls: list[str], console) -> tuple[str, ...]:
    """``--allow-origin`` values as browsers send Origin: scheme://host[:port], nothing more."""
    from urllib.parse import urlsplit

    origins = []
    for url in urls:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
            console.print(
                f"[bold red]xfer:[/bold red] --allow-origin {url!r}: give an origin like https://xfer.example"
            )
            raise typer.Exit(2)
        origins.append(f"{parts.scheme}://{parts.netloc}".lower())
    return tuple(origins)


def main() -> None:
    import os

    if "_XFER_COMPLETE" in os.environ:  # shell completion (completions/ holds the generated scripts)
        from typer.completion import completion_init

        completion_init()
    app(prog_name="xfer")
