"""A ``Link`` whose traffic between peers is sealed: the asyncio shell of
``protocol.guard.Guard`` around a link to the relay (docs/protocol.md).

Sender and receiver drive it as any link; they see only peers that proved the code
(their ``peer-joined`` comes when the handshake is done) and only messages and chunks
that opened. Every sealed message of a direction uses the next counter of its channel,
so sealing and sending happen under one lock: two sends can never pass each other.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

from ..protocol import Chunk, Message, PeerInfo, PeerJoined
from ..protocol.frames import MAX_CHUNK_PAYLOAD, parse_chunk
from ..protocol.guard import Deliver, Guard, Impostor, PeerRefused, PeerTrusted
from ..protocol.machine import Output, Send
from .link import Link

Emit = Callable[..., None]
Admit = Callable[[PeerInfo], Awaitable[None]]  # raises to refuse a peer (``--verify``: the person said no)


class SecureLink:
    """Fits ``Link``: ``inner`` carries the frames, ``guard`` seals and opens them."""

    def __init__(self, inner: Link, guard: Guard, emit: Emit, admit: Admit | None = None) -> None:
        self.inner = inner
        self.guard = guard
        self.emit = emit
        self.admit = admit  # awaited before a trusted peer's peer-joined goes up
        self.peers: dict[int, PeerInfo] = guard.peers
        self._ready: deque[Message | Chunk] = deque()
        self._opened: bytearray | None = None  # where each chunk is opened: its payload lives until the next recv
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, inner: Link, guard: Guard, emit: Emit, admit: Admit | None = None) -> SecureLink:
        """Wrap a link that just joined its room: greet the counterparts already there."""
        link = cls(inner, guard, emit, admit)
        await link._do(guard.joined(list(inner.peers.values())))
        return link

    @property
    def peer_id(self) -> int:
        return self.inner.peer_id

    @property
    def room(self) -> str:
        return self.inner.room

    @property
    def lost(self) -> bool:
        return self.inner.lost

    @lost.setter
    def lost(self, value: bool) -> None:
        self.inner.lost = value

    async def send(self, message: Message) -> None:
        async with self._lock:
            outputs = self.guard.send(message)
            await self._act(outputs)

    async def send_frame(self, frame: bytes | bytearray) -> None:
        await self.send_chunk(parse_chunk(frame))

    async def send_chunk(self, chunk: Chunk) -> None:
        """A chunk's frames, sealed from its payload as read (no clear frame made first)."""
        for sealed in self.guard.seal_chunk(chunk):
            await self.inner.send_frame(sealed)

    async def recv(self) -> Message | Chunk:
        """The next message or chunk that opened; a chunk's payload is valid until the next ``recv``."""
        while not self._ready:
            item = await self.inner.recv()
            if isinstance(item, Chunk):  # (the chunk before it was handed out by the last recv: done with)
                if self._opened is None:
                    self._opened = bytearray(MAX_CHUNK_PAYLOAD)
                await self._do(self.guard.receive_chunk(item, self._opened))
            else:
                await self._do(self.guard.receive(item))
        item = self._ready.popleft()
        if self.admit is not None and isinstance(item, PeerJoined) and item.sender is None:
            await self.admit(item.peer)  # nothing moves to or from it before: the machine does not know it
        return item

    async def close(self) -> None:
        await self.inner.close()

    async def _do(self, outputs: list[Output]) -> None:
        async with self._lock:
            await self._act(outputs)

    async def _act(self, outputs: list[Output]) -> None:
        for out in outputs:
            if isinstance(out, Send):
                await self.inner.send(out.message)
            elif isinstance(out, Deliver):
                self._ready.append(out.item)
            elif isinstance(out, PeerTrusted):
                self.emit("secured", peer=out.peer.id, name=out.peer.name, verifier=out.verifier, page=out.link)
            elif isinstance(out, Impostor):
                self.emit("warning", message=out.warning)
            elif isinstance(out, PeerRefused):
                self.emit("wrong-code", peer=out.peer_id, attempts=out.wrong, limit=self.guard.limits.wrong_codes)
