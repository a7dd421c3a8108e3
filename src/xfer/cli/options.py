"""What the commands share: the options of send and receive, the command class, and
the ``Environment`` that each command takes from its click context."""

from __future__ import annotations

from functools import partial
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand

from .context import Environment


def environment(ctx: Any) -> Environment:
    """The command's environment: what ``run`` put in the root context, or this process's."""
    root = ctx.find_root() if ctx is not None else None
    env = getattr(root, "obj", None)
    if isinstance(env, Environment):
        return env
    env = Environment.from_process()
    if root is not None and root.obj is None:
        root.obj = env
    return env


def _from_environment(param: Any, ctx: Any) -> str | None:
    """An option's environment variable (``--relay`` from XFER_RELAY), read from the
    command's ``Environment`` rather than ``os.environ``, as click would."""
    env = environment(ctx)
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None


class Command(TyperCommand):
    """Arguments with a metavar show it alone, as options do (typer adds its type,
    ``<list[Path]>``); options with an environment variable read it from the
    command's ``Environment``."""

    def format_help_text(self, ctx: Any, formatter: Any) -> None:
        """The help text, with its example blocks folded to the formatter's width."""
        import inspect

        text = inspect.cleandoc(self.help or "").partition("\f")[0]
        if text:
            formatter.write_paragraph()
            with formatter.indentation():
                formatter.write_text(fit_blocks(text, formatter.width - formatter.current_indent))

    def format_help(self, ctx: Any, formatter: Any) -> None:
        """On a narrow terminal, option names take at most a third of the width, or 8 columns
        under 50 (a longer one gets a line of its own), so that their help keeps its words whole."""
        if formatter.width < 70:
            write_dl = formatter.write_dl
            narrow = 8 if formatter.width < 50 else formatter.width // 3
            formatter.write_dl = lambda rows, col_max=30, col_spacing=2: write_dl(rows, narrow, col_spacing)
        super().format_help(ctx, formatter)

    def get_params(self, ctx: Any) -> Any:
        params = super().get_params(ctx)
        for param in params:
            if isinstance(param, TyperArgument) and param.metavar:
                param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
            if getattr(param, "envvar", None):
                param.resolve_envvar_value = partial(_from_environment, param)  # type: ignore[method-assign]
        return params


def fit_blocks(text: str, width: int) -> str:
    """Fold the ``\\b`` blocks (kept as written by click) that are wider than ``width``: each
    example ``  COMMAND   what it does`` becomes the command, then what it does below it."""
    import re
    import textwrap

    blocks: list[list[str]] = [[]]
    for line in text.splitlines():  # paragraphs, each a list of lines
        if line.strip() == "":
            blocks += [[line], []]
        else:
            blocks[-1].append(line)
    out: list[str] = []
    for block in blocks:
        if not block or block[0] != "\b" or max(map(len, block)) <= width:
            out += block
            continue
        for line in block:
            indent = line[: len(line) - len(line.lstrip())]
            example = re.match(r"(\s*\S.*?)\s{2,}(\S.*)$", line)
            parts = [example.group(1).strip(), example.group(2)] if example else [line.strip()]
            out += textwrap.wrap(
                parts[0], width, initial_indent=indent, subsequent_indent=indent + "    ", break_long_words=False
            ) or [line]
            for part in parts[1:]:  # what the example does, under it
                out += textwrap.wrap(
                    part, width, initial_indent=indent + "  ", subsequent_indent=indent + "  ", break_long_words=False
                )
    return "\n".join(out)


# Options shared by send and receive.
RoomOpt = typer.Option(
    None,
    "--room",
    "-r",
    metavar="CODE",
    help="Join this room (the code the other side printed) instead of opening one; '-' asks for it. "
    "XFER_CODE does the same, unseen by other users of this machine.",
)
# XFER_RELAY and the config file are read by config.choose_relay, which knows where the
# relay came from (the command printed for the other side depends on it).
RelayOpt = typer.Option(
    None,
    "--relay",
    metavar="URL",
    help="Relay address: ws://host:port, wss://host, https://host or host:port "
    "(default: XFER_RELAY, else `xfer config relay`, else a relay inside this process that the LAN finds).",
)
CodeOpt = typer.Option(
    None,
    "--code",
    metavar="CODE",
    help="Open the room with this whole code (like 7-guitar-nebula) instead of drawing one.",
)
CodeWordsOpt = typer.Option(
    2,
    "--code-words",
    min=1,
    max=8,
    metavar="N",
    help="Words in the code of a room we open (each adds about 10 bits against guessing).",
)
VerifyOpt = typer.Option(
    False,
    "--verify",
    help="Show three words from the key agreed with each peer, and go on only when you say they match.",
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
