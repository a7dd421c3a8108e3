"""What sender and receiver share: events up to the UI, and waiting on state changes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import XferError
from .connection import RelayConnection

Emit = Callable[..., None]  # emit("event-name", **fields)

WINDOW = 8 * 1024 * 1024  # unacknowledged bytes a sender may have in flight
ACK_EVERY = 1024 * 1024  # a receiver acknowledges at least this often


@dataclass(frozen=True)
class SourceFile:
    """A local file to offer: checked readable before any room is opened."""

    path: Path
    name: str
    size: int
    mtime: float


class PeerTask:
    """A sender or receiver: one reader loop, and a main coroutine that waits on it."""

    def __init__(self, conn: RelayConnection, emit: Emit) -> None:
        self.conn = conn
        self.emit = emit
        self._failure: BaseException | None = None
        self._changed = asyncio.Event()

    def fail(self, error: BaseException) -> None:
        if self._failure is None:
            self._failure = error
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def until(self, predicate: Callable[[], Any]) -> None:
        """Wait until ``predicate()`` is true; raise the failure if one comes first."""
        while True:
            if self._failure is not None:
                raise self._failure
            if predicate():
                return
            await self._changed.wait()

    async def _read_loop(self) -> None:
        try:
            while True:
                item = await self.conn.recv()
                await self.handle(item)
                self._notify()
        except XferError as exc:
            self.fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug: surface it rather than hang
            self.fail(exc)

    async def handle(self, item: Any) -> None:
        raise NotImplementedError

    async def run(self) -> dict[str, Any]:
        reader = asyncio.create_task(self._read_loop())
        try:
            return await self.main()
        finally:
            reader.cancel()
            try:
                await reader
            except (asyncio.CancelledError, Exception):
                pass

    async def main(self) -> dict[str, Any]:
        raise NotImplementedError


def peer_label(info: Any) -> str:
    """How a peer is named in events and messages: its name, or its role."""
    name = getattr(info, "name", "") or getattr(info, "role", "peer")
    return name
