"""The receiving peer: take one offer, write each file to a hidden partial file,
verify its SHA-256, and only then give it its final name."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiofiles

from ..errors import Declined, IntegrityFailure, LocalFileError, PeerGone, PeerProtocolError, XferError
from ..protocol import (
    Accept,
    Ack,
    Cancel,
    Chunk,
    Done,
    Error,
    FileEnd,
    FileStart,
    Offer,
    PeerJoined,
    PeerLeft,
    Reject,
    Text,
    Verified,
)
from ..units import human_size
from .base import ACK_EVERY, Emit, PeerTask, peer_label
from .connection import RelayConnection
from .names import finalize, partial_path, safe_name
from .sender import peer_dict

Decide = Callable[[dict[str, Any]], Awaitable[bool]]
SPACE_MARGIN = 16 * 1024 * 1024  # keep some free space for the rest of the system


class _Incoming:
    """The file being written now."""

    def __init__(self, index: int, name: str, size: int, mtime: float | None, path: Path, handle: Any) -> None:
        self.index, self.name, self.size, self.mtime = index, name, size, mtime
        self.path, self.handle = path, handle
        self.written = 0
        self.digest = hashlib.sha256()


class Receiver(PeerTask):
    def __init__(
        self,
        conn: RelayConnection,
        folder: Path,
        emit: Emit,
        decide: Decide,
        *,
        overwrite: bool = False,
        ack_every: int = ACK_EVERY,
    ) -> None:
        super().__init__(conn, emit)
        self.folder = folder
        self.decide = decide
        self.overwrite = overwrite
        self.ack_every = ack_every
        self.offer: Offer | None = None
        self.names: list[str] = []
        self.accepted = False
        self.current: _Incoming | None = None
        self.next_index = 0
        self.total_written = 0
        self.last_ack = 0
        self.saved: list[dict[str, Any]] = []
        self.started = 0.0
        self._decision: asyncio.Task[None] | None = None

    # -- events from the relay ---------------------------------------------------

    async def handle(self, item: Any) -> None:
        try:
            await self._dispatch(item)
        except PeerProtocolError as exc:
            if self.offer is not None:
                await self._send_error(exc.code, str(exc))
            raise

    async def _dispatch(self, item: Any) -> None:
        if isinstance(item, PeerJoined):
            self.emit("peer-joined", peer=peer_dict(item.peer))
        elif isinstance(item, PeerLeft):
            self.emit("peer-left", peer={"id": item.peer_id})
            if self.offer is not None and item.peer_id == self.offer.sender and not self._complete():
                self.fail(PeerGone(self._left_message()))
        elif isinstance(item, Text):
            self.emit("text", text=item.text, **{"from": self._name_of(item.sender)})
        elif isinstance(item, Offer):
            await self._on_offer(item)
        elif self.offer is None or item.sender != self.offer.sender:
            return  # only the peer whose offer we took may drive the transfer
        elif isinstance(item, Chunk):
            await self._on_chunk(item)
        elif getattr(item, "transfer", None) != self.offer.transfer:
            return
        elif isinstance(item, FileStart):
            await self._on_file_start(item)
        elif isinstance(item, FileEnd):
            await self._on_file_end(item)
        elif isinstance(item, Cancel):
            self.fail(PeerGone(f"the sender cancelled: {item.reason or 'no reason given'}"))
        elif isinstance(item, Error):
            self.fail(PeerProtocolError(f"the sender stopped: {item.message or item.code}", item.code))
        elif isinstance(item, Done):
            pass

    def _name_of(self, peer_id: int | None) -> str:
        info = self.conn.peers.get(peer_id or 0)
        return peer_label(info) if info else "a peer"

    def _complete(self) -> bool:
        return self.offer is not None and len(self.saved) == len(self.offer.files)

    def _left_message(self) -> str:
        if not self.accepted:
            return "the sender left before the transfer started"
        cur = self.current
        if cur is None:
            return "the sender left during the transfer. Run the same command again to start over."
        return (
            f"the sender left during {cur.name} ({human_size(cur.written)} of {human_size(cur.size)}). "
            "Run the same command again to start over."
        )

    async def _on_offer(self, offer: Offer) -> None:
        if self.offer is not None:
            await self.conn.send(Reject(to=offer.sender, transfer=offer.transfer, code="busy",
                                        reason="this receiver is busy with another offer"))
            return
        self.offer = offer
        if offer.window is not None:  # ack often enough that the sender's window never runs dry
            self.ack_every = max(1, min(self.ack_every, offer.window // 4))
        self.names = [safe_name(f.name) for f in offer.files]
        files = [{"index": i, "name": n, "size": f.size} for i, (n, f) in enumerate(zip(self.names, offer.files))]
        sender = self.conn.peers.get(offer.sender or 0)
        event = {"transfer": offer.transfer, "from": peer_dict(sender) if sender else {"id": offer.sender},
                 "files": files, "total": offer.total}
        self.emit("offer", **event)
        free = shutil.disk_usage(self.folder).free
        if offer.total + SPACE_MARGIN > free:
            message = (f"not enough space in {self.folder}: offer needs {human_size(offer.total)}, "
                       f"{human_size(free)} free")
            await self.conn.send(Reject(to=offer.sender, transfer=offer.transfer, code="no-space",
                                        reason=f"needs {human_size(offer.total)}, {human_size(free)} free"))
            self.fail(LocalFileError(message, "no-space"))
            return
        self._decision = asyncio.create_task(self._answer(offer, event))

    async def _answer(self, offer: Offer, event: dict[str, Any]) -> None:
        try:
            yes = await self.decide(event)
        except BaseException as exc:
            self.fail(exc if isinstance(exc, XferError) else Declined("the offer was not accepted"))
            return
        if yes:
            self.accepted = True
            self.started = time.monotonic()
            await self.conn.send(Accept(to=offer.sender, transfer=offer.transfer))
            self.emit("accepted", peer={"id": offer.sender})
        else:
            await self.conn.send(Reject(to=offer.sender, transfer=offer.transfer, reason="declined"))
            self.fail(Declined("you declined the offer"))
        self._notify()

    async def _on_file_start(self, msg: FileStart) -> None:
        assert self.offer is not None
        if not self.accepted or self.current is not None or msg.index != self.next_index or msg.offset != 0:
            raise self._broken("file-start out of order")
        info = self.offer.files[msg.index] if msg.index < len(self.offer.files) else None
        if info is None:
            raise self._broken("file-start for a file that was not offered")
        name = self.names[msg.index]
        path = partial_path(self.folder, name, self.offer.transfer, msg.index)
        try:
            handle = await aiofiles.open(path, "xb")  # O_EXCL: never through a symlink, never over a file
        except OSError as exc:
            raise await self._write_failed(exc, name) from exc
        self.current = _Incoming(msg.index, name, info.size, info.mtime, path, handle)
        self.emit("file-start", index=msg.index, name=name, size=info.size)

    async def _on_chunk(self, chunk: Chunk) -> None:
        cur = self.current
        assert self.offer is not None
        if (cur is None or chunk.transfer != self.offer.transfer or chunk.index != cur.index
                or chunk.offset != cur.written):
            raise self._broken("a chunk arrived out of order or for an unknown file")
        n = len(chunk.payload)
        if cur.written + n > cur.size:
            raise self._broken(f"the sender sent more bytes of {cur.name} than it offered")
        try:
            await cur.handle.write(chunk.payload)
        except OSError as exc:
            raise await self._write_failed(exc, cur.name) from exc
        cur.digest.update(chunk.payload)
        cur.written += n
        self.total_written += n
        if self.total_written - self.last_ack >= self.ack_every:
            await self._ack(cur)

    async def _ack(self, cur: _Incoming) -> None:
        """Tell the sender how much is written (its credit), and the UI how far we are."""
        assert self.offer is not None
        self.last_ack = self.total_written
        await self.conn.send(Ack(to=self.offer.sender, transfer=self.offer.transfer, bytes=self.total_written))
        self.emit("progress", index=cur.index, name=cur.name, bytes=cur.written, size=cur.size,
                  total_bytes=self.total_written, total_size=self.offer.total)

    async def _on_file_end(self, msg: FileEnd) -> None:
        cur, offer = self.current, self.offer
        assert offer is not None
        if cur is None or msg.index != cur.index:
            raise self._broken("file-end for a file that is not being sent")
        if msg.size != cur.size or cur.written != cur.size:
            raise self._broken(f"{cur.name} ended at {cur.written} bytes, but {cur.size} were offered")
        try:
            await cur.handle.flush()
            await asyncio.to_thread(os.fsync, cur.handle.fileno())
            await cur.handle.close()
        except OSError as exc:
            raise await self._write_failed(exc, cur.name) from exc
        sha = cur.digest.hexdigest()
        if sha != msg.sha256:
            await self._send_error("hash-mismatch", f"SHA-256 of {cur.name} did not match", cur.index)
            raise IntegrityFailure(
                f"{cur.name} arrived damaged (SHA-256 mismatch); it was not saved. Ask the sender to try again."
            )
        if cur.mtime is not None:
            try:
                os.utime(cur.path, (cur.mtime, cur.mtime))
            except (OSError, ValueError, OverflowError):
                pass  # a modification time is nice to keep, not worth failing for
        try:
            final = await asyncio.to_thread(finalize, cur.path, self.folder, cur.name, overwrite=self.overwrite)
        except OSError as exc:
            raise await self._write_failed(exc, cur.name) from exc
        self.current = None
        self.next_index += 1
        await self._ack(cur)
        await self.conn.send(Verified(to=offer.sender, transfer=offer.transfer, index=msg.index, sha256=sha))
        entry = {"index": msg.index, "name": final.name, "size": cur.size, "sha256": sha, "path": str(final)}
        self.saved.append(entry)
        self.emit("file-end", **entry)

    def _broken(self, why: str) -> XferError:
        return PeerProtocolError(f"the sender broke the protocol: {why}")

    async def _send_error(self, code: str, message: str, index: int | None = None) -> None:
        assert self.offer is not None
        try:
            await self.conn.send(Error(to=self.offer.sender, code=code, message=message[:200],
                                       transfer=self.offer.transfer, index=index))
        except XferError:
            pass

    async def _write_failed(self, exc: OSError, name: str) -> XferError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            code, message = "disk-full", f"the disk is full; could not write {name} in {self.folder}"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            code, message = "permission-denied", f"permission denied writing {name} in {self.folder}"
        else:
            code, message = "io-error", f"could not write {name} in {self.folder}: {exc.strerror or exc}"
        await self._send_error(code, message)
        return LocalFileError(message, code)

    # -- the transfer --------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        try:
            if self.offer is None:
                self.emit("waiting", reason="offer")
            await self.until(self._complete)
        finally:
            await self._cleanup()
        assert self.offer is not None
        seconds = time.monotonic() - self.started
        summary = {"files": len(self.saved), "bytes": self.offer.total, "seconds": round(seconds, 3),
                   "folder": str(self.folder), "saved": self.saved}
        self.emit("done", **summary)
        return summary

    async def _cleanup(self) -> None:
        if self._decision is not None and not self._decision.done():
            self._decision.cancel()
        cur, self.current = self.current, None
        if cur is not None:
            try:
                await cur.handle.close()
            except OSError:
                pass
            try:
                cur.path.unlink()
            except OSError:
                pass
