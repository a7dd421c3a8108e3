"""Relay addresses as people type them, and the URLs xfer prints.

``relay_ws_url`` turns ``ws://h:p``, ``wss://h``, ``http(s)://h/...`` or plain
``h:p`` into the WebSocket URL of the relay's endpoint; ``page_url`` gives the
phone page for a room. Pure functions, apart from ``lan_address``.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit, urlunsplit

from .errors import UsageError

DEFAULT_PORT = 8765
WS_PATH = "/ws"
_SCHEMES = {"ws": "ws", "wss": "wss", "http": "ws", "https": "wss"}


def relay_ws_url(text: str) -> str:
    """The relay's WebSocket URL for an address as a user typed it."""
    raw = text.strip()
    if not raw:
        raise UsageError("the relay address is empty; try ws://HOST:8765")
    if re.match(r"(?i)(wss?|https?):(?!//|[0-9]+$)", raw):  # ws:/host, https:host: a slash missing
        raise UsageError(f"cannot use relay address {text!r}: write it as ws://HOST:PORT (two slashes)")
    if "://" not in raw:
        raw = "ws://" + raw
    parts = urlsplit(raw)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None:
        raise UsageError(f"cannot use relay address {text!r}: it must start with ws://, wss://, http:// or https://")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise UsageError(f"cannot use relay address {text!r}: the port is not a number from 1 to 65535") from None
    if not host:
        raise UsageError(f"cannot use relay address {text!r}: it names no host")
    if port == 0:
        raise UsageError(f"cannot use relay address {text!r}: the port is not a number from 1 to 65535")
    if port is None and parts.scheme.lower() in ("ws",) and "://" not in text.strip():
        port = DEFAULT_PORT
    netloc = _netloc(host, port)
    path = parts.path.rstrip("/")
    if not path.endswith(WS_PATH):
        path += WS_PATH
    return urlunsplit((scheme, netloc, path, "", ""))


def _netloc(host: str, port: int | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def page_url(ws_url: str, code: str) -> str:
    """The phone page for room ``code`` behind the relay at ``ws_url``."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    path = parts.path[: -len(WS_PATH)] if parts.path.endswith(WS_PATH) else parts.path
    return urlunsplit((scheme, parts.netloc, path.rstrip("/") + "/", "", code))


def ws_url_for(host: str, port: int, *, tls: bool = False) -> str:
    return urlunsplit(("wss" if tls else "ws", _netloc(host, port), WS_PATH, "", ""))


def lan_address() -> str | None:
    """The machine's LAN address (private IPv4 preferred), or None when it has none.

    Reads the interface list (ifaddr); sends no packet anywhere.
    """
    import ifaddr

    best: tuple[int, str] | None = None
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue  # IPv6 entries are tuples; phones scan IPv4 URLs more reliably
            try:
                addr = ipaddress.IPv4Address(ip.ip)
            except ValueError:
                continue
            if addr.is_loopback or addr.is_link_local or addr.is_unspecified:
                continue
            rank = 0 if addr.is_private else 1
            if str(ip.ip).startswith("172.17."):
                rank = 2  # docker's default bridge is rarely what a phone can reach
            if best is None or rank < best[0]:
                best = (rank, ip.ip)
    return best[1] if best else None
