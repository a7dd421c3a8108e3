"""The HTTP side of the download bridge: the responses that carry a page's files, and
what they say when they refuse. (``download`` runs the bridge; ``download_relays`` the
downloads asked for on one relay for a page that another relay holds.)"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.responses import PlainTextResponse, Response

from ..protocol.names import safe_name

_TOKEN = re.compile(r"^[0-9a-f]{32}$")  # a download's secret, as the page drew it

if TYPE_CHECKING:
    from .download import Download, DownloadBridge, FileStream


class _Aborted(Exception):
    """Raised out of a download's response so that uvicorn drops the connection mid-body:
    the browser then marks the download failed. Both peers have been told why already."""


class QuietAborts(logging.Filter):
    """For uvicorn's error log: an aborted download is not an error of the relay (no traceback)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], _Aborted))


_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _refusal(status: int) -> Response:
    text = "This download link was already used." if status == 410 else "This download link is not valid (any more)."
    return PlainTextResponse(text, status_code=status, headers=_NO_STORE)


def download_headers(name: str, size: int | None) -> dict[str, str]:
    headers = {
        "content-type": "application/octet-stream",
        "content-disposition": content_disposition(name),
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
    }
    if size is not None:
        headers["content-length"] = str(size)
    return headers


def content_disposition(name: str) -> str:
    """``attachment`` with an ASCII fallback and the real name as RFC 5987 ``filename*``."""
    clean = safe_name(name)
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\%;' else "_" for c in clean) or "file"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(clean, safe='')}"


class _BridgeResponse(Response):
    def __init__(self, bridge: DownloadBridge, d: Download, f: FileStream) -> None:
        self.bridge, self.d, self.f = bridge, d, f
        self.status_code = 200
        self.background = None
        self.init_headers(download_headers(f.name, f.size))

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump = asyncio.ensure_future(self.bridge.pump(self.d, self.f, send))
        self.f.task = pump

        async def gone() -> None:  # the browser cancelled the download or went away
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(gone())
        try:
            await asyncio.wait({pump, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
        if not pump.done() and self.f.complete:  # the browser hung up after the last byte: fine
            await pump
        if pump.done() and not pump.cancelled() and pump.exception() is None:
            return
        if not pump.done():
            pump.cancel()
            await self.bridge._fail(
                self.d, "download-cancelled", f"the download of {self.f.name} stopped on the phone", self.f.index
            )
        raise _Aborted("download aborted")  # uvicorn drops the connection: the browser sees a failed download
