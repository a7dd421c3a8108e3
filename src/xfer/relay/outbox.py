"""Frames for one peer of this relay that came from other relays, sent in order by one task.

Taking frames off the bus never waits on a peer: a slow peer cannot hold up the
others, nor make Redis buffer the relay's channel. The senders' credit windows bound
what waits here; a peer that lets more than ``limit`` bytes pile up has stopped
reading and is dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

from ..protocol.closes import Close
from .buses import Handle

log = logging.getLogger("xfer.relay.bus")


class Outbox:
    __slots__ = ("peer", "frames", "size", "limit", "wake", "task")

    def __init__(self, peer: Handle, limit: int) -> None:
        self.peer = peer
        self.frames: deque[str | bytes] = deque()
        self.size = 0
        self.limit = limit
        self.wake = asyncio.Event()
        self.task = asyncio.get_running_loop().create_task(self._run())

    def put(self, data: str | bytes) -> None:
        self.frames.append(data)
        self.size += len(data)
        self.wake.set()
        if self.size > self.limit:
            log.info("dropping a peer that stopped reading")
            self.frames.clear()
            self.peer.drop(Close.TOO_SLOW)

    async def _run(self) -> None:
        while not self.peer.dead:
            if not self.frames:
                self.wake.clear()
                await self.wake.wait()
                continue
            data = self.frames.popleft()
            self.size -= len(data)
            await self.peer.send(data)

    def cancel(self) -> None:
        self.task.cancel()
