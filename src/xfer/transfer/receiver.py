"""The receiving peer: take one offer, write each file to a hidden partial file,
verify its SHA-256, and only then give it its final name.

A thin asyncio shell around ``protocol.receiver.ReceiverMachine``, which makes every
protocol decision (chunk order, sizes, hashes, acks, resume offsets); here are the
files (partial files, fsync, final names, state files through ``store``), the person's
answer (``decide``) and the UI's events.

What is written survives interruptions: when the sender leaves or the relay
connection drops, the partial file and its state stay (see ``store``) and the
receiver waits for the sender to come back; the next offer of the same files is
answered with resume points, not from zero.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import Declined, IntegrityFailure, LocalFileError, PeerGone, XferError
from ..protocol import LIMITS, Limits, Message, Offer, RemoteProtocolError, ResumePoint
from ..protocol.machine import Output, Send
from ..protocol.messages import Error
from ..protocol.receiver import Digest, ReceiverMachine, ReceiverState
from ..protocol.receiver_outputs import (
    Accepted,
    Close,
    Completed,
    Discard,
    Failed,
    FileStarted,
    FileVerified,
    FolderMade,
    HashMismatch,
    Interrupted,
    OfferReceived,
    OfferRenewed,
    OpenPartial,
    PeerArrived,
    PeerDeparted,
    Place,
    Progress,
    TextReceived,
    Unresumable,
    Write,
)
from ..units import human_size
from . import store
from .base import Emit, PeerTask, RoundBroken, peer_label
from .link import Link
from .names import finalize
from .sender import peer_dict
from .tree import Placement

Decide = Callable[[dict[str, Any]], Awaitable[bool]]


class Receiver(PeerTask):
    def __init__(
        self,
        conn: Link,
        folder: Path,
        emit: Emit,
        decide: Decide,
        *,
        overwrite: bool = False,
        resume: bool = True,
        stdout: bool = False,
        ack_every: int | None = None,
        limits: Limits = LIMITS,
        **options: Any,
    ) -> None:
        super().__init__(conn, emit, **options)  # type: ignore[arg-type]  # base.py types the link as RelayConnection
        self.folder = folder
        self.decide = decide
        self.overwrite = overwrite
        self.resume = resume and not stdout
        self.sink_fd = 1 if stdout else None  # --stdout: the one file goes to standard output
        self.space_margin = limits.space_margin
        self.machine = ReceiverMachine(
            replace(limits, ack_every=ack_every) if ack_every else limits, rewindable=not stdout
        )
        self.placement: Placement | None = None
        self.slots: list[store.Slot] = []
        self.fds: dict[int, int] = {}  # index -> the open partial (or the sink) of a file being written
        self.saved: dict[int, dict[str, Any]] = {}  # index -> its "file-end" event: what the summary lists
        self.started = 0.0
        self.left = "the transfer"  # where the last interruption broke off
        self.away_since: float | None = None  # when the sender (or our link) went away mid-transfer
        self._decision: asyncio.Task[None] | None = None

    # -- from the link: the machine decides, this carries it out -------------------------

    async def handle(self, item: Any) -> None:
        try:
            outputs = self.machine.receive(item)
        except RemoteProtocolError as exc:
            await self._carry(self.machine.fail(exc))
            raise
        await self._carry(outputs)

    def on_disconnect(self) -> None:
        for output in self.machine.link_lost():
            self._react(output)

    async def _carry(self, outputs: list[Output]) -> None:
        """Do what the machine asks, in order (an action may feed the machine more)."""
        for output in outputs:
            if isinstance(output, Send):
                await self._send(output.message)
            elif isinstance(output, OpenPartial):
                await self._open(output)
            elif isinstance(output, Write):
                await self._write(output)
            elif isinstance(output, Place):
                await self._place(output)
            elif isinstance(output, OfferReceived):
                await self._on_offer(output)
            elif isinstance(output, OfferRenewed):
                await self._accept(output.offer)
            else:
                self._react(output)

    async def _send(self, message: Message) -> None:
        if isinstance(message, Error):  # the sender may be gone already: that must not hide why we stopped
            await self.send_quietly(message)
        else:
            await self.conn.send(message)

    def _react(self, output: Output) -> None:
        """The outputs that need no waiting: events, and closing or removing a partial."""
        machine = self.machine
        if isinstance(output, PeerArrived):
            self.emit("peer-joined", peer=peer_dict(output.peer))
        elif isinstance(output, PeerDeparted):
            self.emit("peer-left", peer={"id": output.peer_id})
        elif isinstance(output, TextReceived):
            self.emit("text", text=output.text, **{"from": self._name_of(output.sender)})
        elif isinstance(output, Accepted):
            self.away_since = None
            self.emit("accepted", peer={"id": machine.sender}, resumed=output.resumed)
        elif isinstance(output, FolderMade):
            entry = {"index": output.index, "name": output.name, "size": 0, "kind": "dir", "path": output.path}
            self.saved[output.index] = entry
            self.emit("file-end", **entry)
        elif isinstance(output, FileStarted):
            self.emit("file-start", index=output.index, name=output.name, size=output.size, offset=output.offset)
        elif isinstance(output, Progress):
            self.emit(
                "progress",
                index=output.index,
                name=output.name,
                bytes=output.bytes,
                size=output.size,
                total_bytes=output.total_bytes,
                total_size=output.total_size,
            )
        elif isinstance(output, FileVerified):
            name = output.name if self.sink_fd is not None else self._relative(output.path)
            entry = {"index": output.index, "name": name, "size": output.size, "sha256": output.sha256}
            self.saved[output.index] = {**entry, "path": output.path}
            self.emit("file-end", **self.saved[output.index])
        elif isinstance(output, Close):
            self._close(output.index)
        elif isinstance(output, Discard):
            self._close(output.index)
            if self.sink_fd is None:
                store.discard(self.slots[output.index])
        elif isinstance(output, Interrupted):
            self._interrupted(output)
        elif isinstance(output, Unresumable):
            self.fail(
                PeerGone(
                    f"the transfer of {output.name} broke off ({human_size(output.received)} written); "
                    "a stream cannot resume: run the pipeline again"
                )
            )
        elif isinstance(output, HashMismatch):
            if self.sink_fd is not None:
                raise IntegrityFailure(
                    f"what was written to standard output ({output.name}) did not match its SHA-256; do not trust it"
                )
            raise IntegrityFailure(
                f"{output.name} arrived damaged (SHA-256 mismatch); it was not saved. Ask the sender to try again."
            )
        elif isinstance(output, Failed):
            if isinstance(output.error, PeerGone):  # the sender cancelled: nothing is kept
                self._discard_partials()
            self.fail(output.error)
        elif isinstance(output, Completed):
            self._notify()

    def _name_of(self, peer_id: int | None) -> str:
        info = self.conn.peers.get(peer_id or 0)
        return peer_label(info) if info else "a peer"

    def _relative(self, path: str) -> str:
        return os.path.relpath(path, self.folder).replace(os.sep, "/")

    def _interrupted(self, event: Interrupted) -> None:
        """The sender left or our link dropped: keep what is written, wait for a new round."""
        if event.name is None:
            self.left = "the transfer"
        elif event.size is None:
            self.left = f"{event.name} ({human_size(event.received)})"
        else:
            self.left = f"{event.name} ({human_size(event.received)} of {human_size(event.size)})"
        self.emit("interrupted", reason=event.reason, at=self.left)
        if self.away_since is None:
            self.away_since = asyncio.get_running_loop().time()
        self._notify()

    # -- offers ------------------------------------------------------------------------

    async def _on_offer(self, event: OfferReceived) -> None:
        offer = event.offer
        self.slots = [store.slot_for(self.folder, f, list(parts)) for f, parts in zip(offer.files, event.parts)]
        files = [
            {"index": i, "name": slot.name, "size": slot.info.size, "kind": slot.info.kind}
            for i, slot in enumerate(self.slots)
        ]
        sender = self.conn.peers.get(offer.sender or 0)
        details = {
            "transfer": offer.transfer,
            "from": peer_dict(sender) if sender else {"id": offer.sender},
            "files": files,
            "total": offer.total,
        }
        self.emit("offer", **details)
        if self.sink_fd is not None and (len(self.slots) != 1 or self.slots[0].info.kind == "dir"):
            reason = "the receiver writes to standard output: one file or stream only"
            await self._refuse(reason, "one-file-only")
            self.fail(LocalFileError(f"--stdout takes one file or stream; this offer has {len(self.slots)} entries"))
            return
        self._decision = asyncio.create_task(self._answer(offer, details))

    async def _refuse(self, reason: str, code: str) -> None:
        await self._carry(self.machine.reject(reason, code))

    async def _answer(self, offer: Offer, details: dict[str, Any]) -> None:
        try:
            yes = await self.decide(details)
        except BaseException as exc:
            self.fail(exc if isinstance(exc, XferError) else Declined("the offer was not accepted"))
            return
        if self.machine.state is not ReceiverState.DECIDING:
            return  # the sender stopped meanwhile
        try:
            if yes:
                self.started = time.monotonic()
                await self._accept(self.machine.offer or offer)
            else:
                await self._refuse("declined", "declined")
                self.fail(Declined("you declined the offer"))
        except XferError as exc:
            self.fail(exc)
        self._notify()

    async def _accept(self, offer: Offer) -> None:
        """Accept with resume points for what we already hold (after checking the space)."""
        points, placed, notes = await asyncio.to_thread(self._inspect)
        for note in notes:
            self.emit("resume-discarded", message=note)
        held = sum(p.offset for p in points.values())
        free = shutil.disk_usage(self.folder).free
        needed = offer.total - held
        if needed + self.space_margin > free:
            await self._refuse(f"needs {human_size(needed)}, {human_size(free)} free", "no-space")
            self.fail(
                LocalFileError(
                    f"not enough space in {self.folder}: offer needs {human_size(needed)}, {human_size(free)} free",
                    "no-space",
                )
            )
            return
        try:
            folders = await asyncio.to_thread(self._make_folders)
        except OSError as exc:
            raise await self._write_failed(exc, "a folder") from exc
        await self._carry(self.machine.accept(points, placed=placed, folders=folders))

    def _make_folders(self) -> dict[int, str]:
        """Create the offer's folders (an empty one has no other way to arrive)."""
        if self.sink_fd is not None:
            return {}
        if self.placement is None:
            reuse = dict(filter(None, (slot.recorded_top() for slot in self.slots))) if self.resume else {}
            self.placement = Placement(self.folder, overwrite=self.overwrite, reuse=reuse)
        return {
            index: str(self.placement.folder_for(slot.parts))
            for index, slot in enumerate(self.slots)
            if slot.info.kind == "dir" and index not in self.saved
        }

    def _inspect(self) -> tuple[dict[int, ResumePoint], dict[int, str], list[str]]:
        """What we hold of each file (resume points), which files an earlier run placed, and notes."""
        points: dict[int, ResumePoint] = {}
        placed: dict[int, str] = {}
        notes = []
        for index, slot in enumerate(self.slots):
            if index in self.saved:
                if slot.info.kind == "file" and not slot.info.stream:
                    points[index] = ResumePoint(
                        index=index, offset=slot.info.size or 0, sha256=self.saved[index]["sha256"]
                    )
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
                done = store.done_path(slot) if point.offset == slot.info.size else None
                if done is not None:
                    placed[index] = str(done)
        return points, placed, notes

    # -- files ---------------------------------------------------------------------------

    async def _open(self, action: OpenPartial) -> None:
        slot = self.slots[action.index]
        try:
            if self.sink_fd is not None:
                fd, digest = self.sink_fd, None
            else:
                fd, digest = await asyncio.to_thread(self._open_partial, slot, action.offset)
        except OSError as exc:
            raise await self._write_failed(exc, slot.name) from exc
        self.fds[action.index] = fd
        if digest is not None:
            await self._carry(self.machine.opened(action.index, digest))

    def _open_partial(self, slot: store.Slot, offset: int) -> tuple[int, Digest | None]:
        """Open the partial file at ``offset`` (never through a symlink), and hash what precedes it."""
        assert self.placement is not None
        dest = self.placement.folder_for(slot.parts[:-1])
        store.write_state(slot, dest=self._relative(str(dest)))
        flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(slot.partial, flags, 0o644)
        try:
            os.ftruncate(fd, offset)
            digest = store.prefix_digest(slot.partial, offset) if offset else None
            os.lseek(fd, offset, os.SEEK_SET)
        except BaseException:
            os.close(fd)
            raise
        return fd, digest

    async def _write(self, action: Write) -> None:
        try:
            # In this thread: a trip to a worker thread per chunk cost more CPU (two context
            # switches) than the ~0.2 ms that writing 256 KiB blocks the loop.
            _write_all(self.fds[action.index], action.data)
        except OSError as exc:
            raise await self._write_failed(exc, self.slots[action.index].name) from exc
        await self._carry(self.machine.wrote(action.index, len(action.data)))

    async def _place(self, action: Place) -> None:
        fd = self.fds.pop(action.index)
        slot = self.slots[action.index]
        if fd == self.sink_fd:
            await self._carry(self.machine.placed(action.index, "-"))
            return
        try:
            await asyncio.to_thread(os.fsync, fd)
        except OSError as exc:
            raise await self._write_failed(exc, slot.name) from exc
        finally:
            os.close(fd)
        try:
            final = await asyncio.to_thread(self._finalize, slot, action.sha256)
        except OSError as exc:
            raise await self._write_failed(exc, slot.name) from exc
        await self._carry(self.machine.placed(action.index, str(final)))

    def _finalize(self, slot: store.Slot, sha: str) -> Path:
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

    async def _write_failed(self, exc: OSError, name: str) -> XferError:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            code, message = "disk-full", f"the disk is full; could not write {name} in {self.folder}"
        elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            code, message = "permission-denied", f"permission denied writing {name} in {self.folder}"
        else:
            code, message = "io-error", f"could not write {name} in {self.folder}: {exc.strerror or exc}"
        error = LocalFileError(message, code)
        await self._carry(self.machine.fail(error))
        return error

    # -- the transfer --------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        def gone() -> BaseException:
            return PeerGone(
                f"the sender left during {self.left} and did not come back. Run the same command again to resume."
            )

        def complete() -> bool:
            return self.machine.complete

        try:
            if self.machine.offer is None:
                self.emit("waiting", reason="offer")
            while not complete():
                if self.away_since is None:
                    await self.until(lambda: complete() or self.away_since is not None, breakable=False)
                else:  # the sender is away: wait for it, but not for ever
                    await self.until(
                        lambda: complete() or self.away_since is None,
                        breakable=False,
                        deadline=self.away_since + self.peer_timeout,
                        timeout_error=gone,
                    )
        except BaseException as exc:
            self._close_all()
            if not self.resume or isinstance(exc, RemoteProtocolError):  # nothing kept from a peer that broke the rules
                self._discard_partials()
            raise
        finally:
            if self._decision is not None and not self._decision.done():
                self._decision.cancel()
        for slot in self.slots:  # a finished offer leaves no state behind
            store.discard(slot)
        self._set_folder_times()
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

    def _close(self, index: int) -> None:
        fd = self.fds.pop(index, None)
        if fd is not None and fd != self.sink_fd:
            try:
                os.close(fd)
            except OSError:
                pass

    def _close_all(self) -> None:
        for index in list(self.fds):
            self._close(index)

    def _discard_partials(self) -> None:
        for index, slot in enumerate(self.slots):
            if index not in self.saved:
                store.discard(slot)


def _write_all(fd: int, data: memoryview) -> None:
    """Write a whole chunk."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


__all__ = ["Receiver", "RoundBroken"]
