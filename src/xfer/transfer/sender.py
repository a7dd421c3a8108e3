"""The sending peer's shell: drives a ``SenderMachine`` over a link.

Every protocol decision (rounds, receivers, answers, resume points, the credit window,
acks, verified hashes, what ends the run) is the machine's (``protocol/sender.py``).
This shell does what the machine cannot: it reads files in blocks and standard input,
keeps to ``--limit-rate``, hashes the prefixes that receivers say they hold, sends on
the link, keeps time, and turns the machine's events into the UI's events (their names
and fields are the CLI's and docs/cli.md's).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import memory
from ..errors import LocalFileError, RelayGone, XferError
from ..protocol import DEFAULT_CHUNK_SIZE, LIMITS, MAX_CHUNK_PAYLOAD, FileInfo, PeerInfo, chunk_header
from ..protocol.frames import Chunk
from ..protocol.machine import Event, Output, Send, SendChunk
from ..protocol.messages import MAX_ID, Cancel, Done, Message
from ..protocol.sender import SenderMachine
from ..protocol.sender_events import (
    Accepted,
    CheckPrefix,
    Completed,
    Failed,
    FileStarted,
    FileVerified,
    Interrupted,
    OfferSent,
    PeerArrived,
    PeerDeparted,
    PeerFileVerified,
    Progress,
    Read,
    ReceiverDeclined,
    ReceiverFailed,
    ResumeMismatch,
    RunningHash,
    TextReceived,
    TurnedAway,
    Waiting,
    Warning,
)
from ..units import human_size
from .base import PeerTask, SourceFile, peer_dict, peer_label
from .link import Link
from .secure import SecureLink
from .sources import check_sources


class Sender(PeerTask):
    other = "receiver"

    def __init__(
        self,
        conn: Link,
        files: list[SourceFile],
        emit: Callable[..., None],
        *,
        window: int = LIMITS.window,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        rate: int | None = None,
        receivers: int = 1,
        exclude: set[int] | None = None,
        keep_open: bool = False,
        transfer: int | None = None,
        **options: Any,
    ) -> None:
        """``transfer``: the id of a stopped run this one goes on from (else a new one)."""
        super().__init__(conn, emit, **options)
        if not 1 <= chunk_size <= MAX_CHUNK_PAYLOAD:
            raise ValueError(f"chunk_size must be from 1 to {MAX_CHUNK_PAYLOAD}")
        self.rate = rate  # bytes per second at most, or None
        self.files = files
        self.window = max(window, chunk_size)
        self.chunk_size = chunk_size
        limits = dataclasses.replace(
            LIMITS,
            window=self.window,
            chunk_size=chunk_size,
            peer_timeout=self.peer_timeout,
            reconnect_for=self.reconnect_for,
        )
        offered = tuple(FileInfo(name=f.name, size=f.size, mtime=f.mtime, kind=f.kind) for f in files)
        self.machine = SenderMachine(
            offered,
            transfer=transfer or secrets.randbelow(MAX_ID) + 1,
            peer_id=conn.peer_id,
            peers=conn.peers,
            receivers=receivers,
            exclude=exclude or (),
            turn_away=not keep_open,  # --keep-open serves a newcomer next; else the room is closed to it
            limits=limits,
            size_text=human_size,
        )
        self.transfer = self.machine.transfer
        self.started = 0.0  # when the first receiver accepted
        self._todo: deque[tuple[int, Output]] = deque()  # the machine's outputs, each with its epoch
        self._source: _Source | None = None  # the file being read
        self._paced_from = 0.0

    # -- what callers read -------------------------------------------------------

    @property
    def sent(self) -> int:
        """Bytes sent in the last round."""
        return self.machine.sent

    @property
    def chosen(self) -> dict[int, PeerInfo]:
        """The receivers offered to in the last round."""
        return self.machine.chosen

    @property
    def total(self) -> int:
        return self.machine.total

    # -- inputs to the machine ------------------------------------------------------

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _queue(self, outputs: list[Output]) -> None:
        epoch = self.machine.epoch
        self._todo.extend((epoch, output) for output in outputs)

    async def handle(self, item: Any) -> None:
        self._queue(self.machine.receive(item, self._now()))

    def on_disconnect(self) -> None:
        self._queue(self.machine.link_lost(self._now()))

    def on_reconnect(self) -> None:
        self._queue(self.machine.link_back(self.conn.peer_id, self.conn.peers, self._now()))

    # -- the run -----------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        try:
            self._queue(self.machine.start(self._now()))
            served = await self._drive()
        finally:
            await self._close_source()
        summary = {
            "files": sum(1 for f in self.files if f.kind == "file"),
            "bytes": self.machine.total,
            "seconds": round(time.monotonic() - self.started, 3),
            "peer": peer_dict(served[0]),
            "peers": [peer_dict(p) for p in served],
        }
        self.emit("done", **summary)
        return summary

    async def _drive(self) -> tuple[PeerInfo, ...]:
        """Do what the machine asks, in order, until it completes or fails."""
        while True:
            if self._failure is not None:  # the reader's (the relay stayed away, or broke the protocol)
                raise self._failure
            if not self._todo:
                try:
                    await self.until(lambda: bool(self._todo), deadline=self.machine.deadline(), breakable=False)
                except asyncio.TimeoutError:
                    self._queue(self.machine.tick(self._now()))
                continue
            epoch, output = self._todo.popleft()
            if isinstance(output, Completed):
                return output.peers
            if isinstance(output, Failed):
                raise output.error
            if isinstance(output, Event):
                self._show(output)
            elif epoch == self.machine.epoch:  # else asked by a round that has broken since
                await self._act(output)

    async def _act(self, action: Output) -> None:
        if isinstance(action, SendChunk):
            c = action.chunk
            if isinstance(self.conn, SecureLink):  # sealed straight into its frame
                await self._send(self.conn.send_chunk, c)
            else:
                await self._send(
                    self.conn.send_frame, chunk_header(c.sender, c.to, c.transfer, c.index, c.offset) + c.payload
                )
        elif isinstance(action, Send):
            if isinstance(action.message, (Done, Cancel)):
                await self.send_quietly(action.message)  # the receiver may be gone, and that is fine
            else:
                await self._send(self.conn.send, action.message)
        elif isinstance(action, Read):
            await self._read(action)
        elif isinstance(action, CheckPrefix):
            await self._check_prefix(action)

    async def _send(self, send: Callable[[Any], Awaitable[None]], what: bytes | Message | Chunk) -> None:
        conn = self.conn
        try:
            await send(what)
        except RelayGone:
            if self.reconnect is None:
                raise  # no reconnecting: the end
            if conn is self.conn:  # not a send on a link already replaced: the reader will reconnect
                self._queue(self.machine.link_lost(self._now()))
                await self.drop_link(conn)

    async def _read(self, read: Read) -> None:
        f = self.files[read.index]
        if self._source is None:
            memory.for_size(f.size)
        try:
            if f.stream:
                data: bytes | memoryview = await asyncio.to_thread(_read_some, read.n)
            else:
                data = await self._read_file(f, read)
        except OSError as exc:
            where = "standard input" if f.stream else str(f.path)
            error = LocalFileError(f"cannot read {where}: {exc.strerror or exc}")
            self._queue(self.machine.read_failed(read, error))
            return
        if self.rate:
            await self._pace(len(data))
        self._queue(self.machine.data_read(read, data, self._now()))

    async def _read_file(self, f: SourceFile, read: Read) -> memoryview:
        source = self._source
        if source is None or (source.index, source.offset) != (read.index, read.offset):
            await self._close_source()
            assert f.path is not None
            handle = open(f.path, "rb", buffering=0)  # noqa: SIM115 -- closed in _close_source
            try:
                handle.seek(read.offset)
            except OSError:
                handle.close()
                raise
            source = self._source = _Source(read.index, read.offset, handle, _Blocks(handle))
        data = source.blocks(read.n)
        source.offset += len(data)
        return data

    async def _close_source(self) -> None:
        if self._source is not None:
            source, self._source = self._source, None
            source.handle.close()

    async def _check_prefix(self, check: CheckPrefix) -> None:
        """Hash what a receiver says it holds of our file, to resume from there."""
        path = self.files[check.index].path
        digest: RunningHash | None
        try:
            digest = await asyncio.to_thread(_prefix_digest, path, check.offset) if path else None
        except OSError:
            digest = None
        self._queue(self.machine.prefix_checked(check, digest, self._now()))

    async def _pace(self, n: int) -> None:
        """Keep to ``rate`` bytes a second (--limit-rate), measured from the round's start."""
        assert self.rate
        loop = asyncio.get_running_loop()
        if self.machine.sent == 0:
            self._paced_from = loop.time()
        ahead = (self.machine.sent + n) / self.rate - (loop.time() - self._paced_from)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def cancel(self, reason: str = "the sender stopped") -> None:
        """Tell the receiver we are giving up (so it removes what it holds of this offer)."""
        for action in self.machine.cancel(reason):
            if isinstance(action, Send):
                await self.send_quietly(action.message)

    # -- events up to the UI ---------------------------------------------------------

    def _show(self, event: Event) -> None:
        emit = self.emit
        if isinstance(event, Progress):
            extra = {"peers": {str(p): acked for p, acked in event.peers.items()}} if event.peers is not None else {}
            emit(
                "progress",
                index=event.index,
                name=event.name,
                bytes=event.bytes,
                size=event.size,
                total_bytes=event.total_bytes,
                total_size=event.total_size,
                **extra,
            )
        elif isinstance(event, PeerArrived):
            emit("peer-joined", peer=peer_dict(event.peer))
        elif isinstance(event, PeerDeparted):
            emit("peer-left", peer={"id": event.peer_id})
        elif isinstance(event, TextReceived):
            emit("text", text=event.text, **{"from": peer_label(event.sender) if event.sender else "a peer"})
        elif isinstance(event, Waiting):
            fields: dict[str, Any] = {"receivers": event.receivers, "seconds": event.seconds}
            if event.reason == "receiver" and self.machine.take > 1:  # --receivers N: how many it waits for
                fields["receivers"] = self.machine.take
            emit("waiting", reason=event.reason, **{k: v for k, v in fields.items() if v is not None})
        elif isinstance(event, OfferSent):
            emit(
                "offer",
                transfer=event.transfer,
                to=peer_dict(event.peers[0]),
                total=event.total,
                peers=[peer_dict(p) for p in event.peers],
                files=[{"index": i, "name": f.name, "size": f.size, "kind": f.kind} for i, f in enumerate(self.files)],
            )
        elif isinstance(event, ReceiverDeclined):
            emit("declined", peer=peer_dict(event.peer), reason=event.reason)
        elif isinstance(event, ResumeMismatch):
            emit("resume-mismatch", index=event.index, name=event.name)
        elif isinstance(event, Accepted):
            if not self.started:
                self.started = time.monotonic()
            emit("accepted", peer=peer_dict(event.peer), resumed=event.resumed)
        elif isinstance(event, FileStarted):
            emit("file-start", index=event.index, name=event.name, size=event.size, offset=event.offset)
        elif isinstance(event, PeerFileVerified):
            emit("peer-file-end", peer={"id": event.peer_id}, index=event.index, name=event.name)
        elif isinstance(event, FileVerified):
            emit("file-end", index=event.index, name=event.name, size=event.size, sha256=event.sha256)
        elif isinstance(event, ReceiverFailed):
            peer = peer_dict(event.peer) if event.peer else {"id": event.peer_id}
            emit("receiver-failed", peer=peer, reason=event.reason)
        elif isinstance(event, Interrupted):
            emit("interrupted", reason=event.reason, at=event.at)
        elif isinstance(event, TurnedAway):
            emit("turned-away", peer=peer_dict(event.peer))
        elif isinstance(event, Warning):
            emit("warning", message=event.message)


