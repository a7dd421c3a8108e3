"""The download bridge: files sent to a browser page leave the relay as plain HTTP
downloads, so that the phone's own downloader saves them and no page ever holds
a whole file in memory.

How it goes (docs/page.md has the picture):

1. A sender's ``offer`` to a web peer of this relay is remembered (the last one
   per page). With relays sharing rooms through Redis, only the page's own relay
   runs its bridge, wherever the sender is.
2. The page answers ``accept`` with ``download: TOKEN``, a secret it drew itself.
   The relay opens a ``Download`` for the offer and forwards the accept.
3. The page fetches ``/download/TOKEN/INDEX`` for each file when its
   ``file-start`` arrives. The relay takes the sender's chunks addressed to the
   page out of the WebSocket stream and writes them into that HTTP response.
4. Backpressure end to end: a chunk is handed over only when the response has
   room (a small queue per file; chunks that came through Redis queue without
   waiting, so that the relay's channel never waits for one phone), and the relay
   acknowledges to the sender, in the page's name, only the bytes the HTTP
   response has actually written. The sender's credit window therefore bounds the
   relay's memory as usual.
5. The relay hashes what it streamed. The last chunk of each file is held back
   until the sender's ``file-end`` arrives: on a match the response completes and
   the sender gets ``verified``; on a mismatch the response is aborted (the
   browser marks the download failed) and the sender gets ``hash-mismatch``.

Every protocol decision of points 4 and 5 (chunk order, sizes, the hash, when to
acknowledge) is the receiver's own, made by the same ``protocol.receiver.ReceiverMachine``
that ``xfer receive`` runs: here it is fed the sender's messages and told what each HTTP
response wrote, and this module only moves bytes and relays what the machine sends.

The download request may reach another relay that shares rooms (a load balancer
without sticky sessions): that relay asks the page's relay for the file through
Redis and streams what it sends (see "a download asked for on one relay" below).

Trade-off: the relay, not the phone, checks the hash. The phone cannot verify
what its downloader wrote; it trusts the relay it loaded the page from anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import replace
from typing import Any

from ..protocol import (
    Accept,
    Ack,
    Cancel,
    Chunk,
    Done,
    Error,
    FileEnd,
    Message,
    Offer,
    Reject,
    Verified,
    parse_chunk,
    serialize,
)
from ..protocol.errors import ProtocolError, RemoteProtocolError
from ..protocol.receiver import ReceiverMachine
from ..protocol.receiver_outputs import Failed, HashMismatch, OfferReceived, Place, Write
from ..protocol.room import Room
from .buses import Bus, Handle
from .download_http import _END, Download, FileStream, HttpSide, QuietAborts, _size, _Verdict, content_disposition
from .download_relays import AcrossRelays

log = logging.getLogger("xfer.relay.download")

WEB_CLIENT = "xfer-web/"  # the page's ``client`` in hello


class DownloadBridge(HttpSide):
    """The bridge of one relay; its limits (``download_*``) are its room's (``hub.limits``)."""

    def __init__(self, hub: Room[Handle], bus: Bus) -> None:
        self.hub = hub
        self.limits = hub.limits
        self.bus = bus  # with relays sharing rooms (Redis), a download may be asked for on another relay
        self.across = AcrossRelays(self)  # downloads asked for on one relay for a page on another
        self._background: set[asyncio.Task[Any]] = set()
        self.offers: dict[tuple[str, int], Offer] = {}  # (room, page) -> the last offer to it
        self.by_page: dict[tuple[str, int], Download] = {}
        self.by_token: dict[str, Download] = {}

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` on its own; the bridge keeps the task until it ends (see ``close``)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def close(self) -> None:
        """The relay stops: end what the bridge still runs, before the bus closes."""
        for _ in range(3):  # a task that ends may start one more (a last message to another relay)
            tasks = list(self._background)
            if not tasks:
                return
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    # -- hooks from the relay's forwarding loop ------------------------------------

    async def intercept(
        self,
        room: str,
        me: int,
        message: Message | None,
        data: bytes | None,
        targets: list[Handle],
        from_bus: bool = False,
    ) -> bool:
        """Look at a frame from peer ``me`` before it is forwarded; True means it was consumed.

        A chunk fanned out to several receivers (``to`` 0) may reach pages and terminals
        at once: the pages' copies are taken out of ``targets`` (which the caller then
        forwards to), and True only when nobody is left. ``from_bus``: the frame came
        from another relay through Redis, and this must not wait for the page.
        """
        if data is not None:
            if not self.by_page:
                return False
            consumed = False
            for peer in list(targets):
                d = self.by_page.get((room, _id(peer)))
                if d is not None and await self._chunk(d, me, data, wait=not from_bus):
                    targets.remove(peer)
                    consumed = True
            return consumed and not targets
        if isinstance(message, Offer):
            for peer in targets:
                if _a_page_here(peer):
                    self.offers[(room, _id(peer))] = replace(message, sender=me)  # a page of this relay
            return False
        if isinstance(message, Accept) and message.download is not None:
            # The page's own relay streams its downloads; on the sender's relay (through Redis) it is a plain accept.
            return await self._accept(room, me, message) if self._here(room, me) else False
        d = self.by_page.get((room, me))
        if d is not None and getattr(message, "transfer", None) == d.transfer:
            # the relay acknowledges for the page; what the page itself says about bytes is moot
            if isinstance(message, (Ack, Verified)):
                return True
            if isinstance(message, (Reject, Cancel, Error)):
                self._end(d, "the page cancelled the download")
            return False
        if len(targets) == 1 and (room, _id(targets[0])) in self.by_page:
            d = self.by_page[(room, _id(targets[0]))]
            if me == d.sender and message is not None and getattr(message, "transfer", None) == d.transfer:
                await self._from_sender(d, message, wait=not from_bus)
        return False

    def passes(self, message: Message, targets: list[Handle]) -> bool:
        """Whether ``intercept`` would leave this message between peers alone (nothing to note,
        nothing to take): the relay may then pass it on without asking (``wire.py``)."""
        if self.by_page or isinstance(message, Accept) and message.download is not None:
            return False
        return not isinstance(message, Offer) or not any(_a_page_here(peer) for peer in targets)

    def _here(self, room: str, peer_id: int) -> bool:
        """Whether ``peer_id`` is connected to this relay (not to another one sharing the room)."""
        r = self.hub.rooms.get(room)
        peer = r.peers.get(peer_id) if r is not None else None
        return peer is not None and peer.relay_id is None

    def peer_left(self, room: str, peer_id: int) -> None:
        self.offers.pop((room, peer_id), None)
        for d in [d for d in self.by_page.values() if d.room == room and peer_id in (d.page, d.sender)]:
            self._end(d, "a peer left")

    # -- the WebSocket side ------------------------------------------------------

    async def _accept(self, room: str, me: int, accept: Accept) -> bool:
        offer = self.offers.get((room, me))
        token = accept.download
        ok = (
            offer is not None
            and offer.sender == accept.to
            and offer.transfer == accept.transfer
            and token not in self.by_token
        )
        if not ok:
            await self._tell(
                room,
                me,
                Error(
                    to=me,
                    code="download-unavailable",
                    transfer=accept.transfer,
                    message="the relay cannot stream this offer; ask for it again",
                ),
            )
            return True
        old = self.by_page.get((room, me))
        if old is not None:
            self._end(old, "a new offer was accepted")
        assert offer is not None and offer.sender is not None and token is not None
        machine = ReceiverMachine(self.limits, implicit_start=True)
        [received] = [o for o in machine.receive(offer) if isinstance(o, OfferReceived)]
        # The page's own accept goes on to the sender: what the machine would send is moot.
        machine.accept(folders={i: "" for i, f in enumerate(offer.files) if f.kind == "dir"})
        files = [
            FileStream(i, parts[-1], f.size, f.mime) for i, (f, parts) in enumerate(zip(offer.files, received.parts))
        ]
        page = self.hub.member(room, me)
        browser = getattr(page.handle, "browser", None) if page is not None else None  # its link is for it alone
        d = Download(room, me, offer.sender, offer.transfer, token, files, machine, browser=browser)
        self.by_page[(room, me)] = d
        self.by_token[token] = d
        await self.bus.own_download(token)  # before the accept goes on: the page may ask any relay for the file
        return False

    async def _chunk(self, d: Download, me: int, data: bytes, wait: bool) -> bool:
        if me != d.sender:
            return False
        try:
            chunk = parse_chunk(data)
        except ProtocolError:
            return False  # the relay's own check rejects it
        if chunk.transfer != d.transfer:
            return False
        if d.failed:
            return True
        await self._follow(d, chunk, wait)
        return True

    async def _put(self, d: Download, f: FileStream, item: bytes | _Verdict | None, wait: bool) -> None:
        if wait:
            # The wait is the backpressure: the sender's socket is not read until the
            # HTTP response has taken the previous chunks.
            try:
                await asyncio.wait_for(self._space(f), self.limits.download_start_timeout)
            except asyncio.TimeoutError:
                await self._fail(d, "download-stalled", f"the phone did not take {f.name} in time")
                return
        elif f.queued + _size(item) > self.limits.download_bus_bytes:
            # Chunks that came through Redis from a sender on another relay are already in this relay's
            # memory, and its channel must not wait for one phone: they queue without waiting, up to
            # this (the sender's credit window keeps them far below it).
            await self._fail(d, "protocol", f"the sender sent {f.name} past its credit window")
            return
        elif f.watch is None:
            f.watch = self._spawn(self._watch(d, f))
        if d.failed:
            return
        f.queue.put_nowait(item)
        f.queued += _size(item)

    async def _space(self, f: FileStream) -> None:
        while f.queue.qsize() >= self.limits.download_queue_chunks:
            f.space.clear()
            await f.space.wait()

    async def _watch(self, d: Download, f: FileStream) -> None:
        """Fail the download when its chunks wait a whole ``download_start_timeout`` and the phone takes none."""
        while True:
            taken = f.taken
            await asyncio.sleep(self.limits.download_start_timeout)
            if d.failed or f.complete:
                return
            if f.queue.empty():
                f.watch = None  # the next chunk starts another watch
                return
            if f.taken == taken:
                await self._fail(d, "download-stalled", f"the phone did not take {f.name} in time")
                return

    async def _from_sender(self, d: Download, message: Message, wait: bool) -> None:
        if isinstance(message, Done):
            self._end(d, None)
        else:  # (the relay stamps "from" when it forwards; this is before)
            await self._follow(d, replace(message, sender=d.sender), wait)

    async def _follow(self, d: Download, item: Message | Chunk, wait: bool) -> None:
        """Hand the sender's message or chunk to the download's machine and carry out what it says."""
        cur = d.machine.current
        try:
            outputs = d.machine.receive(item)
        except RemoteProtocolError as exc:
            if isinstance(item, FileEnd) and cur is not None and cur.index == item.index:
                # A file-end that lies about the size: the response fails when it gets there.
                d.machine.fail(exc)
                await self._put(d, d.files[cur.index], _Verdict(exc.code, str(exc), cur.index), wait)
            else:
                await self._fail(d, exc.code, str(exc))
            return
        for output in outputs:
            if isinstance(output, Write):
                await self._put(d, d.files[output.index], bytes(output.data), wait)
            elif isinstance(output, Place):  # the file arrived whole with its hash: let the response end
                await self._put(d, d.files[output.index], _END, wait)
            elif isinstance(output, HashMismatch):
                f = d.files[output.index]
                await self._put(d, f, _Verdict("hash-mismatch", f"SHA-256 of {f.name} did not match", f.index), wait)
            elif isinstance(output, Failed):  # the sender cancelled or stopped
                self._end(d, "the sender stopped")
            if d.failed:
                return

    async def _tell(self, room: str, peer_id: int, message: Message) -> None:
        peers = self.hub.targets(room, 0, peer_id)
        if peers:
            await peers[0].send(serialize(message))

    async def _fail(self, d: Download, code: str, why: str, index: int | None = None) -> None:
        if d.failed:
            return
        self._end(d, why)
        await self._tell(
            d.room,
            d.sender,
            Error(to=d.sender, sender=d.page, code=code, message=why[:200], transfer=d.transfer, index=index),
        )
        await self._tell(
            d.room, d.page, Error(to=d.page, code=code, message=why[:200], transfer=d.transfer, index=index)
        )

    def _end(self, d: Download, why: str | None) -> None:
        """Forget ``d``; abort responses still running (``why`` set) and free a blocked sender."""
        if self.by_page.get((d.room, d.page)) is d:
            del self.by_page[(d.room, d.page)]
        if self.by_token.pop(d.token, None) is d:
            self._spawn(self.bus.drop_download(d.token))
        if why is None:
            return
        d.failed = True
        for f in d.files:
            while not f.queue.empty():
                f.queue.get_nowait()
            f.queued = 0
            f.space.set()  # a sender waiting for room goes on (and finds the download failed)
            for task in (f.task, f.watch):
                if task is not None and not task.done() and task is not asyncio.current_task():
                    task.cancel()

    def from_bus(self, kind: bytes, body: bytes) -> None:
        """A download message from another relay (see ``download_relays``)."""
        self.across.from_bus(kind, body)


__all__ = ["DownloadBridge", "QuietAborts", "content_disposition"]


def _id(peer: Handle) -> int:
    return peer.info.id if peer.info is not None else 0


def _a_page_here(peer: Handle) -> bool:
    """A page (the web client) connected to this relay: the bridge may stream downloads to it."""
    return peer.relay_id is None and peer.info is not None and peer.info.client.startswith(WEB_CLIENT)
