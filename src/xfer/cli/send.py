"""``xfer send``: files, folders, standard input or a text, to whoever joins the room."""

from __future__ import annotations

from pathlib import Path

import typer

from .options import (
    CodeOpt,
    CodeWordsOpt,
    DebugOpt,
    HostOpt,
    JsonOpt,
    KeepaliveOpt,
    NameOpt,
    NoQrOpt,
    PeerTimeoutOpt,
    PortOpt,
    PublicOpt,
    QuietOpt,
    RelayOpt,
    RoomOpt,
    VerifyOpt,
    environment,
)


def send(
    ctx: typer.Context,
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
    stdin_name: str | None = typer.Option(
        None,
        "--stdin-name",
        metavar="NAME",
        help="The name standard input (-) is offered and saved under (default: stdin), e.g. backup.tar.",
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
    verify: bool = VerifyOpt,
    chosen_code: str | None = CodeOpt,
    code_words: int = CodeWordsOpt,
    keepalive: float = KeepaliveOpt,
    peer_timeout: float = PeerTimeoutOpt,
    debug: bool = DebugOpt,
) -> None:
    """Send files (or a text) to whoever joins the room.

    \b
    Examples:
      xfer send photo.jpg                  open a room, print its code and a QR code
      xfer send a.pdf b.zip --room CODE    join a receiver's room (found on this network)
      xfer send a.pdf --room CODE --relay ws://192.168.1.20:8765
      xfer send report.pdf --json          events as JSON lines, for scripts
      xfer send photos/                    a folder, file by file, with its empty folders
      tar c project | xfer send -          standard input (no resume for streams)
      tar c src | xfer send - --stdin-name src.tar     saved as src.tar
      xfer send talk.pdf --receivers 3     wait for three receivers; the data leaves once
      xfer send --text "see you at 5" --room CODE --relay ws://192.168.1.20:8765
      xfer send notes.txt --verify         compare three words with the receiver first
    """
    import asyncio

    from .. import loops
    from .display import Display, choose_display
    from .session import RoomOptions, room_session
    from .status import run_command

    env = environment(ctx)
    display = choose_display(env, json_mode=json_mode, quiet=quiet, role="send")

    async def main(display: Display) -> None:
        from ..errors import Declined, Interrupted, PeerGone, UsageError, XferError
        from ..protocol.keys import Runs
        from ..transfer import sender_runs
        from ..transfer.sender import Sender, check_sources
        from .code_input import code_to_join, parse
        from .config import choose_relay
        from .receive import ask
        from .session import Session

        if verify and not env.stdin_isatty:
            raise UsageError("--verify asks whether the words match, but stdin is not a terminal")
        if chosen_code is not None and room is not None:
            raise UsageError("give --room to join a room, or --code to open one, not both")
        joining = None if chosen_code is not None else code_to_join(None, room, env, ask=False)
        where = choose_relay(relay, env)
        opts = RoomOptions(
            joining,
            where.url,
            port,
            host,
            public_url,
            name,
            not no_qr,
            keepalive=keepalive,
            reconnect_for=peer_timeout,
            peer_timeout=peer_timeout,
            code_words=code_words,
            code=parse(chosen_code) if chosen_code is not None else None,
            relay_known=where.source in ("XFER_RELAY", "config"),
            ask=(lambda question: ask(question, env, default=False)) if verify else None,
            runs=Runs(),
        )
        if text is not None:
            from ..transfer.text import TextSender, check_text

            if paths:
                raise UsageError("give files or --text, not both")
            message = check_text(env.stdin.read() if text == "-" else text)
            async with room_session(opts, "sender", display) as session:
                session.task = TextSender(
                    session.conn, message, display.emit, wait_forever=joining is None, **session.task_options()
                )
                await session.task.run()  # people see "Sent the text to ..."; --json the "text-sent" event
            return
        if not paths:
            raise UsageError("nothing to send: give files, or --text TEXT")
        rate = limit(limit_rate)
        extra = [
            *(["--limit-rate", limit_rate] if limit_rate else []),
            *(["--receivers", str(receivers)] if receivers > 1 else []),
        ]
        extra += ["--follow-symlinks"] if follow_symlinks else []
        files = check_sources(
            paths,
            follow_symlinks=follow_symlinks,
            warn=lambda m: display.emit("warning", message=m),
            stdin_name=stdin_named(stdin_name, paths),
        )
        # A resume command (below) comes back as the same run of the sender, which the
        # receiver waiting for it requires (transfer/sender_runs.py).
        kept_in = sender_runs.runs_folder(env.variables)
        runs = opts.runs
        assert runs is not None
        room_key = str(joining) if joining is not None else None
        transfer = sender_runs.take(room_key, files, runs, where=kept_in) if room_key is not None else None
        served: set[int] = set()
        # SIGTERM or SIGHUP (a closed terminal) stop us without cancelling the receivers:
        # they keep what they hold and wait, and the resume command below picks it up.
        signalled = stop_on_signals()
        opened: Session | None = None
        try:
            async with room_session(opts, "sender", display) as session:
                opened = session
                while True:
                    sender = session.task = Sender(
                        session.current(),
                        files,
                        display.emit,
                        rate=rate,
                        receivers=receivers,
                        exclude=served,
                        keep_open=keep_open,
                        transfer=transfer if not served else None,
                        **session.task_options(),
                    )
                    try:
                        summary = await sender.run()
                    except asyncio.CancelledError:  # Ctrl-C: tell the receivers, so they drop the partial files
                        if not signalled:
                            await asyncio.wait_for(sender.cancel("the sender stopped (Ctrl-C)"), 2)
                        raise
                    except XferError as exc:
                        # With --keep-open, a receiver that declined, left or failed (its disk,
                        # its checks) is a line in the log: the others and newcomers go on.
                        if not keep_open or not (isinstance(exc, (Declined, PeerGone)) or exc.from_peer):
                            raise
                        display.emit("warning", message=f"{exc}; waiting for the next receiver")
                        served.update(sender.chosen)  # do not offer again to whoever declined or left
                        continue
                    if not keep_open:
                        break
                    served.update(p["id"] for p in summary["peers"])
        except asyncio.CancelledError:
            if not signalled and (opened is None or not opened.current().peers):
                raise Interrupted("stopped; nobody had joined the room") from None
            if not signalled:
                raise  # Ctrl-C: the receivers were told to stop, nothing waits to be resumed
            # A room we opened on a relay outlives us while a receiver that accepted waits in it
            # (an empty room closes; when the relay or the receiver gave up, nobody waits); running
            # the same command again would open another room, so say how to come back to this one.
            engaged = opened is not None and isinstance(opened.task, Sender) and opened.task.machine.engaged
            if joining is None and opened and opened.relay_url and engaged and not any(f.stream for f in files):
                assert isinstance(opened.task, Sender)
                sender_runs.keep(opened.code, files, opened.task.transfer, runs, where=kept_in)
                display.emit("resume", command=resume_command(paths, opened.code, opened.relay_url, extra))
            waits = "; the receiver keeps what it has for a while" if engaged else ""
            raise Interrupted(f"stopped by {signalled[0]}{waits}") from None

    status = run_command(lambda: loops.run(main(display)), display, env, role="send", debug=debug, close=display.close)
    if status:
        raise typer.Exit(status)


def resume_command(paths: list[Path], code: str, relay: str, extra: list[str]) -> str:
    """The command that comes back to this room with the same files (where they were given from)."""
    import shlex

    words = ["xfer", "send", *(str(p) for p in paths), "--room", code, "--relay", relay, *extra]
    return " ".join(shlex.quote(w) for w in words)


def stop_on_signals() -> list[str]:
    """Make SIGTERM and SIGHUP cancel the running command (as Ctrl-C does); the list
    returned gets the signal's name when one came."""
    import asyncio
    import signal

    came: list[str] = []
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()

    def stop(sig: signal.Signals) -> None:
        if not came and task is not None:
            came.append(sig.name)
            task.cancel()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is signal.SIG_IGN:
            continue  # nohup: ignored it stays
        try:
            loop.add_signal_handler(sig, stop, sig)
        except (NotImplementedError, RuntimeError, ValueError):
            pass  # not on this platform, or not the main thread: the default stays
    return came


def stdin_named(name: str | None, paths: list[Path]) -> str:
    """``--stdin-name``: one plain file name, for a ``-`` among the paths."""
    from ..errors import UsageError
    from ..protocol.names import safe_name

    if name is None:
        return "stdin"
    if not any(str(p) == "-" for p in paths):
        raise UsageError("--stdin-name names standard input: give - among the paths")
    if safe_name(name) != name:
        raise UsageError(f"--stdin-name takes a plain file name, like backup.tar (not {name!r})")
    return name


def limit(text: str | None) -> int | None:
    """``--limit-rate`` in bytes a second (None: no limit)."""
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
