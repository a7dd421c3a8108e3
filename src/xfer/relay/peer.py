"""A peer on a WebSocket, as the relay holds it: awaited, bounded sends."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from starlette.websockets import WebSocket

from ..protocol import Error, PeerInfo, serialize
from ..protocol.closes import Close
from ..protocol.room import address_key
from .download_http import browser_of

if TYPE_CHECKING:
    from .wire import WireProtocol

log = logging.getLogger("xfer.relay")

T = TypeVar("T")

if sys.version_info >= (3, 11):

    async def _within(coro: Coroutine[Any, Any, T], seconds: float) -> T:
        """``wait_for`` without a task per call: this runs once per forwarded frame."""
        async with asyncio.timeout(seconds):
            return await coro
else:  # pragma: no cover - Python 3.10
    _within = asyncio.wait_for


class PeerConnection:
    """One WebSocket peer of this relay."""

    __slots__ = ("ws", "address", "browser", "info", "room", "dead", "send_timeout", "evict", "wire", "_send_lock")
    relay_id = None  # on this relay (a peer that another relay holds is a bus.RemotePeer)

    def __init__(
        self, ws: WebSocket, send_timeout: float, evict: Callable[[PeerConnection, int], Coroutine[Any, Any, None]]
    ) -> None:
        self.ws = ws
        self.evict = evict  # the relay's way to remove a peer: (peer, close code)
        self.address = address_key(ws.client.host) if ws.client else "unknown"  # what the per-address limits count
        self.browser = browser_of(ws.cookies)  # a page's browser: its download links are for it alone
        self.info: PeerInfo | None = None
        self.room: str | None = None
        self.dead = False
        self.send_timeout = send_timeout
        self._send_lock = asyncio.Lock()
        self.wire: WireProtocol | None = None  # its connection, once chunks may go to it directly (wire.py)

    async def send(self, data: str | bytes) -> None:
        # Awaited sends are the backpressure: a peer that reads slowly slows its sender.
        # One that stops reading is dropped after send_timeout, so it cannot stall the others.
        if self.dead:
            return
        try:
            async with self._send_lock:
                if isinstance(data, str):
                    await _within(self.ws.send_text(data), self.send_timeout)
                else:
                    await _within(self.ws.send_bytes(data), self.send_timeout)
        except asyncio.TimeoutError:
            log.info("dropping a peer that stopped reading")
            self.drop(Close.TOO_SLOW)
        except Exception:  # the peer went away; its own handler cleans up
            self.dead = True
            log.debug("send to a departed peer dropped", exc_info=True)

    def drop(self, code: int) -> None:
        """Stop sending to this peer, take it out of its room and close it, without
        waiting on it (it may not be reading)."""
        if not self.dead:
            self.dead = True
            asyncio.get_running_loop().create_task(self.evict(self, code))

    async def close(self, code: int, error: Error | None = None) -> None:
        try:
            if error is not None:
                await self.ws.send_text(serialize(error))
            await self.ws.close(code)
        except Exception:
            log.debug("close of a departed peer", exc_info=True)
