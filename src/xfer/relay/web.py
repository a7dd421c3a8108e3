"""The phone page: static files from ``xfer/web``, their security headers, and the
Origin check that keeps other web sites from opening WebSockets to the relay.

The page is plain HTML, CSS and JavaScript modules, read once from the package
and served from memory: no build step, nothing fetched from elsewhere. One module
is not a file: ``constants.js`` carries the protocol's numbers and codes (version,
chunk size, window, header size, name and text limits, the code alphabet, close
codes), made from ``xfer.protocol`` and the relay's ``Limits``, so that the page
never keeps copies of its own. ``protocol.js`` imports it before anything connects.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..protocol import HEADER_SIZE, PROTOCOL_VERSION
from ..protocol.closes import Close
from ..protocol.frames import CHUNK
from ..protocol.keys import KEY_BYTES
from ..protocol.limits import LIMITS, Limits
from ..protocol.words import MAX_NAMEPLATE
from .download_http import BROWSER_COOKIE, browser_of

# file name -> content type; "/" serves index.html
PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "icon.svg": "image/svg+xml",
    "manifest.webmanifest": "application/manifest+json",
    "share-sw.js": "text/javascript; charset=utf-8",
    "shared.js": "text/javascript; charset=utf-8",
    "absence.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "aes.js": "text/javascript; charset=utf-8",
    "connection.js": "text/javascript; charset=utf-8",
    "e2e.js": "text/javascript; charset=utf-8",
    "guard.js": "text/javascript; charset=utf-8",
    "hasher.js": "text/javascript; charset=utf-8",
    "hashing.js": "text/javascript; charset=utf-8",
    "hints.js": "text/javascript; charset=utf-8",
    "hkdf.js": "text/javascript; charset=utf-8",
    "protocol.js": "text/javascript; charset=utf-8",
    "saver.js": "text/javascript; charset=utf-8",
    "sealed.js": "text/javascript; charset=utf-8",
    "sealer.js": "text/javascript; charset=utf-8",
    "sealing.js": "text/javascript; charset=utf-8",
    "sha256.js": "text/javascript; charset=utf-8",
    "sw.js": "text/javascript; charset=utf-8",
    "transfers.js": "text/javascript; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
    "received.js": "text/javascript; charset=utf-8",
}

_HOST = re.compile(r"^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$")

# Headers on every page response. The CSP allows scripts and styles from the relay
# only (no inline code at all), images from the page's own blob: thumbnails, and
# connections only back to the relay.
_BASE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
    "Permissions-Policy": "geolocation=(), microphone=(), payment=()",
}


def content_security_policy(host: str | None) -> str:
    """The page's CSP. ``connect-src`` names the relay's own host for ws:/wss: as well
    as 'self', since older Safari does not let 'self' match WebSocket URLs."""
    connect = "'self'"
    if host and _HOST.match(host):
        connect += f" ws://{host} wss://{host}"
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; manifest-src 'self'; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


CONSTANTS_JS = "constants.js"


def page_constants(limits: Limits = LIMITS, *, builtin_relay: bool = False) -> dict[str, Any]:
    """What the page must agree on with the rest of xfer, from where xfer keeps it.

    Keys are the Python names (``Limits`` fields keep theirs), so a reader can find
    where each value comes from. ``builtin_relay``: this relay runs inside the
    ``xfer send``/``xfer receive`` whose QR code the page came from, so what the page
    downloads through its bridge never leaves that machine (docs/page.md).
    """
    return {
        "protocol_version": PROTOCOL_VERSION,
        "header_size": HEADER_SIZE,
        "chunk_kind": CHUNK,
        "chunk_size": limits.chunk_size,
        "window": limits.window,
        "max_peer_name_chars": limits.max_peer_name_chars,
        "max_text_chars": limits.max_text_chars,
        "max_nameplate": MAX_NAMEPLATE,
        "link_secret_chars": _base64url_chars(KEY_BYTES),
        "builtin_relay": builtin_relay,
        "close_codes": {
            "protocol": int(Close.PROTOCOL),
            "version": int(Close.VERSION),
            "room_not_found": int(Close.ROOM_NOT_FOUND),
            "room_full": int(Close.ROOM_FULL),
            "replaced": int(Close.REPLACED),
            "restart": int(Close.RESTART),
        },
    }


def _base64url_chars(size: int) -> int:
    """Characters of ``size`` bytes in unpadded base64url (``keys.link_fragment``)."""
    return (size * 8 + 5) // 6


@functools.lru_cache(maxsize=8)
def constants_module(limits: Limits = LIMITS, builtin_relay: bool = False) -> bytes:
    """``constants.js``: the page's constants as a JavaScript module (made once per ``Limits``)."""
    document = json.dumps(page_constants(limits, builtin_relay=builtin_relay), indent=2, sort_keys=True)
    return (
        "// Made by the relay from xfer.protocol and its Limits (xfer/relay/web.py): do not copy these.\n"
        f"export default Object.freeze({document});\n"
    ).encode()


