"""The sending peer: wait for a receiver, offer, stream chunks inside a credit window.

The exchange runs in rounds. A round offers every file (under one transfer id for
the whole run), takes the receiver's resume points, and streams what is missing.
When the connection drops or the receiver leaves, the round is broken; the next
round starts once a receiver is back, from what that receiver already holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import stat as stat_mod
import time
from pathlib import Path
from typing import Any

import aiofiles

from ..errors import Declined, IntegrityFailure, LocalFileError, PeerGone, PeerProtocolError, RelayGone, XferError
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
from ..protocol.messages import MAX_FILES_PER_OFFER, MAX_ID
from ..units import human_size
from .base import WINDOW, PeerTask, RoundBroken, SourceFile, peer_label

RECEIVING_ROLES = ("receiver", "peer")


def peer_dict(info: PeerInfo) -> dict[str, Any]:
    return {"id": info.id, "name": info.name, "role": info.role, "client": info.client}


class Sender(PeerTask):
    def __init__(
        self,
        conn,
        files: list[SourceFile],
        emit,
        *,
        window: int = WINDOW,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        rate: int | None = None,
        receivers: int = 1,
        exclude: set[int] | None = None,
        **options: Any,
    ) -> None:
        super().__init__(conn, emit, **options)
        self.rate = rate  # bytes per second at most, or None
        self.want = max(1, receivers)  # receivers to wait for; the data is sent once, fanned out by the relay
        self._take = self.want  # receivers to offer the next round to (fewer when some come back late)
        self._left_early: list[int] = []  # fan-out receivers that left mid-transfer: taken back if they return
        self.exclude = exclude or set()  # peers already served (--keep-open)
        if not 1 <= chunk_size <= MAX_CHUNK_PAYLOAD:
            raise ValueError(f"chunk_size must be from 1 to {MAX_CHUNK_PAYLOAD}")
        self.files = files
        self.window = max(window, chunk_size)
        self.chunk_size = chunk_size
        self.transfer = secrets.randbelow(MAX_ID) + 1
        self.total = sum(f.size or 0 for f in files)  # streams count once they end
        self.verified: dict[int, str] = {}  # index -> SHA-256 the receiver confirmed
        self._held = 0  # bytes of the verified files
        self._round_set: set[int] = set()
        self._stream_sizes: dict[int, int] = {}
        self._hashes: dict[int, str] = {}  # index -> SHA-256 we computed
        self._reset_round()

    def _reset_round(self) -> None:
        self.chosen: dict[int, PeerInfo] = {}  # receivers offered to this round
        self.answers: dict[int, Accept | Reject] = {}
        self.members: dict[int, PeerInfo] = {}  # those who accepted and are still here
        self.acks: dict[int, int] = {}  # bytes each member reported written this round
        self.member_verified: dict[int, set[int]] = {}  # files each member confirmed this round
        self.base: dict[int, int] = {}  # index -> offset this round started the file at
        self.sent = 0  # bytes sent this round
        self._reported: tuple[int, int] = (-1, -1)
        self._round_files: list[int] = []
        self._cursor = 0  # the first file not yet verified (advances only)
        self._earlier = 0  # bytes of this round's files before the cursor
        self.broken = False

    @property
    def receiver(self) -> PeerInfo | None:
        """The first receiver of this round (the only one, unless --receivers)."""
        return next(iter(self.members.values()), None) or next(iter(self.chosen.values()), None)

    @property
    def acked(self) -> int:
        """What every member has written: the slowest one sets the pace."""
        return min(self.acks.values(), default=0)

    @property
    def _fanout(self) -> bool:
        return self.want > 1

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
        peer = item.sender
        if peer not in self.chosen:
            return  # not from a peer we are sending to
        if getattr(item, "transfer", self.transfer) != self.transfer:
            return
        if isinstance(item, (Accept, Reject)):
            if peer not in self.answers:
                self.answers[peer] = item
                if isinstance(item, Accept):
                    self.members[peer] = self.chosen[peer]
                    self.acks[peer] = 0
                    self.member_verified[peer] = set()
        elif peer not in self.members:
            return
        elif isinstance(item, Ack):
            if not self.acks[peer] <= item.bytes <= self.sent:
                self._misbehaved(peer, PeerProtocolError("the receiver acknowledged bytes that were never sent"))
                return
            self.acks[peer] = item.bytes
            self._progress()
        elif isinstance(item, Verified):
            self._verified(peer, item)
        elif isinstance(item, (Error, Cancel)):
            if isinstance(item, Error):
                error = _error_from_peer(item, self._file_name(item.index))
            else:
                error = PeerGone(f"the receiver cancelled: {item.reason or 'no reason given'}")
            self._misbehaved(peer, error)

    def _name_of(self, peer_id: int | None) -> str:
        info = self.conn.peers.get(peer_id or 0)
        return peer_label(info) if info else "a peer"

    def _file_name(self, index: int | None) -> str | None:
        return self.files[index].name if index is not None and index < len(self.files) else None

    def _peer_left(self, peer_id: int) -> None:
        self.emit("peer-left", peer={"id": peer_id})
        if peer_id not in self.chosen or (peer_id in self.answers and peer_id not in self.members):
            return  # declined, or dropped from a fan-out already
        done = self.member_verified.get(peer_id)
        if done is not None and self._round_files and len(done) >= len(self._round_files):
            return  # it has everything: leaving is how a finished receiver says goodbye
        if self._fanout and len(self.members) > 1:
            self._drop(peer_id, "left")
            self._left_early.append(peer_id)
            return
        if len(self.verified) < len(self.files):
            self._left = self._where()
            self.break_round()

    def _misbehaved(self, peer: int, error: Exception) -> None:
        """One receiver failed: the end of a lone transfer, but only of that receiver's part of a fan-out."""
        if self._fanout:
            self._drop(peer, str(error))
        else:
            self.fail(error)

    def _drop(self, peer_id: int, why: str) -> None:
        """A receiver of a fan-out is gone; the others go on without it."""
        info = self.members.pop(peer_id, None) or self.chosen.get(peer_id)
        self.acks.pop(peer_id, None)
        self.member_verified.pop(peer_id, None)
        self.answers.setdefault(peer_id, Reject(transfer=self.transfer, reason=why, code="gone"))
        self.emit("receiver-failed", peer=peer_dict(info) if info else {"id": peer_id}, reason=why)
        if not self.members and self.answers.keys() >= self.chosen.keys():
            self.fail(PeerGone("every receiver left or failed"))
        self._progress()

    def on_disconnect(self) -> None:
        if self.receiver is not None:
            self._left = self._where()

    def _current(self) -> tuple[int, int]:
        """The first file not yet verified, and how much of it the receiver holds.

        Kept incrementally (a cursor and a running sum): this runs on every ack, and an
        offer may hold thousands of files."""
        last = len(self.files) - 1
        while self._cursor < last and self._cursor in self.verified:
            if self._cursor in self._round_set:
                self._earlier += self._size(self._cursor) - self.base.get(self._cursor, 0)
            self._cursor += 1
        index = self._cursor
        # Files before it in this round are verified, so what was acked past them belongs to it.
        done = self.base.get(index, 0) + max(self.acked - self._earlier, 0)
        size = self.files[index].size
        return index, done if size is None else min(done, size)

    def _size(self, index: int) -> int:
        """A file's size; a stream's is known once it was read to the end."""
        return self.files[index].size if self.files[index].size is not None else self._stream_sizes.get(index, 0)

    def _where(self) -> str:
        index, done = self._current()
        f = self.files[index]
        if f.size is None:
            return f"{f.name} ({human_size(done)})"
        return f"{f.name} ({human_size(done)} of {human_size(f.size)})"

    def _progress(self) -> None:
        index, done = self._current()
        if (self.acked, index) == self._reported and not self._fanout:
            return
        self._reported = (self.acked, index)
        f = self.files[index]
        # a round for receivers that came back late resends what the others already verified
        held = self.total if len(self.verified) == len(self.files) else self._held + done
        extra = {"peers": {str(peer): acked for peer, acked in self.acks.items()}} if self._fanout else {}
        self.emit(
            "progress",
            index=index,
            name=f.name,
            bytes=done,
            size=f.size,
            total_bytes=held,
            total_size=self.total,
            **extra,
        )

    def _verified(self, peer: int, item: Verified) -> None:
        index = item.index
        if index >= len(self.files) or index in self.member_verified[peer]:
            return
        expected = self._hashes.get(index)
        if expected is None or item.sha256 != expected:
            self._misbehaved(
                peer, IntegrityFailure(f"the receiver verified {self.files[index].name} against the wrong hash")
            )
            return
        self.member_verified[peer].add(index)
        if self._fanout:
            self.emit("peer-file-end", peer={"id": peer}, index=index, name=self.files[index].name)
        if index in self.verified or not all(index in done for done in self.member_verified.values()):
            return  # confirmed again by a receiver that came back, or others still writing
        self.verified[index] = expected
        self._held += self._size(index)
        f = self.files[index]
        self.emit("file-end", index=index, name=f.name, size=self._size(index), sha256=expected)

    # -- the transfer ------------------------------------------------------------

    async def main(self) -> dict[str, Any]:
        self.started = 0.0  # set when the first receiver accepts
        await self._rounds(None)  # no deadline while waiting for the first receiver
        assert self.receiver is not None
        served = dict(self.members)
        await self._done()
        if self._left_early:
            served.update(await self._take_back(served))
        seconds = time.monotonic() - self.started
        summary = {
            "files": sum(1 for f in self.files if f.kind == "file"),
            "bytes": self.total,
            "seconds": round(seconds, 3),
            "peer": peer_dict(next(iter(served.values()))),
            "peers": [peer_dict(p) for p in served.values()],
        }
        self.emit("done", **summary)
        return summary

    async def _done(self) -> None:
        for member in self.members:
            await self.send_quietly(Done(to=member, transfer=self.transfer))

    async def _take_back(self, served: dict[int, PeerInfo]) -> dict[int, PeerInfo]:
        """Receivers of a fan-out that left mid-transfer (their link or their relay went) come
        back as new peers: once the others have everything, give those that return within
        ``peer_timeout`` a round of their own, from what they hold."""
        back: dict[int, PeerInfo] = {}
        loop = asyncio.get_running_loop()
        while self._left_early:
            owed = len(self._left_early)
            self.exclude.update(served, back, self.chosen)  # offer only to peers that are new
            self.emit("waiting", reason="receiver-back", receivers=owed, seconds=self.peer_timeout)
            try:
                await self.until(
                    lambda: self.connected and bool(self._available()), deadline=loop.time() + self.peer_timeout
                )
            except asyncio.TimeoutError:
                self.emit(
                    "warning",
                    message=f"{owed} receiver{'s' if owed > 1 else ''} that left did not come "
                    f"back within {self.peer_timeout:.0f} s",
                )
                break
            self._take = min(owed, len(self._available()))
            self._left_early = []
            self._reset_round()
            try:
                await self._rounds(loop.time() + self.peer_timeout)
            except XferError as exc:
                self.emit("warning", message=f"a receiver that came back did not finish: {exc}")
                break
            back.update(self.members)
            await self._done()
        return back

    async def _rounds(self, deadline: float | None) -> None:
        """Run rounds until one completes; an interrupted one is followed by another."""
        while True:
            try:
                await self._round(deadline)
                break
            except (RoundBroken, RelayGone) as exc:
                if self.failed or (isinstance(exc, RelayGone) and self.reconnect is None):
                    raise  # the reader gave up on the relay (or there is no reconnecting): the end
                stream = next((f for i, f in enumerate(self.files) if f.stream and i in self.base), None)
                if stream is not None:
                    raise PeerGone(
                        f"the transfer of {stream.name} broke off; a stream cannot resume: run the pipeline again"
                    ) from None
                where = getattr(self, "_left", "the transfer")
                self.emit("interrupted", reason="receiver-left" if self.connected else "relay-lost", at=where)
                self._reset_round()
                # the wait for the receiver counts from when it (or the relay) was lost, not from now
                lost = self.lost_at if not self.connected and self.lost_at is not None else None
                deadline = (lost or asyncio.get_running_loop().time()) + self.peer_timeout

    def _available(self) -> list[PeerInfo]:
        return [p for p in self.conn.peers.values() if p.role in RECEIVING_ROLES and p.id not in self.exclude]

    def _receiver_present(self) -> bool:
        return self.connected and len(self._available()) >= self._take

    async def _round(self, deadline: float | None) -> None:
        if not self._receiver_present():
            self.emit("waiting", reason="receiver")

        def gone() -> BaseException:
            if not self.connected:  # the relay, not the receiver, is what stayed away
                return RelayGone(f"could not reach the relay again within {self.reconnect_for:.0f} s")
            where = getattr(self, "_left", None)
            during = f" during {where}" if where else ""
            return PeerGone(f"the receiver left{during} and did not come back. Run the same command again to resume.")

        self.broken = False
        await self.until(self._receiver_present, deadline=deadline, timeout_error=gone)
        self.chosen = {p.id: p for p in self._available()[: self._take]}
        files = tuple(FileInfo(name=f.name, size=f.size, mtime=f.mtime, kind=f.kind) for f in self.files)
        for peer in self.chosen:
            await self.conn.send(Offer(to=peer, transfer=self.transfer, files=files, window=self.window))
        first = next(iter(self.chosen.values()))
        self.emit(
            "offer",
            transfer=self.transfer,
            to=peer_dict(first),
            total=self.total,
            peers=[peer_dict(p) for p in self.chosen.values()],
            files=[{"index": i, "name": f.name, "size": f.size, "kind": f.kind} for i, f in enumerate(self.files)],
        )
        await self.until(lambda: self.answers.keys() >= self.chosen.keys())
        for peer, answer in self.answers.items():
            if isinstance(answer, Reject) and self._fanout:
                self.emit("declined", peer=peer_dict(self.chosen[peer]), reason=answer.reason)
        if not self.members:
            raise _declined(next(a for a in self.answers.values() if isinstance(a, Reject)))
        starts = await self._group_starts()
        if not self.started:
            self.started = time.monotonic()
        for peer in self.members.values():
            self.emit("accepted", peer=peer_dict(peer), resumed=sum(offset for offset, _ in starts.values()))
        for index, f in enumerate(self.files):
            if f.kind == "dir":
                self.verified[index] = ""  # folders are made when the receiver accepts
        # Every file, each round: one the receiver holds whole costs a file-start and a file-end,
        # and a receiver started again learns that way that it has it.
        self._round_files = [
            i for i, f in enumerate(self.files) if f.kind == "file" and not (f.stream and i in self.verified)
        ]
        self._round_set = set(self._round_files)
        self._cursor = self._earlier = 0
        for index in self._round_files:
            offset, digest = starts.get(index, (0, None))
            await self._send_file(index, self.files[index], offset, digest)
        await self.until(
            lambda: (
                all(len(done) >= len(self._round_files) for done in self.member_verified.values()) or not self.members
            )
        )

    async def _group_starts(self) -> dict[int, tuple[int, Any]]:
        """Where each file starts this round: what every receiver holds of it (checked
        against our file), so that one stream serves them all; 0 when any holds none."""
        per_member = [await self._resume_points(a) for a in self.answers.values() if isinstance(a, Accept)]
        starts: dict[int, tuple[int, Any]] = {}
        for index in set.intersection(*(set(p) for p in per_member)) if per_member else ():
            starts[index] = min((p[index] for p in per_member), key=lambda start: start[0])
        return starts

    async def _resume_points(self, accept: Accept) -> dict[int, tuple[int, Any]]:
        """For each file the receiver holds a part of: check that part against our file."""
        starts: dict[int, tuple[int, Any]] = {}
        for point in accept.resume:
            if point.index >= len(self.files):
                continue
            f = self.files[point.index]
            if f.kind != "file" or f.stream or point.offset > f.size:
                continue
            known = self._hashes.get(point.index)
            if known is not None and point.offset == f.size:  # we hashed it whole already
                if known == point.sha256:
                    starts[point.index] = (point.offset, _Finished(known))
                else:
                    self.emit("resume-mismatch", index=point.index, name=f.name)
                continue
            try:
                digest = await asyncio.to_thread(_prefix_digest, f.path, point.offset)
            except OSError:
                continue
            if digest.hexdigest() == point.sha256:
                starts[point.index] = (point.offset, digest)
            else:
                self.emit("resume-mismatch", index=point.index, name=f.name)
        return starts

    async def _tell(self, make) -> None:
        """Send a control message to each receiver of this round (``make(peer_id)`` builds it)."""
        for peer in list(self.members):
            await self.conn.send(make(peer))

    @property
    def _chunk_to(self) -> int:
        # One receiver: address it. Several: 0, and the relay fans the chunk out to those who accepted.
        return 0 if self._fanout else next(iter(self.members))

    async def _send_file(self, index: int, f: SourceFile, offset: int, digest: Any) -> None:
        self.base[index] = offset
        await self._tell(lambda to: FileStart(to=to, transfer=self.transfer, index=index, offset=offset))
        self.emit("file-start", index=index, name=f.name, size=f.size, offset=offset)
        digest = digest or hashlib.sha256()
        try:
            if f.stream:
                size = await self._pump(index, offset, digest, lambda n: asyncio.to_thread(_read_some, n), None)
                self._stream_sizes[index] = size
                self.total += size
            else:
                async with aiofiles.open(f.path, "rb") as source:
                    await source.seek(offset)
                    size = await self._pump(index, offset, digest, _Blocks(source.read), f.size)
        except OSError as exc:
            where = "standard input" if f.stream else str(f.path)
            await self._cancel(f"cannot read {f.name}")
            raise LocalFileError(f"cannot read {where}: {exc.strerror or exc}") from exc
        except LocalFileError as exc:
            await self._cancel(str(exc))
            raise
        sha = digest.hexdigest()
        self._hashes[index] = sha
        await self._tell(lambda to: FileEnd(to=to, transfer=self.transfer, index=index, size=size, sha256=sha))

    async def _pump(self, index: int, offset: int, digest: Any, read, size: int | None) -> int:
        """Read, hash and send chunks inside the credit window; return the file's size."""
        while size is None or offset < size:
            n = self.chunk_size if size is None else min(self.chunk_size, size - offset)
            await self._credit(n)
            data = await read(n)
            if size is None and not data:
                break  # the end of a stream
            if size is not None and len(data) != n:
                raise LocalFileError(f"{self.files[index].name} changed while it was being sent (it got shorter)")
            digest.update(data)
            if self.rate:
                await self._pace(len(data))
            await self.conn.send_frame(
                chunk_header(self.conn.peer_id, self._chunk_to, self.transfer, index, offset) + data
            )
            offset += len(data)
            self.sent += len(data)
        return offset

    async def _credit(self, n: int) -> None:
        """Wait until ``n`` more bytes fit in the window. In a fan-out, a receiver that
        acknowledges nothing for ``peer_timeout`` seconds while the others wait is dropped."""

        def fits() -> bool:
            return self.sent - self.acked + n <= self.window

        while True:
            if not self._fanout or len(self.members) < 2:
                return await self.until(fits)
            deadline = asyncio.get_running_loop().time() + self.peer_timeout
            try:
                return await self.until(fits, deadline=deadline)
            except asyncio.TimeoutError:
                slowest = min(self.acks, key=self.acks.get)
                self._drop(slowest, f"it acknowledged nothing for {self.peer_timeout:.0f} s")

    async def _pace(self, n: int) -> None:
        """Keep to ``rate`` bytes a second (--limit-rate), measured from the round's start."""
        loop = asyncio.get_running_loop()
        if self.sent == 0:
            self._paced_from = loop.time()
        ahead = (self.sent + n) / self.rate - (loop.time() - self._paced_from)
        if ahead > 0:
            await asyncio.sleep(ahead)

    async def _cancel(self, reason: str) -> None:
        for peer in list(self.members) or list(self.chosen):
            await self.send_quietly(Cancel(to=peer, transfer=self.transfer, reason=reason[:200]))

    async def cancel(self, reason: str = "the sender stopped") -> None:
        """Tell the receiver we are giving up (so it removes what it holds of this offer)."""
        await self._cancel(reason)


