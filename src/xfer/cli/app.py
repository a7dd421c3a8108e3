"""The `xfer` Typer app: parse, build the environment and the display, call the
transfer layer or the relay, and leave errors to ``status.run_command``.

The commands are in ``send``, ``receive`` and ``serve``. Heavy imports (the relay
stack, websockets, rich) happen inside them, so that ``xfer --version`` and
``--help`` start fast.
"""

from __future__ import annotations

from collections.abc import Sequence

import typer

from .. import __version__
from .coerce import install as _plain_coercion
from .config_cmd import config
from .context import Environment
from .options import Command
from .receive import receive
from .send import send
from .serve import serve

_plain_coercion()  # str/int/float/bool/Path options without pydantic: a third of a small transfer's time

app = typer.Typer(
    name="xfer",
    help="Move files and text between devices: terminals, and phones that scan a QR code.",
    epilog=(
        "Examples:  xfer send photo.jpg  ·  xfer receive 7-guitar-nebula  ·  "
        "xfer receive 7-guitar-nebula --relay ws://192.168.1.20:8765  ·  xfer serve  ·  "
        "xfer config relay wss://relay.example"
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
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


app.command(cls=Command)(send)
app.command(cls=Command)(receive)
app.command(cls=Command)(serve)
app.command(cls=Command)(config)


@app.command(cls=Command)
def completion(
    ctx: typer.Context,
    shell: str = typer.Argument(..., metavar="SHELL", help="bash, zsh or fish.", show_default=False),
) -> None:
    """Print the completion script for SHELL: bash, zsh or fish.

    xfer --install-completion installs it for the shell it runs from.

    \b
    Examples:
      xfer --install-completion      install it for the shell it runs from
      xfer completion bash > xfer.bash
      xfer completion zsh > _xfer    for a folder in zsh's $fpath
    """
    from typer.completion import completion_init  # type: ignore[attr-defined]

    try:
        from typer._click.shell_completion import get_completion_class
    except ImportError:  # a typer before 0.2x completes with click itself
        from click.shell_completion import get_completion_class  # type: ignore[no-redef,import-not-found,assignment,unused-ignore]

    from ..errors import UsageError
    from .display import QuietDisplay
    from .options import environment
    from .status import run_command

    completion_init()  # typer's scripts for bash, zsh and fish, as `_XFER_COMPLETE=source_SHELL xfer` gives
    shells = ("bash", "zsh", "fish")

    def body() -> None:
        found = get_completion_class(shell) if shell in shells else None
        if found is None:
            raise UsageError(f"no completion for {shell!r}: give one of {', '.join(shells)}")
        script = found(typer.main.get_command(app), {}, "xfer", "_XFER_COMPLETE").source()
        print(script)

    env = environment(ctx)
    status = run_command(body, QuietDisplay(env), env, role="completion")
    if status:
        raise typer.Exit(status)


def run(args: Sequence[str], env: Environment) -> int:
    """Run ``xfer ARGS`` in this process with ``env``'s streams and variables; its exit status.

    Errors of the commands are shown by the commands (``status.run_command``); what
    is left here is the option parser's own (an unknown option: usage on stderr,
    status 2) and what click prints itself (``--help``, ``--version``), which goes
    to ``env``'s streams too.
    """
    import contextlib

    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # a typer before 0.2x parses with click itself
        from click import ClickException  # type: ignore[assignment,no-redef,import-not-found,unused-ignore]

    command = typer.main.get_command(app)
    with contextlib.redirect_stdout(env.stdout), contextlib.redirect_stderr(env.stderr):
        try:
            # --help at the width of the terminal (click's own never goes under 50 columns)
            width = max(min(env.width, 80) - 2, 30)
            result = command.main(list(args), prog_name="xfer", standalone_mode=False, obj=env, terminal_width=width)
        except ClickException as exc:
            exc.show(file=env.stderr)
            return exc.exit_code
        except typer.Abort:
            env.stderr.write("Aborted!\n")
            return 1
        finally:
            env.stdout.flush()
            env.stderr.flush()
    return result if isinstance(result, int) else 0


def main() -> None:
    import os
    import sys

    if "_XFER_COMPLETE" in os.environ:  # shell completion (completions/ holds the generated scripts)
        from typer.completion import completion_init  # type: ignore[attr-defined]

        completion_init()
        app(prog_name="xfer")
        return
    sys.exit(run(sys.argv[1:], Environment.from_process()))
