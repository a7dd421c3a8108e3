"""A download asked for on one relay, for a page that another relay holds.

A load balancer that does not keep a client on one relay may send the page's download
request to a relay other than the one its WebSocket is on. That relay (the HTTP side)
finds the page's relay in Redis and asks it (G); the page's relay claims the file and
answers (H: status, name, size), then sends the body chunk by chunk (Y), each only after
the HTTP side wrote the one before (W): acknowledgements to the sender still count bytes
written to the phone. X aborts on the HTTP side, Z (the phone went away) on the page's.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from .download_http import _TOKEN, _Aborted, _refusal, download_headers

if TYPE_CHECKING:
    from .download import DownloadBridge
    from .download_http import Download, FileStream


@dataclass
class _Elsewhere:
    """A download that one relay serves over HTTP for a page that another relay holds."""

    id: str  # this stream's id on both relays
    relay: str  # the other relay
    # what came: head, body, abort (on the HTTP side)
    items: asyncio.Queue[tuple[Any, ...]] = field(default_factory=asyncio.Queue)
    written: asyncio.Event = field(default_factory=asyncio.Event)  # the HTTP side wrote the last body (page side)
    download: Download | None = None  # what is streamed (on the page's side)
    file: FileStream | None = None


class AcrossRelays:
    """What a ``DownloadBridge`` does for downloads across relays (its ``from_bus`` hook)."""

    def __init__(self, bridge: DownloadBridge) -> None:
        self.bridge = bridge
        self.elsewhere: dict[str, _Elsewhere] = {}  # stream id -> a download served across relays

    @property
    def bus(self) -> Any:
        return self.bridge.bus

    async def http(self, token: str, index: int, browser: str | None) -> Response:
        """On the relay with the HTTP request (from ``browser``): ask the page's relay for the file."""
        bus = self.bus
        owner = await bus.download_owner(token)
        if owner is None or owner == bus.relay_id or not await bus.relay_alive(owner):
            return _refusal(404)
        e = _Elsewhere(secrets.token_hex(8), owner)
        self.elsewhere[e.id] = e
        get = {"s": e.id, "t": token, "i": index, "r": bus.relay_id, **({"b": browser} if browser else {})}
        await bus.to_relay(owner, b"G", get)
        try:
            head = await asyncio.wait_for(e.items.get(), self.bridge.limits.download_head_timeout)
        except asyncio.TimeoutError:
            head = ("abort",)
        if head[0] != "head" or head[1] != 200:
            self.elsewhere.pop(e.id, None)
            if head[0] != "head":
                await bus.to_relay(owner, b"Z", {"s": e.id})
            return _refusal(head[1] if head[0] == "head" and head[1] in (404, 410) else 404)
        return _ElsewhereResponse(self, e, name=head[2], size=head[3])

    def from_bus(self, kind: bytes, body: bytes) -> None:
        """A download message from another relay (never waits: the relay's channel goes on)."""
        if kind == b"Y":  # a body for a response here: stream id, more (0/1), bytes
            e = self.elsewhere.get(body[:16].decode("ascii", "replace"))
            if e is not None:
                e.items.put_nowait(("body", body[17:], body[16:17] == b"1"))
            return
        msg = json.loads(body)
        stream = str(msg["s"])
        if kind == b"G":
            browser = msg.get("b")
            self.bridge._spawn(
                self._serve(stream, str(msg["t"]), int(msg["i"]), str(msg["r"]), str(browser) if browser else None)
            )
            return
        e = self.elsewhere.get(stream)
        if e is None:
            return
        if kind == b"H":
            e.items.put_nowait(("head", int(msg["status"]), str(msg.get("name") or "file"), msg.get("size")))
        elif kind == b"W":
            e.written.set()
        elif kind == b"X":
            e.items.put_nowait(("abort",))
        elif kind == b"Z" and e.download is not None and e.file is not None:  # the phone went away there
            self.bridge._spawn(
                self.bridge._fail(
                    e.download,
                    "download-cancelled",
                    f"the download of {e.file.name} stopped on the phone",
                    e.file.index,
                )
            )

    async def _serve(self, stream: str, token: str, index: int, relay: str, browser: str | None) -> None:
        """On the page's relay: stream file ``index`` to the relay that has the HTTP request."""
        d = self.bridge.by_token.get(token) if _TOKEN.match(token) else None
        status = self.bridge._claim(d, index, browser)
        head = {"s": stream, "status": status}
        if status != 200:
            await self.bus.to_relay(relay, b"H", head)
            return
        assert d is not None
        f = d.files[index]
        e = self.elsewhere[stream] = _Elsewhere(stream, relay, download=d, file=f)
        f.task = asyncio.current_task()
        done = False
        try:
            await self.bus.to_relay(relay, b"H", {**head, "name": f.name, "size": f.size})

            async def send(message: dict[str, Any]) -> None:
                e.written.clear()
                more = b"1" if message.get("more_body") else b"0"
                await self.bus.to_relay(relay, b"Y", stream.encode() + more + message.get("body", b""))
                try:
                    await asyncio.wait_for(e.written.wait(), self.bridge.limits.download_start_timeout)
                except asyncio.TimeoutError:
                    raise _Aborted() from None

            try:
                await self.bridge.pump(d, f, send)
                done = True
            except _Aborted:
                await self.bridge._fail(
                    d, "download-cancelled", f"the download of {f.name} stopped on the phone", f.index
                )
        finally:
            self.elsewhere.pop(stream, None)
            if not done:  # tell the HTTP side to drop the connection: the browser marks the download failed
                self.bridge._spawn(self.bus.to_relay(relay, b"X", {"s": stream}))


class _ElsewhereResponse(Response):
    """On the relay that has the HTTP request: the body as the page's relay sends it (see above)."""

    def __init__(self, across: AcrossRelays, e: _Elsewhere, name: str, size: int | None) -> None:
        self.across, self.e = across, e
        self.status_code = 200
        self.background = None
        self.init_headers(download_headers(name, size if isinstance(size, int) and size >= 0 else None))

    async def _next(self) -> tuple[Any, ...]:
        """The next item from the page's relay; an abort if that relay stopped beating."""
        bus = self.across.bus
        while True:
            try:
                return await asyncio.wait_for(self.e.items.get(), bus.expiry)
            except asyncio.TimeoutError:
                if not await bus.relay_alive(self.e.relay):
                    return ("abort",)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        e, bus = self.e, self.across.bus
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

        async def gone() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(gone())
        try:
            while True:
                item = asyncio.ensure_future(self._next())
                await asyncio.wait({item, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if not item.done():  # the browser cancelled the download or went away
                    item.cancel()
                    await bus.to_relay(e.relay, b"Z", {"s": e.id})
                    raise _Aborted("download aborted")
                got = item.result()
                if got[0] != "body":
                    raise _Aborted("download aborted")
                await send({"type": "http.response.body", "body": got[1], "more_body": got[2]})
                await bus.to_relay(e.relay, b"W", {"s": e.id})
                if not got[2]:
                    return
        finally:
            watcher.cancel()
            self.across.elsewhere.pop(e.id, None)