class _Blocks:
    """Reads a file in blocks of several chunks (one trip to a worker thread each: that
    bought about 20 % of relayed throughput here) and hands them out chunk by chunk, as
    views, without copying."""

    def __init__(self, read, block: int = 1 << 20) -> None:
        self.read, self.block = read, block
        self.view = memoryview(b"")

    async def __call__(self, n: int) -> memoryview:
        if len(self.view) < n:
            rest = bytes(self.view)
            more = await self.read(max(self.block, n) - len(rest))
            self.view = memoryview(rest + more if rest else more)
        piece, self.view = self.view[:n], self.view[n:]
        return piece


class _Finished:
    """Stands in for a running hash of a file that is already whole at the receiver."""

    def __init__(self, sha: str) -> None:
        self.sha = sha

    def update(self, data: bytes) -> None:  # pragma: no cover - nothing is left to send
        raise AssertionError("a whole file has nothing left to hash")

    def hexdigest(self) -> str:
        return self.sha


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


def _prefix_digest(path: Path, length: int):
    from .store import prefix_digest

    return prefix_digest(path, length)


def _declined(reject: Reject) -> Exception:
    if reject.code == "no-space":
        return LocalFileError(f"the receiver has no room for this: {reject.reason}", "no-space")
    reason = f": {reject.reason}" if reject.reason and reject.reason != "declined" else ""
    return Declined(f"the receiver declined the offer{reason}")


