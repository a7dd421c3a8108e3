"""One round of the sender machine: the offer, the answers, the resume points, the files
streamed inside the credit window, the acks and the verified hashes of each receiver.

A ``Round`` lives as long as its round; ``SenderMachine`` (``sender.py``) starts a new
one after an interruption and keeps what outlives rounds (the verified files, our hashes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import IntegrityFailure, LocalFileError, LocalProtocolError, PeerGone, RemoteProtocolError, XferError
from .frames import Chunk
from .machine import Output, Send, SendChunk
from .messages import (
    MAX_REASON_CHARS,
    Accept,
    Ack,
    Cancel,
    Error,
    FileEnd,
    FileStart,
    Message,
    Offer,
    PeerInfo,
    Reject,
    Verified,
)
from .sender_events import (
    Accepted,
    CheckPrefix,
    FileStarted,
    FileVerified,
    OfferSent,
    PeerFileVerified,
    Progress,
    Read,
    ReceiverDeclined,
    ReceiverFailed,
    ResumeMismatch,
    RunningHash,
    SenderState,
)

if TYPE_CHECKING:
    from .sender import SenderMachine


class WholeHash:
    """Stands in for the running hash of a file that the receivers already hold whole."""

    def __init__(self, sha: str) -> None:
        self.sha = sha

    def update(self, data: bytes | memoryview, /) -> None:
        raise LocalProtocolError("a whole file has nothing left to hash")

    def hexdigest(self) -> str:
        return self.sha


@dataclass
class Outgoing:
    """The file being sent: where the next chunk starts, and the hash of what came before."""

    index: int
    offset: int
    size: int | None
    digest: RunningHash


Key = tuple[int, int, str]  # a resume point: index, offset, sha256


class Round:
    def __init__(self, machine: SenderMachine) -> None:
        self.m = machine
        self.chosen: dict[int, PeerInfo] = {}  # receivers offered to
        self.answers: dict[int, Accept | Reject] = {}
        self.members: dict[int, PeerInfo] = {}  # those who accepted and are still here
        self.acks: dict[int, int] = {}  # bytes each member reported written
        self.member_verified: dict[int, set[int]] = {}  # files each member confirmed
        self.base: dict[int, int] = {}  # index -> offset this round started the file at
        self.sent = 0
        self.files: list[int] = []  # the files this round sends, in order
        self.file_set: set[int] = set()
        self.position = 0  # in ``files``: the one being sent
        self.outgoing: Outgoing | None = None
        self.reading: Read | None = None  # asked of the shell, not answered yet
        self.credit_deadline: float | None = None  # a fan-out blocked on its slowest receiver
        self.pending: set[Key] = set()  # resume points the shell is checking
        self.checked: dict[Key, RunningHash] = {}  # resume points that match our file
        self.starts: dict[int, tuple[int, RunningHash | None]] = {}
        self.reported = (-1, -1)
        self.cursor = 0  # the first file not yet verified (advances only)
        self.earlier = 0  # bytes of this round's files before the cursor

    @property
    def acked(self) -> int:
        """What every member has written: the slowest one sets the pace."""
        return min(self.acks.values(), default=0)

    # -- the offer and the answers -------------------------------------------------

    def offer(self, receivers: list[PeerInfo]) -> list[Output]:
        m = self.m
        self.chosen = {p.id: p for p in receivers}
        out: list[Output] = [
            Send(Offer(to=p, transfer=m.transfer, files=m.files, window=m.limits.window)) for p in self.chosen
        ]
        return out + [OfferSent(m.transfer, tuple(self.chosen.values()), m.total)]

    def from_receiver(self, peer: int, item: Message, now: float) -> list[Output]:
        """A message from a receiver offered to this round."""
        m = self.m
        if isinstance(item, (Accept, Reject)):
            if peer in self.answers:
                return []
            self.answers[peer] = item
            if isinstance(item, Accept):
                m.engaged = True
                self.members[peer] = self.chosen[peer]
                self.acks[peer] = 0
                self.member_verified[peer] = set()
            return self._answered(now)
        if peer not in self.members:
            return []
        if isinstance(item, Ack):
            if not self.acks[peer] <= item.bytes <= self.sent:
                wrong = RemoteProtocolError("the receiver acknowledged bytes that were never sent")
                return self.misbehaved(peer, wrong, now)
            self.acks[peer] = item.bytes
            return self.progress() + self.pump(now)
        if isinstance(item, Verified):
            return self._verified(peer, item, now)
        if isinstance(item, Error):
            return self.misbehaved(peer, m.error_from_peer(item), now)
        if isinstance(item, Cancel):
            error = PeerGone(f"the receiver cancelled: {item.reason or 'no reason given'}")
            return self.misbehaved(peer, error, now)
        return []

    def _answered(self, now: float) -> list[Output]:
        """Once every receiver offered to has answered: check the resume points they sent."""
        m = self.m
        if m.state is not SenderState.OFFERED or not self.answers.keys() >= self.chosen.keys():
            return []
        out: list[Output] = []
        if m.fanout:
            for peer, answer in self.answers.items():
                if isinstance(answer, Reject) and answer.code != "gone":
                    out.append(ReceiverDeclined(self.chosen[peer], answer.reason))
        if not self.members:
            reject = next(a for a in self.answers.values() if isinstance(a, Reject))
            return out + m.fail(m.declined_error(reject))
        m._move("answered")
        for points in self._points().values():
            for index, (offset, sha) in points.items():
                known = m.hashes.get(index)
                if known is None or offset != m.files[index].size:  # hashed whole already: no need to read
                    self.pending.add((index, offset, sha))
                elif known != sha:
                    out.append(ResumeMismatch(index, m.files[index].name))
        out += [CheckPrefix(m.epoch, index, offset, sha) for index, offset, sha in sorted(self.pending)]
        return out + self._checked(now)

    def _points(self) -> dict[int, dict[int, tuple[int, str]]]:
        """Each member's resume points that may hold (an accept names each file once at
        most: ``Accept.check``), capped at what our file has."""
        m = self.m
        per_member: dict[int, dict[int, tuple[int, str]]] = {}
        for peer in self.members:
            accept = self.answers[peer]
            assert isinstance(accept, Accept)
            points: dict[int, tuple[int, str]] = {}
            for point in accept.resume:
                if point.index >= len(m.files):
                    continue
                f = m.files[point.index]
                if f.kind != "file" or f.size is None or point.offset > f.size:
                    continue
                points[point.index] = (point.offset, point.sha256)
            per_member[peer] = points
        return per_member

    def prefix_checked(self, check: CheckPrefix, digest: RunningHash | None, now: float) -> list[Output]:
        key = (check.index, check.offset, check.sha256)
        if key not in self.pending:
            raise LocalProtocolError("an answer to a prefix check that was not asked for")
        self.pending.discard(key)
        out: list[Output] = []
        if digest is not None:  # a file we cannot read now is sent whole (and fails then, if it must)
            if digest.hexdigest() == check.sha256:
                self.checked[key] = digest
            else:
                out.append(ResumeMismatch(check.index, self.m.files[check.index].name))
        return out + self._checked(now)

    def _checked(self, now: float) -> list[Output]:
        """Every resume point checked: where each file starts, and the files start."""
        m = self.m
        if self.pending or m.state is not SenderState.CHECKING:
            return []
        per_member: list[dict[int, tuple[int, RunningHash | None]]] = []
        for points in self._points().values():
            starts: dict[int, tuple[int, RunningHash | None]] = {}
            for index, (offset, sha) in points.items():
                known = m.hashes.get(index)
                if known is not None and offset == m.files[index].size:
                    if known == sha:
                        starts[index] = (offset, WholeHash(known))
                elif (index, offset, sha) in self.checked:
                    starts[index] = (offset, self.checked[(index, offset, sha)])
            per_member.append(starts)
        # One stream serves them all: from the least any holds, and from 0 when any holds none.
        common = set.intersection(*(set(p) for p in per_member)) if per_member else set()
        for index in common:
            self.starts[index] = min((p[index] for p in per_member), key=lambda start: start[0])
        resumed = sum(offset for offset, _ in self.starts.values())
        out: list[Output] = [Accepted(peer, resumed) for peer in self.members.values()]
        for index, f in enumerate(m.files):
            if f.kind == "dir":
                m.verified[index] = ""  # folders are made when the receiver accepts
        # Every file, each round: one the receiver holds whole costs a file-start and a file-end,
        # and a receiver started again learns that way that it has it.
        self.files = [i for i, f in enumerate(m.files) if f.kind == "file" and not (f.stream and i in m.verified)]
        self.file_set = set(self.files)
        m._move("checked")
        return out + self._next_file(now)

    # -- the files -----------------------------------------------------------------

    def _next_file(self, now: float) -> list[Output]:
        m = self.m
        if self.position >= len(self.files):
            m._move("all-sent")
            return self.maybe_complete(now)
        index = self.files[self.position]
        f = m.files[index]
        offset, digest = self.starts.get(index, (0, None))
        self.base[index] = offset
        self.outgoing = Outgoing(index, offset, f.size, digest or m.new_hash())
        out: list[Output] = [
            Send(FileStart(to=peer, transfer=m.transfer, index=index, offset=offset)) for peer in self.members
        ]
        out.append(FileStarted(index, f.name, f.size, offset))
        return out + self.pump(now)

    def pump(self, now: float) -> list[Output]:
        """Ask for the next chunk if the window has room for it."""
        m = self.m
        go = self.outgoing
        if m.state is not SenderState.SENDING or go is None or self.reading is not None:
            return []
        if go.size is not None and go.offset >= go.size:
            return self._file_end(go, go.offset, now)
        n = m.limits.chunk_size if go.size is None else min(m.limits.chunk_size, go.size - go.offset)
        if self.sent - self.acked + n > m.limits.window:
            # In a fan-out, a receiver that acknowledges nothing for peer_timeout while the others wait is dropped.
            if m.fanout and len(self.members) > 1 and self.credit_deadline is None:
                self.credit_deadline = now + m.limits.peer_timeout
            return []
        self.credit_deadline = None
        self.reading = Read(m.epoch, go.index, go.offset, n)
        return [self.reading]

    def data_read(self, read: Read, data: bytes | memoryview, now: float) -> list[Output]:
        m = self.m
        go = self.outgoing
        if read != self.reading or go is None:
            raise LocalProtocolError("data for a read that was not asked for")
        self.reading = None
        if len(data) > read.n:
            raise LocalProtocolError(f"{len(data)} bytes for a read of {read.n}")
        f = m.files[read.index]
        if go.size is None and not data:
            m.stream_sizes[read.index] = go.offset
            m.total += go.offset
            return self._file_end(go, go.offset, now)
        if go.size is not None and len(data) != read.n:
            error = LocalFileError(f"{f.name} changed while it was being sent (it got shorter)")
            return m.cancel(str(error)) + m.fail(error)
        go.digest.update(data)
        to = 0 if m.fanout else next(iter(self.members))  # 0: the relay fans it out to those who accepted
        chunk = Chunk(m.peer_id, to, m.transfer, read.index, go.offset, memoryview(data))
        go.offset += len(data)
        self.sent += len(data)
        return [SendChunk(chunk), *self.pump(now)]

    def _file_end(self, go: Outgoing, size: int, now: float) -> list[Output]:
        m = self.m
        sha = go.digest.hexdigest()
        m.hashes[go.index] = sha
        self.outgoing = None
        self.position += 1
        out: list[Output] = [
            Send(FileEnd(to=peer, transfer=m.transfer, index=go.index, size=size, sha256=sha)) for peer in self.members
        ]
        return out + self._next_file(now)

    def _verified(self, peer: int, item: Verified, now: float) -> list[Output]:
        m = self.m
        index = item.index
        if index >= len(m.files) or index in self.member_verified[peer]:
            return []
        expected = m.hashes.get(index)
        if expected is None or item.sha256 != expected:
            error = IntegrityFailure(f"the receiver verified {m.files[index].name} against the wrong hash")
            return self.misbehaved(peer, error, now)
        self.member_verified[peer].add(index)
        out: list[Output] = []
        if m.fanout:
            out.append(PeerFileVerified(peer, index, m.files[index].name))
        if index in m.verified or not all(index in done for done in self.member_verified.values()):
            return out + self.maybe_complete(now)  # confirmed again by one back late, or others still writing
        m.verified[index] = expected
        m.held += self.size(index)
        out.append(FileVerified(index, m.files[index].name, self.size(index), expected))
        return out + self.maybe_complete(now)

    def maybe_complete(self, now: float) -> list[Output]:
        if self.m.state is not SenderState.FINISHING:
            return []
        if not all(len(done) >= len(self.files) for done in self.member_verified.values()):
            return []
        return self.m.round_complete(now)

    # -- receivers that fail ------------------------------------------------------------

    def misbehaved(self, peer: int, error: XferError, now: float) -> list[Output]:
        """One receiver failed: the end of a lone transfer, but only of that receiver's part of a fan-out."""
        if self.m.fanout:
            return self.drop(peer, str(error), now)
        return self.m.fail(error)

    def drop(self, peer: int, why: str, now: float) -> list[Output]:
        """A receiver of a fan-out is gone; the others go on without it."""
        m = self.m
        info = self.members.pop(peer, None) or self.chosen.get(peer)
        self.acks.pop(peer, None)
        self.member_verified.pop(peer, None)
        if peer not in self.answers:
            self.answers[peer] = Reject(transfer=m.transfer, reason=why[:MAX_REASON_CHARS], code="gone")
        out: list[Output] = [ReceiverFailed(peer, info, why)]
        if not self.members and self.answers.keys() >= self.chosen.keys():
            return out + m.fail(PeerGone("every receiver left or failed"))
        out += self.progress()
        return out + self._answered(now) + self.pump(now) + self.maybe_complete(now)

    def credit_timeout(self, now: float) -> list[Output]:
        if self.credit_deadline is None or now < self.credit_deadline:
            return []
        self.credit_deadline = None  # passed: never asked for again (the shell would spin)
        if not self.acks:
            return []
        slowest = min(self.acks, key=lambda peer: self.acks[peer])
        return self.drop(slowest, f"it acknowledged nothing for {self.m.limits.peer_timeout:.0f} s", now)

    # -- where we are ---------------------------------------------------------------------

    def size(self, index: int) -> int:
        """A file's size; a stream's is known once it was read to the end."""
        size = self.m.files[index].size
        return size if size is not None else self.m.stream_sizes.get(index, 0)

    def current(self) -> tuple[int, int]:
        """The first file not yet verified, and how much of it every receiver holds.

        Kept incrementally (a cursor and a running sum): this runs on every ack, and an
        offer may hold thousands of files."""
        m = self.m
        last = len(m.files) - 1
        while self.cursor < last and self.cursor in m.verified:
            if self.cursor in self.file_set:
                self.earlier += self.size(self.cursor) - self.base.get(self.cursor, 0)
            self.cursor += 1
        index = self.cursor
        # Files before it in this round are verified, so what was acked past them belongs to it.
        done = self.base.get(index, 0) + max(self.acked - self.earlier, 0)
        size = m.files[index].size
        return index, done if size is None else min(done, size)

    def where(self) -> str:
        index, done = self.current()
        f = self.m.files[index]
        text = self.m.size_text
        if f.size is None:
            return f"{f.name} ({text(done)})"
        return f"{f.name} ({text(done)} of {text(f.size)})"

    def progress(self) -> list[Output]:
        m = self.m
        index, done = self.current()
        if (self.acked, index) == self.reported and not m.fanout:
            return []
        self.reported = (self.acked, index)
        f = m.files[index]
        # a round for receivers that came back late resends what the others already verified
        held = m.total if len(m.verified) == len(m.files) else m.held + done
        peers = dict(self.acks) if m.fanout else None
        return [Progress(index, f.name, done, f.size, held, m.total, peers)]
