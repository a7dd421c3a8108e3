"""``xfer config``: show the default relay, or set it (``xfer config relay URL``) or forget
it (``xfer config relay --unset``). The file and the order of sources: ``config.py``."""

from __future__ import annotations

import typer

from .options import DebugOpt, environment

SETTINGS = ("relay",)


def config(
    ctx: typer.Context,
    key: str | None = typer.Argument(None, metavar="[relay]", help="The setting: relay.", show_default=False),
    value: str | None = typer.Argument(
        None, metavar="[URL]", help="Its new value: the relay's address, as --relay takes it.", show_default=False
    ),
    unset: bool = typer.Option(False, "--unset", help="Forget the setting."),
    debug: bool = DebugOpt,
) -> None:
    """Show or set the default relay used without --relay.

    \b
    Examples:
      xfer config                              show the relay used, and where it comes from
      xfer config relay wss://relay.example    use this relay by default
      xfer config relay --unset                back to a relay in this process, found on the LAN
    """
    from ..errors import UsageError
    from .config import check_relay_argument, choose_relay, config_path, set_relay
    from .display import QuietDisplay
    from .status import run_command

    env = environment(ctx)

    def body() -> None:
        if key is None:
            if unset or value is not None:
                raise UsageError("say which setting: xfer config relay URL")
            choice = choose_relay(None, env)
            path = config_path(env)
            if choice.url is None:
                said = "relay: none set (each send or receive runs a relay, that the LAN finds by the code)"
            else:
                where = "XFER_RELAY" if choice.source == "XFER_RELAY" else str(path)
                said = f"relay = {choice.url}    (from {where})"
            env.stdout.write(f"{said}\nconfig file: {path}\n")
            return
        if key not in SETTINGS:
            raise UsageError(f"no such setting: {key[:40]} (there is: {', '.join(SETTINGS)})")
        url = check_relay_argument(value, unset)
        path = set_relay(env, url)
        said = f"relay = {url}" if url is not None else "relay unset"
        env.stdout.write(f"{said}  (in {path})\n")
        if env.get("XFER_RELAY"):
            env.stderr.write("note: XFER_RELAY is set in this environment, and comes before the config file\n")

    status = run_command(body, QuietDisplay(env), env, role="config", debug=debug)
    env.stdout.flush()
    env.stderr.flush()
    if status:
        raise typer.Exit(status)
