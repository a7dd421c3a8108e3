"""``xfer receive``: join a room (or open one) and save what is offered into a folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from .context import Environment
    from .display import Display


def receive(
    ctx: typer.Context,
    code: str | None = typer.Argument(
        None, metavar="[CODE]", help="The code the sender printed, like 7-guitar-nebula.", show_default=False
    ),
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
    allow_dotfiles: bool = typer.Option(
        False,
        "--allow-dotfiles",
        help="Also save entries whose names start with a dot (.bashrc, .ssh/...), which --yes alone refuses.",
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
    verify: bool = VerifyOpt,
    open_room: bool = typer.Option(
        False, "--open", help="Open a room (for a phone, or a sender given its code) without asking for a code."
    ),
    chosen_code: str | None = CodeOpt,
    code_words: int = CodeWordsOpt,
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

    The code comes from the command line, else XFER_CODE, else a prompt (Tab completes
    its words). A code on the command line is visible to other users of this machine.

    \b
    Examples:
      xfer receive 7-guitar-nebula         join the sender on this network
      xfer receive                         ask for the code (Enter alone: open a room for a phone)
      xfer receive --open                  open a room; a phone scans the QR code
      xfer receive CODE --relay ws://192.168.1.20:8765 --dir ~/Downloads
      xfer receive CODE --relay wss://relay.example --yes --json
      xfer receive CODE --relay HOST:8765 --yes --stdout | tar x
      xfer receive CODE --yes --allow-dotfiles   also save .bashrc, .config/... without asking
    """
    from .. import loops
    from .display import choose_display
    from .session import RoomOptions, room_session
    from .status import run_command

    env = environment(ctx)
    display = choose_display(env, json_mode=json_mode, quiet=quiet, role="receive")

    async def main(display: Display) -> None:
        from ..errors import Declined, IntegrityFailure, PeerGone, RoomError, UsageError
        from ..protocol import LIMITS
        from ..transfer import receipts
        from ..transfer.receiver import Receiver
        from .code_input import code_to_join, parse
        from .config import choose_relay

        to_stdout = stdout or output is not None
        if output not in (None, "-"):
            raise UsageError("-o takes '-' (standard output); to save into a folder use --dir")
        if to_stdout and json_mode:
            raise UsageError("--stdout and --json both want standard output; pick one")
        if to_stdout and env.stdout_isatty:
            raise UsageError(
                "--stdout writes the file to standard output, which is this terminal: add > FILE or | COMMAND"
            )
        if not yes and not env.stdin_isatty:
            raise UsageError(
                "stdin is not a terminal, so xfer cannot ask before accepting; add --yes to accept without asking"
            )
        if verify and not env.stdin_isatty:
            raise UsageError("--verify asks whether the words match, but stdin is not a terminal")
        opening = open_room or chosen_code is not None
        if opening and (code is not None or room is not None):
            raise UsageError("give a code to join, or --open / --code to open a room, not both")
        joining = None if opening else code_to_join(code, room, env, ask=True)
        target = Path.cwd() if to_stdout else target_folder(folder)
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
        )

        async def decide(event: dict[str, Any]) -> bool:
            if yes:
                return True
            hidden = len(event.get("hidden") or [])
            if not hidden or allow_dotfiles:
                return await ask("Accept?", env)
            # the offer listed every hidden entry by name: a yes here agrees to them
            return await ask(
                f"Accept, with the {hidden} hidden entr{'y' if hidden == 1 else 'ies'} listed?", env, default=False
            )

        async def decide_other(event: dict[str, Any]) -> bool:
            return await ask("Take the files from this different sender instead?", env, default=False)

        # A room joined by its code is remembered once finished (transfer/receipts.py):
        # a rerun after the room closed then says the files are already here.
        remembered = receipts.receipts_folder(env.variables)
        room_key = str(joining) if joining is not None and not to_stdout else None
        try:
            async with room_session(opts, "receiver", display) as session:
                while True:
                    session.task = Receiver(
                        session.current(),
                        target,
                        display.emit,
                        decide,
                        decide_other=None if yes else decide_other,  # --yes never covers another sender
                        overwrite=overwrite,
                        resume=not no_resume,
                        stdout=to_stdout,
                        texts_end=joining is not None,  # we joined: a sender that only had texts, then left
                        dotfiles=allow_dotfiles or not yes,
                        **session.task_options(),
                    )
                    try:
                        summary = await session.task.run()
                    except (Declined, PeerGone, IntegrityFailure) as exc:
                        if not keep_open or to_stdout:
                            raise
                        display.emit("warning", message=f"{exc}; waiting for the next offer")
                        continue
                    if room_key is not None and "texts" not in summary:  # (texts leave nothing to find)
                        receipts.record(
                            room_key, target, summary["saved"], keep_for=LIMITS.receipts_for, where=remembered
                        )
                    if not keep_open or to_stdout:
                        break
        except RoomError as exc:
            here = receipts.already_here(room_key, target, where=remembered) if room_key is not None else None
            if exc.code != "room-not-found" or here is None:
                raise
            display.emit("already-received", folder=str(target), files=here)

    status = run_command(
        lambda: loops.run(main(display)), display, env, role="receive", debug=debug, close=display.close
    )
    if status:
        raise typer.Exit(status)


def target_folder(folder: Path) -> Path:
    """``--dir``, created if missing, as an absolute path we may write in."""
    import os

    from ..errors import LocalFileError

    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise LocalFileError(f"{folder} exists and is not a folder") from None
    except OSError as exc:
        raise LocalFileError(f"cannot create {folder}: {exc.strerror or exc}") from None
    if not folder.is_dir():
        raise LocalFileError(f"{folder} is not a folder")
    if hasattr(os, "statvfs") and os.statvfs(folder).f_flag & os.ST_RDONLY:
        raise LocalFileError(f"cannot write in {folder}: it is on a read-only file system", "read-only")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LocalFileError(f"permission denied: cannot write in {folder}", "permission-denied")
    return folder.resolve()


async def ask(question: str, env: Environment, *, default: bool = True) -> bool:
    """Ask on the terminal without blocking the event loop (and without hanging Ctrl-C)."""
    import asyncio
    import sys
    import threading

    from rich.prompt import Confirm

    from .rich_display import console

    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()
    # input() (line editing) when the answer comes from this process's own terminal
    stream = None if env.stdin is sys.stdin else env.stdin

    def settle(result: bool) -> None:
        if not answer.done():
            answer.set_result(result)

    def run() -> None:
        try:
            result = Confirm.ask(question, console=console(env), default=default, stream=stream)
        except (EOFError, KeyboardInterrupt):
            result = False
        loop.call_soon_threadsafe(settle, result)

    threading.Thread(target=run, daemon=True).start()
    return await answer
