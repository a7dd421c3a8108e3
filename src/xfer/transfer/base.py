"""What sender and receiver share: events up to the UI, waiting on state changes,
and reconnecting when the relay connection drops."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import PeerProtocolError, RelayGone, RelayUnreachable, RoomError, XferError
from ..protocol import PeerInfo, PeerLeft
from ..protocol.limits import LIMITS
from .link import Link

Emit = Callable[..., None]  # emit("event-name", **fields)
Reconnect = Callable[[], Awaitable[Link]]  # opens a fresh connection to the same room


@dataclass(frozen=True)
class SourceFile:
    """A local entry to offer, checked before any room is opened: a file, a folder
    (``kind="dir"``) of a folder transfer, or standard input (``path=None``, size unknown)."""

    path: Path | None
    name: str  # relative path with "/" between parts
    size: int | None
    mtime: float | None
    kind: str = "file"

    @property
    def stream(self) -> bool:
        return self.path is None


class RoundBroken(Exception):
    """The connection dropped or the peer left: start the exchange again from what is verified."""


def backoff_delays(first: float = LIMITS.backoff_first, cap: float = LIMITS.backoff_cap) -> Iterator[float]:
    """Exponential backoff with full jitter: 0.2 s, 0.4 s, ... up to 5 s, each times 0.5 to 1.5."""
    delay = first
    while True:
        yield delay * random.uniform(0.5, 1.5)
        delay = min(delay * 2, cap)


class PeerTask:
    """A sender or receiver: one reader loop, and a main coroutine that waits on it."""

    other = "other side"  # who is on the other end, in messages

    def __init__(
        self,
        conn: Link,
        emit: Emit,
        *,
        reconnect: Reconnect | None = None,
        reconnect_for: float = LIMITS.reconnect_for,
        peer_timeout: float = LIMITS.peer_timeout,
        peers_relay: bool = False,
    ) -> None:
        self.conn = conn
        self.peers_relay = peers_relay  # the relay runs inside the other side's xfer (the LAN found it)
        self.emptied_at: float | None = None  # when the last other peer left the room
        self.alone_at_loss = False  # the last other peer had just left when the link to the relay was lost
        self.emit = emit
        self.reconnect = reconnect
        self.reconnect_for = reconnect_for
        self.peer_timeout = peer_timeout
        self._up = True  # the reader holds a link to the relay (False while it reconnects)
        self.lost_at: float | None = None  # when the link to the relay was last lost
        self.finished = False
        self.broken = False  # the current round was interrupted
        self._failure: BaseException | None = None
        self._changed = asyncio.Event()

    @property
    def connected(self) -> bool:
        """The link is up: the reader has one, and no send on it found it closed."""
        return self._up and not self.conn.lost

    @property
    def failed(self) -> bool:
        """A failure that ends the whole run (the relay stayed away, a peer broke the protocol)."""
        return self._failure is not None

    def fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._notify()

    def break_round(self) -> None:
        self.broken = True
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(
        self,
        predicate: Callable[[], Any],
        *,
        deadline: float | None = None,
        timeout_error: Callable[[], BaseException] | None = None,
        breakable: bool = True,
    ) -> None:
        """Wait until ``predicate()`` is true. Raise the failure if one comes first,
        ``RoundBroken`` if the round is interrupted, or ``timeout_error()`` at ``deadline``."""
        loop = asyncio.get_running_loop()
        while True:
            if self._failure is not None:
                raise self._failure
            if breakable and self.broken:
                raise RoundBroken()
            if predicate():
                return
            changed = self._changed
            if deadline is None:
                await changed.wait()
                continue
            left = deadline - loop.time()
            if left <= 0:
                raise timeout_error() if timeout_error else asyncio.TimeoutError()
            try:
                await asyncio.wait_for(changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _read_loop(self) -> None:
        try:
            while True:
                try:
                    item = await self.conn.recv()
                except RelayGone as exc:
                    if self.reconnect is None or self.finished:
                        raise
                    await self._reconnect(exc)
                    continue
                await self.handle(item)
                if isinstance(item, PeerLeft) and not self.conn.peers:
                    self.emptied_at = asyncio.get_running_loop().time()
                self._notify()
        except XferError as exc:
            self.fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it rather than hang
            self.fail(exc)

    async def _reconnect(self, cause: XferError) -> None:
        """Reach the relay again with backoff, bounded by ``reconnect_for`` seconds."""
        assert self.reconnect is not None
        now = asyncio.get_running_loop().time()
        # (a relay in the other side's xfer waits a few seconds for the peers still in its rooms)
        self.alone_at_loss = not self.conn.peers and self.emptied_at is not None and now - self.emptied_at < 6
        self._up = False
        self.on_disconnect()
        self.break_round()
        loop = asyncio.get_running_loop()
        self.lost_at = loop.time()
        deadline = self.lost_at + self.reconnect_for
        attempt = 0
        for delay in backoff_delays():
            attempt += 1
            delay = min(delay, max(0.0, deadline - loop.time()))
            if attempt == 1:  # one event per outage, not per attempt: an outage may last long
                self.emit("reconnecting", attempt=attempt, delay=round(delay, 2), reason=str(cause))
            await asyncio.sleep(delay)
            try:
                conn = await self.reconnect()
            except (RelayUnreachable, RelayGone) as exc:
                cause = exc
            except RoomError as exc:
                if exc.code != "rate-limited":
                    raise
                cause = exc
            except PeerProtocolError:
                raise
            else:
                self.conn = conn
                self._up = True
                self.emit("reconnected", attempt=attempt, peers=len(conn.peers))
                self.on_reconnect()
                self._notify()
                return
            if loop.time() >= deadline:
                if self.quit_with_relay:
                    raise RelayGone(f"the {self.other}'s xfer has quit, and the relay in it: ask them to start again")
                raise RelayGone(f"could not reach the relay again within {self.reconnect_for:.0f} s: {cause}")

    @property
    def quit_with_relay(self) -> bool:
        """The link is down, and the relay was the other side's own (or went just after they
        left): their xfer has quit and taken the room with it, so `xfer serve` is not the cause."""
        return not self._up and (self.peers_relay or self.alone_at_loss)

    def on_disconnect(self) -> None:
        pass

    def on_reconnect(self) -> None:
        pass

    async def handle(self, item: Any) -> None:
        raise NotImplementedError

    async def run(self) -> dict[str, Any]:
        reader = asyncio.create_task(self._read_loop())
        try:
            return await self.main()
        finally:
            self.finished = True
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, Exception):
                pass

    async def main(self) -> dict[str, Any]:
        raise NotImplementedError

    async def send_or_reconnect(self, message: Any) -> None:
        """Send; a link found closed is lost like one that fails to receive: the reader
        reconnects and the round starts again (a message lost with the link is harmless,
        since every round is renegotiated). Without reconnecting, the loss ends the run."""
        conn = self.conn
        try:
            await conn.send(message)
        except RelayGone:
            if self.reconnect is None or self.finished:
                raise
            await self.drop_link(conn)

    async def drop_link(self, conn: Link, *, close_within: float = 1.0) -> None:
        """Make sure the reader's ``recv`` on ``conn`` ends (so it reconnects), if ``conn``
        is still the current link: a send may find a connection closed before the reader does.
        (A closing handshake that hangs is not waited for longer than ``close_within``.)"""
        if conn is self.conn:
            try:
                await asyncio.wait_for(conn.close(), close_within)
            except (Exception, asyncio.TimeoutError):
                pass  # closing a dead connection may fail; the reader sees it dead anyway

    async def send_quietly(self, message: Any) -> None:
        """Send when losing the message is harmless (the peer may be gone)."""
        try:
            await self.conn.send(message)
        except XferError:
            pass


def peer_label(info: Any) -> str:
    """How a peer is named in events and messages: its name, or its role."""
    return getattr(info, "name", "") or getattr(info, "role", "peer")


def peer_dict(info: PeerInfo) -> dict[str, Any]:
    """A peer as events and ``--json`` show it."""
    return {"id": info.id, "name": info.name, "role": info.role, "client": info.client}