def _error_from_peer(error: Error, name: str | None) -> Exception:
    what = f" ({name})" if name else ""
    if error.code == "hash-mismatch":
        return IntegrityFailure(f"the receiver found a SHA-256 mismatch{what}; nothing was saved under its name")
    if error.code in ("no-space", "disk-full", "permission-denied", "io-error"):
        return LocalFileError(f"the receiver could not write{what}: {error.message}", error.code)
    return PeerProtocolError(f"the receiver stopped{what}: {error.message or error.code}", error.code)


def check_sources(paths: list[Path], *, follow_symlinks: bool = False, warn=None) -> list[SourceFile]:
    """Every entry to offer, checked up front so that a missing file fails before a room opens.

    ``-`` is standard input; a folder is walked (streamed later file by file, never
    archived), keeping empty folders; symlinks inside it are skipped with a warning
    unless ``follow_symlinks``.
    """
    warn = warn or (lambda message: None)
    entries: list[SourceFile] = []
    for path in paths:
        if str(path) == "-":
            entries.append(SourceFile(path=None, name="stdin", size=None, mtime=None))
            continue
        st = _stat(path, follow=True)
        if stat_mod.S_ISDIR(st.st_mode):
            entries.extend(_walk(path, follow_symlinks, warn))
        else:
            entries.append(_source_file(path, path.name, st))
    if not entries:
        raise LocalFileError("nothing to send")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[0]
        raise LocalFileError(f"{twice} would be sent twice; send the files from different folders one by one")
    if len(entries) > MAX_FILES_PER_OFFER:
        raise LocalFileError(
            f"{len(entries)} files is more than one offer takes ({MAX_FILES_PER_OFFER}); "
            "send the folder in parts, or as an archive"
        )
    return entries


