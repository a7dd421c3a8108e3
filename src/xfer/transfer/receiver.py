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
import os
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import memory
from ..errors import Declined, IntegrityFailure, LocalFileError, PeerGone, RelayGone, XferError
from ..errors import Interrupted as Stopped
from ..protocol import LIMITS, Limits, Message, Offer, RemoteProtocolError
from ..protocol.machine import Output, Send
from ..protocol.messages import Error
from ..protocol.receiver import ReceiverMachine, ReceiverState
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
    OtherSender,
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
from .base import Emit, PeerTask, RoundBroken, peer_dict, peer_label
from .link import Link
from .tree import Placement

Decide = Callable[[dict[str, Any]], Awaitable[bool]]


class Receiver(PeerTask):
    other = "sender"

    def __init__(
        self,
        conn: Link,
        folder: Path,
        emit: Emit,
        decide: Decide,
        *,
        decide_other: Decide | None = None,
        overwrite: bool = False,
        resume: bool = True,
        stdout: bool = False,
        texts_end: bool = False,
        dotfiles: bool = False,
        ack_every: int | None = None,
        limits: Limits = LIMITS,
        **options: Any,
    ) -> None:
        super().__init__(conn, emit, **options)
        self.folder = folder
        self.decide = decide
        self.decide_other = decide_other  # None: a different sender is refused without asking
        self.overwrite = overwrite
        self.resume = resume and not stdout
        self.sink_fd = 1 if stdout else None  # --stdout: the one file goes to standard output
        # Entries named with a leading dot at any depth (.bashrc, .ssh/authorized_keys) run code
        # or grant access when they land in a home folder: taken only when the person agreed to
        # them by name (the question lists them all) or with --allow-dotfiles, else refused
        self.dotfiles = dotfiles or stdout
        self.space_margin = limits.space_margin
        self.max_folders = limits.max_offer_folders
        self.inode_margin = limits.inode_margin
        self.done_wait = limits.done_wait
        self.completed_at = 0.0  # when the machine last said every file is verified
        self.machine = ReceiverMachine(
            replace(limits, ack_every=ack_every) if ack_every else limits,
            rewindable=not stdout,
            ask_other=decide_other is not None,
        )
        self.placement: Placement | None = None
        self.slots: list[store.Slot] = []
        self.fds: dict[int, int] = {}  # index -> the open partial (or the sink) of a file being written
        self.saved: dict[int, dict[str, Any]] = {}  # index -> its "file-end" event: what the summary lists
        self.started = 0.0
        self.left = "the transfer"  # where the last interruption broke off
        self.away_since: float | None = None  # when the sender (or our link) went away mid-transfer
        self._decision: asyncio.Task[None] | None = None
        self.texts_end = texts_end  # we joined the room: its owner's texts, then its leaving, end the run
        self.texts: dict[int | None, str] = {}  # who sent us texts before any offer: id -> name
        self.text_count = 0
        self.texted_and_left = False  # a peer sent texts and left, no offer under way: the end
        self._other: asyncio.Task[None] | None = None  # the person asked about a different sender
        self.began_with: dict[str, Any] = {}  # the sender of the offer taken, as it was then

    # -- from the link: the machine decides, this carries it out -------------------------

    async def handle(self, item: Any) -> None:
        try:
            outputs = self.machine.receive(item)
        except RemoteProtocolError as exc:
            await self._carry(self.machine.fail(exc))
            raise
        await self._carry(outputs)
        if self.away_since is not None and not self.machine.away:
            self.away_since = None  # the sender is back while the person still decides

    def on_disconnect(self) -> None:
        self._left_after_text(None)  # a text's sender with a relay of its own takes it with it
        for output in self.machine.link_lost():
            self._react(output)
        if self.machine.complete:
            self._gone_before_done()

    def _gone_before_done(self) -> None:
        """Every file is here, and the sender (or our link) went before its ``done``."""
        if self.away_since is None:
            self.away_since = asyncio.get_running_loop().time()
        self._notify()

    def _left_after_text(self, peer_id: int | None) -> None:
        """A peer that sent texts and no offer went (``None``: the relay went): it finished."""
        if self.texts and self.machine.offer is None and (peer_id is None or peer_id in self.texts):
            self.texted_and_left = True
            self._notify()

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
            elif isinstance(output, OtherSender):
                self._on_other_sender(output)
            else:
                self._react(output)

    async def _send(self, message: Message) -> None:
        if isinstance(message, Error):  # the sender may be gone already: that must not hide why we stopped
            await self.send_quietly(message)
        else:  # accept, ack, verified: a send that finds the link gone reconnects, like a receive
            await self.send_or_reconnect(message)

    def _react(self, output: Output) -> None:
        """The outputs that need no waiting: events, and closing or removing a partial."""
        machine = self.machine
        if isinstance(output, PeerArrived):
            self.emit("peer-joined", peer=peer_dict(output.peer))
        elif isinstance(output, PeerDeparted):
            self.emit("peer-left", peer={"id": output.peer_id})
            self._left_after_text(output.peer_id)
            if machine.complete and output.peer_id == machine.sender:
                self._gone_before_done()
        elif isinstance(output, TextReceived):
            if machine.offer is None and self.texts_end:
                self.texts[output.sender] = self._name_of(output.sender)
                self.text_count += 1
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
            self.completed_at = asyncio.get_running_loop().time()
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
        hidden = [slot.name for slot in self.slots if store.hidden(slot.parts)]
        self.began_with = self._peer(offer.sender)
        details = {
            "transfer": offer.transfer,
            "from": self.began_with,
            "files": files,
            "total": offer.total,
            "hidden": hidden,
        }
        self.emit("offer", **details)
        if self.sink_fd is not None and (len(self.slots) != 1 or self.slots[0].info.kind == "dir"):
            reason = "the receiver writes to standard output: one file or stream only"
            await self._refuse(reason, "one-file-only")
            self.fail(LocalFileError(f"--stdout takes one file or stream; this offer has {len(self.slots)} entries"))
            return
        if self.sink_fd is None and store.folders_of(self.slots, past=self.max_folders) > self.max_folders:
            await self._refuse(f"more than {self.max_folders} folders", "too-many-folders")
            self.fail(
                LocalFileError(
                    f"the offer would make more than {self.max_folders} folders; nothing was saved",
                    "too-many-folders",
                )
            )
            return
        if hidden and not self.dotfiles:
            await self._refuse("the receiver takes no hidden entries (names starting with a dot)", "hidden-entries")
            names = ", ".join(hidden[:5]) + (f" and {len(hidden) - 5} more" if len(hidden) > 5 else "")
            self.fail(
                Declined(
                    f"the offer holds {len(hidden)} hidden entr{'y' if len(hidden) == 1 else 'ies'} ({names}); "
                    "nothing was saved. To take them too, run again with --allow-dotfiles",
                    "hidden-entries",
                )
            )
            return
        self._decision = asyncio.create_task(self._answer(offer, details))

    def _on_other_sender(self, event: OtherSender) -> None:
        """Someone other than the sender we began with offers the same files: the person
        sees it, and is asked when it can be (never under ``--yes``)."""
        offer = event.offer
        details = {
            "transfer": offer.transfer,
            "from": self._peer(offer.sender),
            "began_with": self.began_with,
            "asking": event.asking,
            "files": [{"index": i, "name": slot.name, "size": slot.info.size} for i, slot in enumerate(self.slots)],
            "total": offer.total,
        }
        self.emit("other-sender", **details)
        if event.asking and self.decide_other is not None:
            self._other = asyncio.create_task(self._answer_other(offer, details))

    async def _answer_other(self, offer: Offer, details: dict[str, Any]) -> None:
        assert self.decide_other is not None
        try:
            yes = await self.decide_other(details)
        except XferError:
            yes = False
        if yes:
            self.began_with = details["from"]
        try:
            await self._carry(self.machine.switch(offer) if yes else self.machine.refuse_other(offer))
        except XferError as exc:
            self.fail(exc)
        self._notify()

    def _peer(self, peer_id: int | None) -> dict[str, Any]:
        info = self.conn.peers.get(peer_id or 0)
        return peer_dict(info) if info else {"id": peer_id}

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
        verified = {i: e["sha256"] for i, e in self.saved.items() if "sha256" in e}
        points, placed, notes = await asyncio.to_thread(store.inspect_offer, self.slots, verified, resume=self.resume)
        for note in notes:
            self.emit("resume-discarded", message=note)
        held = sum(p.offset for p in points.values())
        free = shutil.disk_usage(self.folder).free
        needed = offer.total - held
        inodes = store.free_inodes(self.folder)
        entries = len(self.slots) + store.folders_of(self.slots, past=self.max_folders)
        if needed + self.space_margin > free:
            short = f"needs {human_size(needed)}, {human_size(free)} free"
        elif inodes is not None and entries + self.inode_margin > inodes:
            short = f"needs {entries} new files and folders, room for {max(inodes - self.inode_margin, 0)}"
        else:
            short = ""
        if short:
            await self._refuse(short, "no-space")
            self.fail(LocalFileError(f"not enough space in {self.folder}: offer {short}", "no-space"))
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

    # -- files ---------------------------------------------------------------------------

    async def _open(self, action: OpenPartial) -> None:
        slot = self.slots[action.index]
        memory.for_size(slot.info.size)
        try:
            if self.sink_fd is not None:
                fd, digest = self.sink_fd, None
            else:
                assert self.placement is not None
                fd, digest = await asyncio.to_thread(store.open_partial, slot, action.offset, self.placement)
        except OSError as exc:
            raise await self._write_failed(exc, slot.name) from exc
        self.fds[action.index] = fd
        if digest is not None:
            await self._carry(self.machine.opened(action.index, digest))

    async def _write(self, action: Write) -> None:
        slot = self.slots[action.index]
        if slot.info.size is None and self.sink_fd is None:  # a stream: no space check could come first
            free = shutil.disk_usage(self.folder).free
            if free - len(action.data) < self.space_margin:
                error = LocalFileError(
                    f"stopped receiving {slot.name}: {self.folder} is down to {human_size(free)} free, and xfer "
                    f"leaves {human_size(self.space_margin)}; nothing was kept (a stream cannot resume)",
                    "disk-full",
                )
                await self._carry(self.machine.fail(error))
                raise error
        try:
            # In this thread: a trip to a worker thread per chunk cost more CPU (two context
            # switches) than the ~0.8 ms that writing a 1020 KiB chunk blocks the loop.
            store.write_all(self.fds[action.index], action.data)
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
            assert self.placement is not None
            final = await asyncio.to_thread(store.place, slot, action.sha256, self.placement)
        except OSError as exc:
            raise await self._write_failed(exc, slot.name) from exc
        await self._carry(self.machine.placed(action.index, str(final)))

    async def _write_failed(self, exc: OSError, name: str) -> XferError:
        error = store.write_error(exc, name, self.folder)
        await self._carry(self.machine.fail(error))
        return error

    # -- the transfer --------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        def gone() -> BaseException:
            if self.quit_with_relay:  # the room went with it: the same command cannot come back to it
                return PeerGone(
                    f"the sender's xfer has quit during {self.left}, and the relay in it. What arrived is kept: "
                    "receive from it again (a new code) to resume."
                )
            if not self._up:  # our own link is down: the relay is what stayed away (as for the sender, exit 3)
                return RelayGone(
                    f"could not reach the relay again within {self.reconnect_for:.0f} s, during {self.left}. "
                    "What arrived is kept: run the same command again to resume."
                )
            return PeerGone(
                f"the sender left during {self.left} and did not come back. Run the same command again to resume."
            )

        def complete() -> bool:
            return self.machine.complete or self.texted_and_left

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
            if isinstance(exc, asyncio.CancelledError) and self.machine.state is ReceiverState.DECIDING:
                # Ctrl-C at "Accept?": a decline, which the sender hears at once (not a receiver gone)
                try:
                    await asyncio.wait_for(self._refuse("declined (Ctrl-C)", "declined"), 2)
                except (Exception, asyncio.TimeoutError):
                    pass
                raise Stopped("you declined the offer (Ctrl-C); the sender was told") from None
            if not self.resume or isinstance(exc, RemoteProtocolError):  # nothing kept from a peer that broke the rules
                self._discard_partials()
            else:  # a stream cannot resume: what it wrote would stay for ever
                self._discard_partials(streams_only=True)
            raise
        finally:
            for task in (self._decision, self._other):
                if task is not None and not task.done():
                    task.cancel()
        for slot in self.slots:  # a finished offer leaves no state behind
            store.discard(slot)
        store.set_folder_times(
            [
                (self.saved[i]["path"], slot.info.mtime)
                for i, slot in enumerate(self.slots)
                if slot.info.kind == "dir" and i in self.saved
            ]
        )
        seconds = time.monotonic() - self.started
        if self.machine.complete:
            await self._linger()
        saved = [self.saved[i] for i in sorted(self.saved)]
        files = [e for e in saved if e.get("kind") != "dir"]
        summary: dict[str, Any] = {
            "files": len(files),
            "bytes": sum(e["size"] for e in files),
            "seconds": round(seconds, 3),
            "folder": str(self.folder),
            "saved": saved,
        }
        if self.texted_and_left:  # the sender sent what it had to say and left: the normal end
            summary["seconds"] = 0.0
            summary["texts"] = self.text_count
            summary["from"] = next(iter(self.texts.values()))
        self.emit("done", **summary)
        return summary

    async def _linger(self) -> None:
        """Every file is here and verified, in place: wait (bounded) for the sender's ``done``.

        The sender's link may drop just as our last ``verified`` travels, and that message is
        lost with it. Then the sender comes back and offers the same files, and a round of
        file-starts and file-ends, nothing written, tells it again (docs/protocol.md). We wait
        ``done_wait`` for the ``done``, or up to ``peer_timeout`` while the sender is away; what
        happens meanwhile cannot undo the files, so this never fails the receive.
        """
        loop = asyncio.get_running_loop()

        def moment() -> tuple[bool, ReceiverState]:
            return self.away_since is not None, self.machine.state

        told = False
        while not self.machine.sender_done and not self.quit_with_relay:
            if self.away_since is not None:
                if not told:
                    self.emit("waiting", reason="sender-confirm", seconds=round(self.peer_timeout))
                    told = True
                deadline = self.away_since + self.peer_timeout
            elif self.machine.state is ReceiverState.DONE:
                deadline = self.completed_at + self.done_wait
            else:  # the sender is back, and its round goes on
                deadline = loop.time() + self.peer_timeout
            before = moment()
            try:
                await self.until(
                    lambda: self.machine.sender_done or moment() != before,  # noqa: B023 (awaited here)
                    breakable=False,
                    deadline=deadline,
                )
            except (asyncio.TimeoutError, XferError):  # XferError: the relay stayed away, or the round broke a rule
                return

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

    def _discard_partials(self, *, streams_only: bool = False) -> None:
        """Remove partials (all, or only those of streams, which cannot resume). When nothing is
        kept for a resume, the state of each file already saved goes too: it only served one."""
        if self.sink_fd is not None:
            return
        for index, slot in enumerate(self.slots):
            if index in self.saved:
                if not streams_only:
                    store.discard(slot)  # its partial is its final name now: only the state is removed
            elif slot.info.size is None or not streams_only:
                store.discard(slot)


__all__ = ["Receiver", "RoundBroken"]