@dataclass
class _Source:
    """The file being read, and where the next read starts."""

    index: int
    offset: int
    handle: io.FileIO
    blocks: _Blocks


class _Blocks:
    """Reads a file in blocks of several chunks and hands them out chunk by chunk, as views,
    without copying.

    Reads happen on the event loop's thread, into two buffers used in turn: a read of a block
    from the page cache takes about as long as a trip to a worker thread would cost (issue
    17 measured the thread trip per block at 0.6 CPU s per GB), and two buffers mean no new
    memory per block. A view handed out stays valid until the block after next is read;
    the shell seals or sends each chunk before it asks for the next read."""

    def __init__(self, handle: io.FileIO, block: int = 1 << 20) -> None:
        self.handle, self.block = handle, block
        self.buffers = [bytearray(block), bytearray(block)]
        self.turn = 0
        self.view = memoryview(b"")

    def __call__(self, n: int) -> memoryview:
        if len(self.view) < n:
            rest = len(self.view)
            size = max(self.block, n)
            if len(self.buffers[self.turn]) < size:
                self.buffers[self.turn] = bytearray(size)
            buffer = memoryview(self.buffers[self.turn])
            self.turn ^= 1
            buffer[:rest] = self.view  # what is left of the last block (from the other buffer)
            end = rest
            while end < size:
                got = self.handle.readinto(buffer[end:size])
                if not got:
                    break  # the end of the file
                end += got
            self.view = buffer[:end]
        piece, self.view = self.view[:n], self.view[n:]
        return piece


def _read_some(n: int) -> bytes:
    """Up to ``n`` bytes of standard input, as soon as any are there ("" at its end)."""
    chunks, left = [], n
    while left > 0:
        data = os.read(0, left)
        if not data:
            break
        chunks.append(data)
        left -= len(data)
        if len(data) < 65536:
            break  # a slow pipe: send what came rather than wait for a full chunk
    return b"".join(chunks)


def _prefix_digest(path: Path, length: int) -> RunningHash:
    from .store import prefix_digest

    digest: RunningHash = prefix_digest(path, length)
    return digest


__all__ = ["Sender", "check_sources", "peer_dict", "XferError"]