def _load() -> dict[str, bytes]:
    folder = resources.files("xfer") / "web"
    return {name: (folder / name).read_bytes() for name in PAGE_FILES}


Endpoint = Callable[[Request], Awaitable[Response]]


def page_routes(limits: Limits = LIMITS) -> list[Route]:
    """The page's routes. ``constants.js`` takes ``limits`` from the app's state
    (``app.state.limits``, set where the relay is built) when there, else from here,
    and ``app.state.builtin_relay`` (set by ``RelayServer(builtin=True)``)."""
    files = _load()

    async def constants(request: Request) -> Response:
        served = getattr(request.app.state, "limits", None)
        builtin = getattr(request.app.state, "builtin_relay", False) is True
        body = constants_module(served if isinstance(served, Limits) else limits, builtin)
        return Response(body, media_type="text/javascript; charset=utf-8", headers=_BASE_HEADERS)

    def endpoint(name: str) -> Endpoint:
        body, media_type = files[name], PAGE_FILES[name]

        async def serve(request: Request) -> Response:
            headers = dict(_BASE_HEADERS)
            if name == "index.html":
                headers["Content-Security-Policy"] = content_security_policy(request.headers.get("host"))
            response = Response(body, media_type=media_type, headers=headers)
            if name == "index.html" and browser_of(request.cookies) is None:
                # The page's download links work for this browser only (download_http.browser_of).
                response.set_cookie(
                    BROWSER_COOKIE,
                    secrets.token_hex(16),
                    path="/",
                    httponly=True,
                    samesite="lax",
                    secure=request.url.scheme == "https",
                )
            return response

        return serve

    routes = [Route("/", endpoint("index.html"))]
    routes += [Route(f"/{name}", endpoint(name)) for name in PAGE_FILES if name != "index.html"]

    async def no_icon(request: Request) -> Response:
        return PlainTextResponse("", status_code=204)

    async def unsaved(request: Request) -> Response:
        # sw.js answers save/ID itself; one that reaches the relay (no worker any more) must not
        # take the page away: 204 leaves it where it is.
        return Response(status_code=204, headers={"Cache-Control": "no-store"})

    async def share_lost(request: Request) -> Response:
        # The installed page's share target (manifest.webmanifest) is taken by share-sw.js in the
        # browser; a POST that reaches the relay found no worker (never installed, or cleared).
        # The body (someone's photos) is not read: the page is told it did not arrive.
        return Response(status_code=303, headers={**_BASE_HEADERS, "Location": "./?share=failed"})

    routes.append(Route("/share", share_lost, methods=["POST"]))
    routes.append(Route(f"/{CONSTANTS_JS}", constants))
    routes.append(Route("/save/{id}", unsaved))
    routes.append(Route("/favicon.ico", no_icon))
    return routes


