"""The receiving peer: take one offer, write each file to a hidden partial file,
verify its SHA-256, and only then give it its final name.

What is written survives interruptions: when the sender leaves or the relay
connection drops, the partial file and its state stay (see ``store``) and the
receiver waits for the sender to come back; the next offer of the same files is
answered with resume points, not from zero.
"""

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
    ResumePoint,
    Text,
    Verified,
)
from ..units import human_size
from . import store
from .base import ACK_EVERY, PeerTask, RoundBroken, peer_label
from .names import finalize, safe_relpath
from .sender import peer_dict
from .tree import Placement

Decide = Callable[[dict[str, Any]], Awaitable[bool]]
SPACE_MARGIN = 16 * 1024 * 1024  # keep some free space for the rest of the system


class _Incoming:
    """The file being written now."""

    def __init__(self, index: int, slot: store.Slot, fd: int, offset: int, digest: Any) -> None:
        self.index, self.slot, self.fd = index, slot, fd
        self.name, self.size = slot.name, slot.info.size
        self.written = offset
        self.digest = digest


class Receiver(PeerTask):
    def __init__(
        self,
        conn,
        folder: Path,
        emit,
        decide: Decide,
        *,
        overwrite: bool = False,
        resume: bool = True,
        stdout: bool = False,
        ack_every: int = ACK_EVERY,
        **options: Any,
    ) -> None:
        super().__init__(conn, emit, **options)
        self.folder = folder
        self.decide = decide
        self.overwrite = overwrite
        self.resume = resume and not stdout
        self.sink_fd = 1 if stdout else None  # --stdout: the one file goes to standard output
        self.placement: Placement | None = None
        self.ack_every = ack_every
        self.offer: Offer | None = None  # the offer being received (the latest round of it)
        self.slots: list[store.Slot] = []
        self.accepted = False
        self.points: dict[int, ResumePoint] = {}  # what we said we hold, this round
        self.current: _Incoming | None = None
        self.next_index = 0
        self.round_bytes = 0  # bytes written this round (what acks count)
        self.last_ack = 0
        self.saved: dict[int, dict[str, Any]] = {}
        self._saved_bytes = 0  # of the files in saved (kept as a sum: progress runs on every ack)
        self.started = 0.0
        self.away_since: float | None = None  # when the sender (or our link) went away mid-transfer
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
                self._interrupted("sender-left")
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
            self._close_current()
            self._discard_partials()
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

    def _where(self) -> str:
        cur = self.current
        if cur is None:
            return "the transfer"
        if cur.size is None:
            return f"{cur.name} ({human_size(cur.written)})"
        return f"{cur.name} ({human_size(cur.written)} of {human_size(cur.size)})"

    def _interrupted(self, reason: str) -> None:
        """The sender left or our link dropped: keep what is written, wait for a new round."""
        self._left = self._where()
        cur = self.current
        if cur is not None and (cur.slot.info.stream or cur.fd == self.sink_fd):
            self._close_current()
            store.discard(cur.slot)
            self.fail(
                PeerGone(
                    f"the transfer of {cur.name} broke off ({human_size(cur.written)} written); "
                    "a stream cannot resume: run the pipeline again"
                )
            )
            return
        self.emit("interrupted", reason=reason, at=self._left)
        self._close_current()
        self.accepted = False
        if self.away_since is None:
            self.away_since = asyncio.get_running_loop().time()
        self._notify()

    def on_disconnect(self) -> None:
        if self.offer is not None and not self._complete():
            self._interrupted("relay-lost")

    # -- offers ------------------------------------------------------------------------

    def _same_files(self, offer: Offer) -> bool:
        return self.offer is not None and [store.file_key(f) for f in offer.files] == [
            store.file_key(f) for f in self.offer.files
        ]

    async def _on_offer(self, offer: Offer) -> None:
        if self.offer is not None and not self._complete():
            deciding = self._decision is not None and not self._decision.done()
            if not self._same_files(offer) or deciding:
                await self.conn.send(
                    Reject(
                        to=offer.sender,
                        transfer=offer.transfer,
                        code="busy",
                        reason="this receiver is busy with another offer",
                    )
                )
                return
            # The same files again: the sender is back (perhaps before we noticed it had gone).
            # Resume without asking; whatever the old connection still sends is ignored.
            if self.accepted and offer.sender != self.offer.sender:
                self._interrupted("sender-replaced")
            self.offer = offer
            await self._accept(offer)
            return
        if self.offer is not None:
            return  # finished; a new offer is for another receive
        self.offer = offer
        if offer.window is not None:  # ack often enough that the sender's window never runs dry
            self.ack_every = max(1, min(self.ack_every, offer.window // 4))
        self.slots = [store.slot_for(self.folder, f, safe_relpath(f.name)) for f in offer.files]
        files = [
            {"index": i, "name": slot.name, "size": slot.info.size, "kind": slot.info.kind}
            for i, slot in enumerate(self.slots)
        ]
        sender = self.conn.peers.get(offer.sender or 0)
        event = {
            "transfer": offer.transfer,
            "from": peer_dict(sender) if sender else {"id": offer.sender},
            "files": files,
            "total": offer.total,
        }
        self.emit("offer", **event)
        if self.sink_fd is not None and (len(self.slots) != 1 or self.slots[0].info.kind == "dir"):
            await self.conn.send(
                Reject(
                    to=offer.sender,
                    transfer=offer.transfer,
                    code="one-file-only",
                    reason="the receiver writes to standard output: one file or stream only",
                )
            )
            self.fail(LocalFileError(f"--stdout takes one file or stream; this offer has {len(self.slots)} entries"))
            return
        self._decision = asyncio.create_task(self._answer(offer, event))

    async def _answer(self, offer: Offer, event: dict[str, Any]) -> None:
        try:
            yes = await self.decide(event)
        except BaseException as exc:
            self.fail(exc if isinstance(exc, XferError) else Declined("the offer was not accepted"))
            return
        try:
            if yes:
                self.started = time.monotonic()
                await self._accept(self.offer or offer)
            else:
                await self.conn.send(Reject(to=offer.sender, transfer=offer.transfer, reason="declined"))
                self.fail(Declined("you declined the offer"))
        except XferError as exc:
            self.fail(exc)
        self._notify()

    async def _accept(self, offer: Offer) -> None:
        """Accept with resume points for what we already hold (after checking the space)."""
        points, notes = await asyncio.to_thread(self._inspect)
        for note in notes:
            self.emit("resume-discarded", message=note)
        held = sum(p.offset for p in points.values())
        free = shutil.disk_usage(self.folder).free
        needed = offer.total - held
        if needed + SPACE_MARGIN > free:
            await self.conn.send(
                Reject(
                    to=offer.sender,
                    transfer=offer.transfer,
                    code="no-space",
                    reason=f"needs {human_size(needed)}, {human_size(free)} free",
                )
            )
            self.fail(
                LocalFileError(
                    f"not enough space in {self.folder}: offer needs {human_size(needed)}, {human_size(free)} free",
                    "no-space",
                )
            )
            return
        try:
            await asyncio.to_thread(self._make_folders)
        except OSError as exc:
            raise await self._write_failed(exc, "a folder") from exc
        self.points = points
        self.accepted = True
        self.away_since = None
        self.next_index = 0
        self.round_bytes = self.last_ack = 0
        await self.conn.send(Accept(to=offer.sender, transfer=offer.transfer, resume=tuple(points.values())))
        self.emit("accepted", peer={"id": offer.sender}, resumed=held)

    def _make_folders(self) -> None:
        """Create the offer's folders (an empty one has no other way to arrive)."""
        if self.sink_fd is not None:
            return
        if self.placement is None:
            reuse = dict(filter(None, (slot.recorded_top() for slot in self.slots))) if self.resume else {}
            self.placement = Placement(self.folder, overwrite=self.overwrite, reuse=reuse)
        for index, slot in enumerate(self.slots):
            if slot.info.kind == "dir" and index not in self.saved:
                path = self.placement.folder_for(slot.parts)
                entry = {"index": index, "name": slot.name, "size": 0, "kind": "dir", "path": str(path)}
                self.saved[index] = entry
                self.emit("file-end", **entry)

    def _inspect(self) -> tuple[dict[int, ResumePoint], list[str]]:
        points: dict[int, ResumePoint] = {}
        notes = []
        for index, slot in enumerate(self.slots):
            if index in self.saved:
                if slot.info.kind == "file" and not slot.info.stream:
                    points[index] = ResumePoint(index=index, offset=slot.info.size, sha256=self.saved[index]["sha256"])
                continue
            if not self.resume:
                store.discard(slot)
                continue
            notes.extend(store.discard_stale(slot))
            point, note = store.inspect(slot, index)
            if note:
                notes.append(note)
            if point is not None:
                points[index] = point
        return points, notes

    # -- files ---------------------------------------------------------------------------

    async def _on_file_start(self, msg: FileStart) -> None:
        assert self.offer is not None
        if not self.accepted or self.current is not None or msg.index >= len(self.slots):
            raise self._broken("file-start out of order")
        point = self.points.get(msg.index)
        if msg.offset > (point.offset if point else 0):  # any offset up to what we hold (a fan-out takes the least)
            raise self._broken("file-start past what we hold")
        slot = self.slots[msg.index]
        if slot.info.kind == "dir":
            raise self._broken("file-start for a folder")
        held_whole = point is not None and point.offset == slot.info.size
        if held_whole and (msg.index in self.saved or store.done_path(slot) is not None):
            # Already here. A fan-out may still stream it (from what another receiver holds):
            # take those bytes without writing them, and check the hash at file-end.
            self.current = _Incoming(msg.index, slot, -1, msg.offset, None)
            self.emit("file-start", index=msg.index, name=slot.name, size=slot.info.size, offset=msg.offset)
            return
        try:
            if self.sink_fd is not None:
                fd, digest = self.sink_fd, hashlib.sha256()
            else:
                fd, digest = await asyncio.to_thread(self._open_partial, slot, msg.offset)
        except OSError as exc:
            raise await self._write_failed(exc, slot.name) from exc
        self.current = _Incoming(msg.index, slot, fd, msg.offset, digest)
        self.emit("file-start", index=msg.index, name=slot.name, size=slot.info.size, offset=msg.offset)

    def _open_partial(self, slot: store.Slot, offset: int):
        """Open the partial file at ``offset`` (never through a symlink), and hash what precedes it."""
        assert self.placement is not None
        dest = self.placement.folder_for(slot.parts[:-1])
        store.write_state(slot, dest=os.path.relpath(dest, self.folder).replace(os.sep, "/"))
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(slot.partial, flags, 0o644)
        try:
            os.ftruncate(fd, offset)
            digest = store.prefix_digest(slot.partial, offset) if offset else hashlib.sha256()
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd, digest

    async def _on_chunk(self, chunk: Chunk) -> None:
        cur = self.current
        assert self.offer is not None
        if (
            cur is None
            or chunk.transfer != self.offer.transfer
            or chunk.index != cur.index
            or chunk.offset != cur.written
        ):
            raise self._broken("a chunk arrived out of order or for an unknown file")
        n = len(chunk.payload)
        if cur.size is not None and cur.written + n > cur.size:
            raise self._broken(f"the sender sent more bytes of {cur.name} than it offered")
        if cur.fd >= 0:  # (a file we hold whole already is not written again)
            try:
                # In this thread: a trip to a worker thread per chunk cost more CPU (two
                # context switches) than the ~0.2 ms that writing and hashing 256 KiB block the loop.
                _write_and_hash(cur.fd, chunk.payload, cur.digest)
            except OSError as exc:
                raise await self._write_failed(exc, cur.name) from exc
        cur.written += n
        self.round_bytes += n
        if self.round_bytes - self.last_ack >= self.ack_every:
            await self._ack(cur)

    async def _ack(self, cur: _Incoming) -> None:
        """Tell the sender how much is written (its credit), and the UI how far we are."""
        assert self.offer is not None
        self.last_ack = self.round_bytes
        await self.conn.send(Ack(to=self.offer.sender, transfer=self.offer.transfer, bytes=self.round_bytes))
        held = self._saved_bytes + (cur.written if cur.index not in self.saved else 0)
        self.emit(
            "progress",
            index=cur.index,
            name=cur.name,
            bytes=cur.written,
            size=cur.size,
            total_bytes=min(held, self.offer.total),
            total_size=self.offer.total,
        )

    async def _on_file_end(self, msg: FileEnd) -> None:
        cur, offer = self.current, self.offer
        assert offer is not None
        if cur is None or msg.index != cur.index:
            raise self._broken("file-end for a file that is not being sent")
        if (cur.size is not None and msg.size != cur.size) or cur.written != msg.size:
            offered = "a stream" if cur.size is None else f"{cur.size} bytes"
            raise self._broken(
                f"{cur.name} ended at {cur.written} bytes ({msg.size} claimed), but {offered} were offered"
            )
        cur.size = msg.size
        if cur.fd < 0:  # we had it whole already
            entry = self.saved.get(msg.index) or self._already_saved(cur, msg.sha256)
        else:
            entry = await self._verify_and_place(cur, msg.sha256)
        self.current = None
        self.next_index += 1
        await self._ack(cur)
        await self.conn.send(
            Verified(to=offer.sender, transfer=offer.transfer, index=msg.index, sha256=entry["sha256"])
        )
        if msg.index not in self.saved:
            self.saved[msg.index] = entry
            self._saved_bytes += entry["size"]
            self.emit("file-end", **entry)

    def _already_saved(self, cur: _Incoming, sha: str) -> dict[str, Any]:
        point = self.points[cur.index]
        path = store.done_path(cur.slot)
        if point.sha256 != sha or path is None:
            raise self._broken(f"{cur.name} was already here with another hash")
        name = os.path.relpath(path, self.folder).replace(os.sep, "/")
        return {"index": cur.index, "name": name, "size": cur.size, "sha256": sha, "path": str(path)}

    async def _verify_and_place(self, cur: _Incoming, expected: str) -> dict[str, Any]:
        fd, cur.fd = cur.fd, -1
        if fd == self.sink_fd:
            sha = cur.digest.hexdigest()
            if sha != expected:
                await self._send_error("hash-mismatch", f"SHA-256 of {cur.name} did not match", cur.index)
                raise IntegrityFailure(
                    f"what was written to standard output ({cur.name}) did not match its SHA-256; do not trust it"
                )
            return {"index": cur.index, "name": cur.name, "size": cur.size, "sha256": sha, "path": "-"}
        try:
            await asyncio.to_thread(os.fsync, fd)
        except OSError as exc:
            raise await self._write_failed(exc, cur.name) from exc
        finally:
            os.close(fd)
        sha = cur.digest.hexdigest()
        if sha != expected:
            store.discard(cur.slot)
            await self._send_error("hash-mismatch", f"SHA-256 of {cur.name} did not match", cur.index)
            raise IntegrityFailure(
                f"{cur.name} arrived damaged (SHA-256 mismatch); it was not saved. Ask the sender to try again."
            )
        try:
            final = await asyncio.to_thread(self._place, cur.slot, sha)
        except OSError as exc:
            raise await self._write_failed(exc, cur.name) from exc
        name = os.path.relpath(final, self.folder).replace(os.sep, "/")
        return {"index": cur.index, "name": name, "size": cur.size, "sha256": sha, "path": str(final)}

    def _place(self, slot: store.Slot, sha: str) -> Path:
        """Give a verified partial file its time and final name, and note where it went
        (one trip to a worker thread: this runs once per file, and folders can hold thousands)."""
        mtime = slot.info.mtime
        if mtime is not None:
            try:
                os.utime(slot.partial, (mtime, mtime))
            except (OSError, ValueError, OverflowError):
                pass  # a modification time is nice to keep, not worth failing for
        assert self.placement is not None
        dest = self.placement.folder_for(slot.parts[:-1])
        final = finalize(slot.partial, dest, slot.parts[-1], overwrite=self.overwrite)
        store.write_state(slot, done={"path": str(final), "sha256": sha})
        return final

    def _broken(self, why: str) -> XferError:
        return PeerProtocolError(f"the sender broke the protocol: {why}")

    async def _send_error(self, code: str, message: str, index: int | None = None) -> None:
        assert self.offer is not None
        await self.send_quietly(
            Error(to=self.offer.sender, code=code, message=message[:200], transfer=self.offer.transfer, index=index)
        )

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
        def gone() -> BaseException:
            where = getattr(self, "_left", "the transfer")
            return PeerGone(
                f"the sender left during {where} and did not come back. Run the same command again to resume."
            )

        try:
            if self.offer is None:
                self.emit("waiting", reason="offer")
            while not self._complete():
                if self.away_since is None:
                    await self.until(lambda: self._complete() or self.away_since is not None, breakable=False)
                else:  # the sender is away: wait for it, but not for ever
                    await self.until(
                        lambda: self._complete() or self.away_since is None,
                        breakable=False,
                        deadline=self.away_since + self.peer_timeout,
                        timeout_error=gone,
                    )
        except BaseException as exc:
            self._close_current()
            if not self.resume or isinstance(exc, PeerProtocolError):  # nothing kept from a peer that broke the rules
                self._discard_partials()
            raise
        finally:
            if self._decision is not None and not self._decision.done():
                self._decision.cancel()
        for slot in self.slots:  # a finished offer leaves no state behind
            store.discard(slot)
        self._set_folder_times()
        assert self.offer is not None
        seconds = time.monotonic() - self.started
        saved = [self.saved[i] for i in sorted(self.saved)]
        files = [e for e in saved if e.get("kind") != "dir"]
        summary = {
            "files": len(files),
            "bytes": sum(e["size"] for e in files),
            "seconds": round(seconds, 3),
            "folder": str(self.folder),
            "saved": saved,
        }
        self.emit("done", **summary)
        return summary

    def _set_folder_times(self) -> None:
        """Folders get their modification times last (writing into them changed them), deepest first."""
        folders = [
            (self.saved[i]["path"], slot.info.mtime)
            for i, slot in enumerate(self.slots)
            if slot.info.kind == "dir" and slot.info.mtime is not None and i in self.saved
        ]
        for path, mtime in sorted(folders, key=lambda item: -item[0].count(os.sep)):
            try:
                os.utime(path, (mtime, mtime), follow_symlinks=False)
            except (OSError, ValueError, OverflowError, NotImplementedError):
                pass

    def _close_current(self) -> None:
        cur, self.current = self.current, None
        if cur is not None and cur.fd >= 0 and cur.fd != self.sink_fd:
            try:
                os.close(cur.fd)
            except OSError:
                pass

    def _discard_partials(self) -> None:
        for index, slot in enumerate(self.slots):
            if index not in self.saved:
                store.discard(slot)


def _write_and_hash(fd: int, data: memoryview, digest: Any) -> None:
    """Write a whole chunk and hash it."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
    digest.update(data)


__all__ = ["Receiver", "RoundBroken"]
