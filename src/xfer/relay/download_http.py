"""The HTTP side of the download bridge: a download and its files' queues, the responses
that drain them into a page's downloads, and what they say when they refuse.
(``download`` runs the bridge's WebSocket side; ``download_relays`` the downloads asked
for on one relay for a page that another relay holds.)"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from ..protocol import Ack, Message, Verified
from ..protocol.errors import LocalProtocolError
from ..protocol.machine import Output, Send
from ..protocol.names import safe_name
from ..protocol.receiver import ReceiverMachine, ReceiverState

_TOKEN = re.compile(r"^[0-9a-f]{32}$")  # a download's secret, as the page drew it
BROWSER_COOKIE = "xfer-browser"  # the relay's mark on a browser that loaded its page (see browser_of)


def browser_of(cookies: dict[str, str]) -> str | None:
    """The browser a request came from, by the cookie the relay set when it served the page
    (32 hex digits drawn by the relay), or None. A download link works only for the browser
    whose page asked for it: others that learn the link (on the network, through the
    sender's accept) get nothing."""
    value = cookies.get(BROWSER_COOKIE)
    return value if value is not None and _TOKEN.match(value) else None


if TYPE_CHECKING:
    from .download_relays import AcrossRelays

_END = None  # in a file's queue after its last chunk: the sender's file-end came, and the machine verified it


@dataclass(frozen=True)
class _Verdict:
    """In a file's queue instead of ``_END``: the file-end showed the file is bad. The response
    fails when it gets there (a phone that went away first is the reason given, not this)."""

    code: str
    why: str
    index: int


@dataclass
class FileStream:
    index: int
    name: str
    size: int | None  # None: a stream whose length comes with its file-end
    mime: str | None
    queue: asyncio.Queue[bytes | _Verdict | None] = field(default_factory=asyncio.Queue)  # chunks, then _END
    space: asyncio.Event = field(default_factory=asyncio.Event)  # set when the response takes a chunk
    queued: int = 0  # bytes in the queue
    taken: int = 0  # chunks the response has taken
    watch: asyncio.Task[None] | None = None  # for chunks that came through Redis: fails a download nobody fetches
    claimed: bool = False
    complete: bool = False  # the response's last byte went out
    task: asyncio.Task[Any] | None = None


@dataclass
class Download:
    room: str
    page: int
    sender: int
    transfer: int
    token: str
    files: list[FileStream]
    machine: ReceiverMachine  # the receiver's decisions: chunk order, sizes, hashes, acks
    failed: bool = False
    browser: str | None = None  # the browser of the page that asked (browser_of); None: any (no cookie came)


def _size(item: bytes | _Verdict | None) -> int:
    return len(item) if isinstance(item, bytes) else 0


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
    def __init__(self, bridge: HttpSide, d: Download, f: FileStream) -> None:
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


class HttpSide:
    """What the bridge does for the page's HTTP requests: claim a file, pump its queue into
    the response, and tell the download's machine (and so the sender) what was written."""

    by_token: dict[str, Download]
    across: AcrossRelays

    async def _fail(self, d: Download, code: str, why: str, index: int | None = None) -> None:
        raise NotImplementedError  # the bridge's: end the download and tell both peers

    async def _tell(self, room: str, peer_id: int, message: Message) -> None:
        raise NotImplementedError  # the bridge's: send to a peer of the room

    def route(self) -> Route:
        return Route("/download/{token}/{index:int}", self._http)

    async def _http(self, request: Request) -> Response:
        token, index = request.path_params["token"], request.path_params["index"]
        if request.method != "GET":  # (Starlette routes HEAD too; it must not use up the link)
            return PlainTextResponse(
                "Downloads answer GET only.", status_code=405, headers={"Allow": "GET", **_NO_STORE}
            )
        if not _TOKEN.match(token):
            return _refusal(404)
        d = self.by_token.get(token)
        browser = browser_of(request.cookies)
        if d is None:  # perhaps a page of another relay (Redis): ask the one that holds it
            return await self.across.http(token, index, browser)
        status = self._claim(d, index, browser)
        if status != 200:
            return _refusal(status)
        assert d is not None
        return _BridgeResponse(self, d, d.files[index])

    def _claim(self, d: Download | None, index: int, browser: str | None) -> int:
        """Claim file ``index`` of ``d`` for one response from ``browser``: 200, or the HTTP
        status that refuses it (another browser is told the link does not exist, and uses nothing up)."""
        if d is None or d.failed or not 0 <= index < len(d.files):
            return 404
        if d.browser is not None and browser != d.browser:
            return 404
        f = d.files[index]
        if f.claimed:
            return 410
        f.claimed = True
        return 200

    async def pump(self, d: Download, f: FileStream, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        """Move the file's chunks into the HTTP response; tell the machine what was written.

        One chunk is held back until the next arrives: the last one goes out only
        after the sender's file-end, and only if what was streamed has its SHA-256
        (the machine checked it before it let ``_END`` into the queue).
        """
        held: bytes | None = None
        while True:
            item = await f.queue.get()
            f.taken += 1
            f.queued -= _size(item)
            f.space.set()
            if item is _END:
                break
            if isinstance(item, _Verdict):
                await self._fail(d, item.code, item.why, item.index)
                raise _Aborted()
            if held is not None:
                await send({"type": "http.response.body", "body": held, "more_body": True})
                await self._written(d, f, len(held))
            held = item
        await send({"type": "http.response.body", "body": held or b"", "more_body": False})
        f.complete = True
        await self._written(d, f, len(held or b""))
        await self._machine(d, lambda: d.machine.placed(f.index, ""))

    async def _written(self, d: Download, f: FileStream, n: int) -> None:
        if n:
            await self._machine(d, lambda: d.machine.wrote(f.index, n))

    async def _machine(self, d: Download, call: Callable[[], list[Output]]) -> None:
        """A local input to the machine; a download that failed meanwhile takes none."""
        if d.failed:
            raise _Aborted()
        if d.machine.state is ReceiverState.FAILED:
            return  # a verdict waits further down the file's queue: stream up to it
        try:
            outputs = call()
        except LocalProtocolError:
            raise _Aborted() from None
        await self._relay(d, outputs)

    async def _relay(self, d: Download, outputs: list[Output]) -> None:
        """Send what the machine sends to the sender in the page's name, and a copy to the page
        (acks are its progress, ``verified`` its file's end)."""
        for output in outputs:
            if isinstance(output, Send) and isinstance(output.message, (Ack, Verified)):
                await self._tell(d.room, d.sender, replace(output.message, to=d.sender, sender=d.page))
                await self._tell(d.room, d.page, replace(output.message, to=d.page, sender=d.sender))
