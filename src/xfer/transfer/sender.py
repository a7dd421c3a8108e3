"""The sending peer: wait for a receiver, offer, stream chunks inside a credit window."""

from __future__ import annotations

import hashlib
import secrets
import stat as stat_mod
import time
from pathlib import Path
from typing import Any

import aiofiles

from ..errors import XferError, Declined, IntegrityFailure, LocalFileError, PeerGone, PeerProtocolError
from ..protocol import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_PAYLOAD,
    Accept,
    Ack,
    Cancel,
    Chunk,
    Done,
    Error,
    FileEnd,
    FileInfo,
    FileStart,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Reject,
    Text,
    Verified,
    chunk_header,
)
from ..protocol.messages import MAX_ID
from .base import WINDOW, Emit, PeerTask, SourceFile, peer_label
from .connection import RelayConnection
from ..units import human_size

RECEIVING_ROLES = ("receiver", "peer")


def peer_dict(info: PeerInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "role": info.role, "client": info.client}


class Sender(PeerTask):
    def __init__(
        self,
        conn: RelayConnection,
        files: list[SourceFile],
        emit: Emit,
        *,
        window: int = WINDOW,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
    ) -> None:
        super().__init__(conn, emit)
        if not 1 <= chunk_size <= MAX_CHUNK_PAYLOAD:
            raise ValueError(f"chunk_size must be from 1 to {MAX_CHUNK_PAYLOAD}")
        self.files = files
        self.window = max(window, chunk_size)
        self.chunk_size = chunk_size
        self.transfer = secrets.randbelow(MAX_ID) + 1
        self.receiver: PeerInfo | None = None
        self.answer: Accept | Reject | None = None
        self.sent = 0  # bytes of the transfer sent
        self.acked = 0  # bytes the receiver reported written
        self.verified: set[int] = set()
        # Offsets where each file starts in the transfer's byte stream, for progress.
        self._starts = []
        total = 0
        for f in files:
            self._starts.append(total)
            total += f.size
        self.total = total
        self._reported: tuple[int, int] = (-1, -1)

    # -- events from the relay -------------------------------------------------

    async def handle(self, item: Any) -> None:
        if isinstance(item, Chunk):
            return  # senders receive no chunks; ignore rather than buffer
        if isinstance(item, PeerJoined):
            self.emit("peer-joined", peer=peer_dict(item.peer))
            return
        if isinstance(item, PeerLeft):
            self._peer_left(item.peer_id)
            return
        if isinstance(item, Text):
            self.emit("text", text=item.text, **{"from": self._name_of(item.sender)})
            return
        if self.receiver is None or item.sender != self.receiver.id:
            return  # not from the peer we are sending to
        if getattr(item, "transfer", self.transfer) != self.transfer:
            return
        if isinstance(item, (Accept, Reject)):
            if self.answer is None:
                self.answer = item
        elif isinstance(item, Ack):
            if not self.acked <= item.bytes <= self.sent:
                self.fail(PeerProtocolError("the receiver acknowledged bytes that were never sent"))
                return
            self.acked = item.bytes
            self._progress()
        elif isinstance(item, Verified):
            self._verified(item)
        elif isinstance(item, Error):
            self.fail(_error_from_peer(item, self._file_name(item.index)))
        elif isinstance(item, Cancel):
            self.fail(PeerGone(f"the receiver cancelled: {item.reason or 'no reason given'}"))

    def _name_of(self, peer_id: int | None) -> str:
        info = self.conn.peers.get(peer_id or 0)
        return peer_label(info) if info else "a peer"

    def _file_name(self, index: int | None) -> str | None:
        return self.files[index].name if index is not None and index < len(self.files) else None

    def _peer_left(self, peer_id: int) -> None:
        gone = self.receiver if self.receiver and self.receiver.id == peer_id else None
        self.emit("peer-left", peer={"id": peer_id})
        if gone is not None and not isinstance(self.answer, Reject) and len(self.verified) < len(self.files):
            self.fail(PeerGone(self._left_message()))

    def _current(self) -> tuple[int, int]:
        """The first file not yet verified, and how much of it the receiver wrote."""
        index = next((i for i in range(len(self.files)) if i not in self.verified), len(self.files) - 1)
        return index, min(max(self.acked - self._starts[index], 0), self.files[index].size)

    def _left_message(self) -> str:
        if self.answer is None:
            return "the receiver left before answering the offer"
        index, done = self._current()
        f = self.files[index]
        return (
            f"the receiver left during {f.name} ({human_size(done)} of {human_size(f.size)}). "
            "Run the same command again to start over."
        )

    def _progress(self) -> None:
        index, done = self._current()
        if (self.acked, index) == self._reported:
            return
        self._reported = (self.acked, index)
        f = self.files[index]
        self.emit("progress", index=index, name=f.name, bytes=done, size=f.size,
                  total_bytes=self.acked, total_size=self.total)

    def _verified(self, item: Verified) -> None:
        index = item.index
        if index >= len(self.files) or index in self.verified:
            return
        expected = self._hashes.get(index)
        if expected is None or item.sha256 != expected:
            self.fail(IntegrityFailure(f"the receiver verified {self.files[index].name} against the wrong hash"))
            return
        self.verified.add(index)
        f = self.files[index]
        self.emit("file-end", index=index, name=f.name, size=f.size, sha256=expected)

    # -- the transfer ------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        self._hashes: dict[int, str] = {}
        if not any(p.role in RECEIVING_ROLES for p in self.conn.peers.values()):
            self.emit("waiting", reason="receiver")
        await self.until(lambda: any(p.role in RECEIVING_ROLES for p in self.conn.peers.values()))
        self.receiver = next(p for p in self.conn.peers.values() if p.role in RECEIVING_ROLES)
        offer = Offer(
            to=self.receiver.id,
            transfer=self.transfer,
            files=tuple(FileInfo(name=f.name, size=f.size, mtime=f.mtime) for f in self.files),
            window=self.window,
        )
        await self.conn.send(offer)
        self.emit("offer", transfer=self.transfer, to=peer_dict(self.receiver), total=self.total,
                  files=[{"index": i, "name": f.name, "size": f.size} for i, f in enumerate(self.files)])
        await self.until(lambda: self.answer is not None)
        if isinstance(self.answer, Reject):
            raise _declined(self.answer)
        self.emit("accepted", peer=peer_dict(self.receiver))
        started = time.monotonic()
        for index, f in enumerate(self.files):
            await self._send_file(index, f)
        await self.until(lambda: len(self.verified) == len(self.files))
        try:
            await self.conn.send(Done(to=self.receiver.id, transfer=self.transfer))
        except XferError:
            pass  # every file is verified; a receiver that already left loses nothing
        seconds = time.monotonic() - started
        summary = {"files": len(self.files), "bytes": self.total, "seconds": round(seconds, 3),
                   "peer": peer_dict(self.receiver)}
        self.emit("done", **summary)
        return summary

    async def _send_file(self, index: int, f: SourceFile) -> None:
        assert self.receiver is not None
        to = self.receiver.id
        await self.conn.send(FileStart(to=to, transfer=self.transfer, index=index, offset=0))
        self.emit("file-start", index=index, name=f.name, size=f.size)
        digest = hashlib.sha256()
        offset = 0
        try:
            async with aiofiles.open(f.path, "rb") as source:
                while offset < f.size:
                    n = min(self.chunk_size, f.size - offset)
                    await self.until(lambda: self.sent - self.acked + n <= self.window)
                    data = await source.read(n)
                    if len(data) != n:
                        raise LocalFileError(f"{f.name} changed while it was being sent (it got shorter)")
                    digest.update(data)
                    header = chunk_header(self.conn.peer_id, to, self.transfer, index, offset)
                    await self.conn.send_frame(header + data)
                    offset += n
                    self.sent += n
        except OSError as exc:
            await self._cancel(f"cannot read {f.name}")
            raise LocalFileError(f"cannot read {f.path}: {exc.strerror or exc}") from exc
        except LocalFileError as exc:
            await self._cancel(str(exc))
            raise
        sha = digest.hexdigest()
        self._hashes[index] = sha
        await self.conn.send(FileEnd(to=to, transfer=self.transfer, index=index, size=f.size, sha256=sha))

    async def _cancel(self, reason: str) -> None:
        if self.receiver is not None:
            try:
                await self.conn.send(Cancel(to=self.receiver.id, transfer=self.transfer, reason=reason[:200]))
            except Exception:
                pass