def _stat(path: Path, *, follow: bool):
    try:
        return path.stat() if follow else path.lstat()
    except FileNotFoundError:
        raise LocalFileError(f"{path}: no such file") from None
    except PermissionError:
        raise LocalFileError(f"{path}: permission denied", "permission-denied") from None
    except OSError as exc:
        raise LocalFileError(f"{path}: {exc.strerror or exc}") from None


def _source_file(path: Path, name: str, st) -> SourceFile:
    if not stat_mod.S_ISREG(st.st_mode):
        raise LocalFileError(f"{path} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        code = "permission-denied" if isinstance(exc, PermissionError) else "local-file"
        raise LocalFileError(f"{path}: {exc.strerror or exc}", code) from None
    return SourceFile(path=path, name=name, size=st.st_size, mtime=st.st_mtime)


def _walk(root: Path, follow_symlinks: bool, warn) -> list[SourceFile]:
    """The tree under ``root`` in a stable order: each folder, then its files, then its subfolders."""
    out: list[SourceFile] = []
    seen: set[tuple[int, int]] = set()  # folders entered, against symlink loops

    def visit(folder: Path, rel: str) -> None:
        st = _stat(folder, follow=True)
        if (st.st_dev, st.st_ino) in seen:
            warn(f"skipped {folder}: a symlink loop")
            return
        seen.add((st.st_dev, st.st_ino))
        out.append(SourceFile(path=folder, name=rel, size=0, mtime=st.st_mtime, kind="dir"))
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise LocalFileError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None
        subfolders = []
        for child in children:
            path, name = Path(child.path), f"{rel}/{child.name}"
            if child.is_symlink() and not follow_symlinks:
                warn(f"skipped the symlink {path} (use --follow-symlinks to send what it points to)")
                continue
            try:
                child_st = path.stat()
            except OSError:
                warn(f"skipped {path}: it points nowhere")
                continue
            if stat_mod.S_ISDIR(child_st.st_mode):
                subfolders.append((path, name))
            elif stat_mod.S_ISREG(child_st.st_mode):
                out.append(_source_file(path, name, child_st))
            else:
                warn(f"skipped {path}: not a regular file")
        for path, name in subfolders:
            visit(path, name)

    visit(root, root.resolve().name or "folder")
    return out


__all__ = ["Sender", "check_sources", "peer_dict", "XferError"]