def origin_allowed(origin: str | None, host: str | None, extra: tuple[str, ...] | frozenset[str] = ()) -> bool:
    """May a WebSocket upgrade with this ``Origin`` header join the relay?

    Clients that send no Origin (the xfer CLI, scripts) may. Browsers always send
    one: it must name the relay's own host (the page the relay served), or one of
    ``extra`` (``xfer serve --allow-origin``, for a page behind a reverse proxy that
    rewrites Host). Any other site could otherwise drive a visitor's browser into
    the relay's rooms.
    """
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    if origin in {o.strip().rstrip("/").lower() for o in extra}:
        return True
    if origin == "null" or not host:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False
    return _with_port(parts.netloc, parts.scheme) == _with_port(host.strip().lower(), parts.scheme)


def _with_port(netloc: str, scheme: str) -> str:
    """``host`` or ``host:port`` as ``host:port``, with the scheme's default port."""
    if netloc.endswith("]") or ":" not in netloc.rsplit("]", 1)[-1]:
        return f"{netloc}:{443 if scheme == 'https' else 80}"
    return netloc


def host_allowed(host: str | None, names: frozenset[str]) -> bool:
    """May a request with this ``Host`` header be answered (DNS rebinding)?

    A page on another site can make its own name point at the relay's address and then
    talk to the relay as the same origin, with a ``Host`` (and ``Origin``) of its own
    name. So the relay answers only: IP addresses (nobody can point a literal address
    elsewhere), ``localhost`` and its subdomains (browsers keep them on this machine),
    and ``names``: its own (``own_names``). The port is not checked.
    """
    if not host or not _HOST.match(host.strip()):
        return False
    name = host.strip().lower()
    name = name[1 : name.index("]")] if name.startswith("[") else name.rsplit(":", 1)[0]
    name = name.rstrip(".")
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        pass
    return name == "localhost" or name.endswith(".localhost") or name in names


ALLOW_HOSTS_ENV = "XFER_ALLOW_HOSTS"  # more names for every relay of this process: "a.lan,b.lan"


def env_hosts() -> tuple[str, ...]:
    """The host names in ``$XFER_ALLOW_HOSTS`` (commas or spaces between them)."""
    return tuple(os.environ.get(ALLOW_HOSTS_ENV, "").replace(",", " ").split())


@functools.lru_cache(maxsize=16)
def own_names(urls: tuple[str, ...], hosts: tuple[str, ...]) -> frozenset[str]:
    """The host names the relay answers to besides addresses and localhost: this
    machine's name (and ``NAME.local``), those of ``urls`` (its public URL, the
    ``--allow-origin`` origins) and ``hosts`` (``--allow-host``, or ``--host`` when it is a name)."""
    machine = socket.gethostname().lower().rstrip(".")
    names = {machine, f"{machine.split('.', 1)[0]}.local"}
    for url in urls:
        try:
            hostname = urlsplit(url).hostname
        except ValueError:
            continue
        if hostname:
            names.add(hostname.rstrip("."))
    names.update(h.strip().lower().rstrip(".") for h in hosts if h.strip())
    return frozenset(names)


class HostCheck:
    """Answers requests for the relay's own names only (``host_allowed``): every page
    and download request, and WebSocket upgrades from browsers (those with an
    ``Origin``; the CLI and scripts, which DNS rebinding cannot drive, may use any name).
    ``/healthz`` is left open for load balancers, which ask by whatever name they know.
    ``names``: the relay's names, read at each request (the CLI sets them after building the app)."""

    def __init__(self, app: ASGIApp, names: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind in ("http", "websocket") and scope.get("path") != "/healthz":
            headers = Headers(scope=scope)
            if (kind == "http" or "origin" in headers) and not host_allowed(headers.get("host"), self.names()):
                if kind == "websocket":
                    await send({"type": "websocket.close", "code": int(Close.POLICY)})  # before accept: HTTP 403
                else:
                    refusal = PlainTextResponse(
                        "this relay does not answer to that name (xfer serve --allow-host NAME)\n",
                        status_code=421,
                        headers=_BASE_HEADERS,
                    )
                    await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
