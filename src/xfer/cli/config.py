"""The default relay: ``xfer config relay URL`` keeps it in a file in the platform's
config folder (``platformdirs``), so that ``xfer send`` and ``xfer receive CODE`` use
it without ``--relay``, and the command printed for the other side is just
``xfer receive CODE``.

Which relay a command uses, first found wins: ``--relay``, ``XFER_RELAY``, the
config file, else a relay inside the process (found on the LAN by its nameplate).

The file is a JSON object (``{"relay": "wss://relay.example"}``; JSON rather than
TOML: Python 3.10 has no TOML reader); ``XFER_CONFIG`` names another file (tests, or
several setups). Keys other than ours are kept; a file that is not a JSON object is
an error that says where it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..addresses import relay_ws_url
from ..errors import LocalFileError, UsageError

if TYPE_CHECKING:
    from .context import Environment

CONFIG_VARIABLE = "XFER_CONFIG"
MAX_CONFIG_BYTES = 64 * 1024  # a config file is a few lines

Source = Literal["--relay", "XFER_RELAY", "config", "built-in"]


def config_path(env: Environment) -> Path:
    """The config file: ``XFER_CONFIG``, else ``config.json`` in the platform's config folder."""
    named = env.get(CONFIG_VARIABLE)
    if named:
        return Path(named)
    from platformdirs import user_config_path

    return user_config_path("xfer", appauthor=False) / "config.json"


def read_config(path: Path) -> dict[str, str]:
    """The settings in ``path`` (none when it does not exist)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LocalFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise LocalFileError(f"{path} is too large to be xfer's config file")
    try:
        parsed = json.loads(data.decode("utf-8")) if data.strip() else {}
    except (UnicodeDecodeError, ValueError):
        parsed = None
    if not isinstance(parsed, dict):
        raise LocalFileError(f"{path} is not xfer's config file (a JSON object); fix it or remove it")
    return {str(k): v for k, v in parsed.items() if isinstance(v, str)}


def write_config(path: Path, settings: dict[str, str]) -> None:
    """Replace ``path`` with ``settings``, atomically (a crash leaves the old file or the new)."""
    text = json.dumps(settings, indent=2, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise LocalFileError(f"cannot write {path}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class RelayChoice:
    """The relay a command uses, and where that came from."""

    url: str | None  # None: a relay inside this process
    source: Source


def choose_relay(option: str | None, env: Environment) -> RelayChoice:
    """``--relay``, else ``XFER_RELAY``, else the config file's, else the built-in relay.

    (``option`` is ``--relay`` alone: the command reads ``XFER_RELAY`` here, not through click.)
    """
    if option:
        return RelayChoice(option, "--relay")
    variable = env.get("XFER_RELAY")
    if variable:
        return RelayChoice(variable, "XFER_RELAY")
    saved = read_config(config_path(env)).get("relay")
    if saved:
        return RelayChoice(saved, "config")
    return RelayChoice(None, "built-in")


def set_relay(env: Environment, url: str | None) -> Path:
    """Save ``url`` as the default relay (None: forget it); the file written."""
    path = config_path(env)
    settings = read_config(path)
    if url is None:
        settings.pop("relay", None)
    else:
        relay_ws_url(url)  # a UsageError now rather than at every send
        settings["relay"] = url
    write_config(path, settings)
    return path


def check_relay_argument(url: str | None, unset: bool) -> str | None:
    """``xfer config relay [URL] [--unset]``: the URL to save, or None to forget it."""
    if unset and url is not None:
        raise UsageError("give a relay address or --unset, not both")
    if not unset and url is None:
        raise UsageError("give the relay's address (xfer config relay wss://relay.example), or --unset")
    return url
