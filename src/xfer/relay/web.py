"""The phone page: static files from ``xfer/web``, their security headers, and the
Origin check that keeps other web sites from opening WebSockets to the relay.

The page is plain HTML, CSS and JavaScript modules, read once from the package
and served from memory: no build step, nothing fetched from elsewhere.
"""

from __future__ import annotations

import re
from importlib import resources
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

# file name -> content type; "/" serves index.html
PAGE_FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "connection.js": "text/javascript; charset=utf-8",
    "hasher.js": "text/javascript; charset=utf-8",
    "hashing.js": "text/javascript; charset=utf-8",
    "protocol.js": "text/javascript; charset=utf-8",
    "sha256.js": "text/javascript; charset=utf-8",
    "transfers.js": "text/javascript; charset=utf-8",
    "ui.js": "text/javascript; charset=utf-8",
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
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
        f"connect-src {connect}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )


def _load() -> dict[str, bytes]:
    folder = resources.files("xfer") / "web"
    return {name: (folder / name).read_bytes() for name in PAGE_FILES}


def page_routes() -> list[Route]:
    files = _load()

    def endpoint(name: str):
        body, media_type = files[name], PAGE_FILES[name]

        async def serve(request: Request) -> Response:
            headers = dict(_BASE_HEADERS)
            if name == "index.html":
                headers["Content-Security-Policy"] = content_security_policy(request.headers.get("host"))
            return Response(body, media_type=media_type, headers=headers)

        return serve

    routes = [Route("/", endpoint("index.html"))]
    routes += [Route(f"/{name}", endpoint(name)) for name in PAGE_FILES if name != "index.html"]

    async def no_icon(request: Request) -> Response:
        return PlainTextResponse("", status_code=204)

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