def _declined(reject: Reject) -> Exception:
    if reject.code == "no-space":
        return LocalFileError(f"the receiver has no room for this: {reject.reason}", "no-space")
    reason = f": {reject.reason}" if reject.reason else ""
    return Declined(f"the receiver declined the offer{reason}")


def _error_from_peer(error: Error, name: str | None) -> Exception:
    what = f" ({name})" if name else ""
    if error.code == "hash-mismatch":
        return IntegrityFailure(f"the receiver found a SHA-256 mismatch{what}; nothing was saved under its name")
    if error.code in ("no-space", "disk-full", "permission-denied", "io-error"):
        return LocalFileError(f"the receiver could not write{what}: {error.message}", error.code)
    return PeerProtocolError(f"the receiver stopped{what}: {error.message or error.code}", error.code)


def check_sources(paths: list[Path]) -> list[SourceFile]:
    """Stat every path up front, so that a missing file fails before a room opens."""
    files = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise LocalFileError(f"{path}: no such file") from None
        except PermissionError:
            raise LocalFileError(f"{path}: permission denied", "permission-denied") from None
        except OSError as exc:
            raise LocalFileError(f"{path}: {exc.strerror or exc}") from None
        if stat_mod.S_ISDIR(st.st_mode):
            raise LocalFileError(f"{path} is a folder; sending folders comes in a later version", "is-folder")
        if not stat_mod.S_ISREG(st.st_mode):
            raise LocalFileError(f"{path} is not a regular file")
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            code = "permission-denied" if isinstance(exc, PermissionError) else "local-file"
            raise LocalFileError(f"{path}: {exc.strerror or exc}", code) from None
        files.append(SourceFile(path=path, name=path.name, size=st.st_size, mtime=st.st_mtime))
    if not files:
        raise LocalFileError("nothing to send")
    return files
