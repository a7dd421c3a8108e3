"""Drive a ``SenderMachine`` in memory, as its shell would, with no socket and no file:
the files are byte strings, reads and prefix checks are answered at once (unless a test
wants to answer them itself), and the clock is a number the test moves."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import replace

from receiver_helpers import sha

from xfer.protocol import LIMITS, Limits
from xfer.protocol.frames import Chunk
from xfer.protocol.machine import Event, Output, Send, SendChunk
from xfer.protocol.messages import (
    Accept,
    Ack,
    Cancel,
    Error,
    FileInfo,
    Message,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Reject,
    ResumePoint,
    Verified,
)
from xfer.protocol.sender import SenderMachine
from xfer.protocol.sender_events import CheckPrefix, Failed, Read, SenderState

TRANSFER = 7
SENDER_ID = 1
SMALL = replace(LIMITS, chunk_size=1000, window=4096, peer_timeout=10.0, reconnect_for=10.0)


def receiver(peer_id: int, name: str = "") -> PeerInfo:
    return PeerInfo(id=peer_id, name=name or f"r{peer_id}", role="receiver")


class SenderDriver:
    """A sender machine and what it asked for so far.

    ``contents[i]`` is file i's bytes; ``None`` makes it a folder; a file listed in
    ``streams`` is offered without a size (standard input)."""

    def __init__(
        self,
        contents: Sequence[bytes | None],
        *,
        peers: Iterable[int] = (2,),
        receivers: int = 1,
        limits: Limits = SMALL,
        streams: Iterable[int] = (),
        auto: bool = True,
        auto_checks: bool | None = None,
        exclude: Iterable[int] = (),
        turn_away: bool = True,
    ) -> None:
        self.contents = list(contents)
        streams = set(streams)
        files = [
            FileInfo(name=f"d{i}", size=0, kind="dir")
            if data is None
            else FileInfo(name=f"f{i}.bin", size=None if i in streams else len(data))
            for i, data in enumerate(self.contents)
        ]
        self.m = SenderMachine(
            files,
            transfer=TRANSFER,
            peer_id=SENDER_ID,
            peers={p: receiver(p) for p in peers},
            receivers=receivers,
            limits=limits,
            exclude=exclude,
            turn_away=turn_away,
        )
        self.now = 0.0
        self.auto = auto  # answer reads at once
        self.auto_checks = auto if auto_checks is None else auto_checks  # and prefix checks
        self.messages: list[Message] = []
        self.chunks: list[Chunk] = []
        self.events: list[Event] = []
        self.reads: deque[Read] = deque()  # asked, not answered (when not auto)
        self.checks: deque[CheckPrefix] = deque()
        self.moves: list[tuple[SenderState, str, SenderState]] = []  # every move the machine made
        move = self.m._move

        def recorded(trigger: str) -> None:
            before = self.m.state
            move(trigger)
            self.moves.append((before, trigger, self.m.state))

        self.m._move = recorded  # type: ignore[method-assign]

    # -- feeding the machine ----------------------------------------------------

    def run(self, outputs: list[Output]) -> list[Output]:
        """Take the machine's outputs, answering its reads and checks (when ``auto``) until it asks for nothing more."""
        seen: list[Output] = []
        todo = deque(outputs)
        while todo:
            output = todo.popleft()
            seen.append(output)
            if isinstance(output, Send):
                self.messages.append(output.message)
            elif isinstance(output, SendChunk):
                self.chunks.append(output.chunk)
            elif isinstance(output, Event):
                self.events.append(output)
            elif isinstance(output, Read):
                if self.auto:
                    todo.extend(self.m.data_read(output, self.read_bytes(output), self.now))
                else:
                    self.reads.append(output)
            elif isinstance(output, CheckPrefix):
                if self.auto_checks:
                    todo.extend(self.m.prefix_checked(output, self.prefix(output), self.now))
                else:
                    self.checks.append(output)
        return seen

    def read_bytes(self, read: Read) -> bytes:
        data = self.contents[read.index]
        assert data is not None
        return data[read.offset : read.offset + read.n]

    def prefix(self, check: CheckPrefix) -> hashlib._Hash:
        data = self.contents[check.index]
        assert data is not None
        return hashlib.sha256(data[: check.offset])

    def start(self) -> list[Output]:
        return self.run(self.m.start(self.now))

    def recv(self, message: Message) -> list[Output]:
        return self.run(self.m.receive(message, self.now))

    def answer_read(self, data: bytes | None = None) -> list[Output]:
        read = self.reads.popleft()
        return self.run(self.m.data_read(read, self.read_bytes(read) if data is None else data, self.now))

    def answer_check(self) -> list[Output]:
        check = self.checks.popleft()
        return self.run(self.m.prefix_checked(check, self.prefix(check), self.now))

    def tick(self, seconds: float) -> list[Output]:
        self.now += seconds
        return self.run(self.m.tick(self.now))

    def lose_link(self) -> list[Output]:
        return self.run(self.m.link_lost(self.now))

    def link_back(self, peers: Iterable[int] = ()) -> list[Output]:
        return self.run(self.m.link_back(SENDER_ID + 100, {p: receiver(p) for p in peers}, self.now))

    # -- what a receiver says ------------------------------------------------------

    def join(self, peer: int) -> list[Output]:
        return self.recv(PeerJoined(peer=receiver(peer)))

    def leave(self, peer: int) -> list[Output]:
        return self.recv(PeerLeft(peer_id=peer))

    def accept(self, peer: int = 2, resume: Iterable[tuple[int, int, str]] = ()) -> list[Output]:
        points = tuple(ResumePoint(index=i, offset=o, sha256=s) for i, o, s in resume)
        return self.recv(Accept(sender=peer, transfer=TRANSFER, resume=points))

    def reject(self, peer: int = 2, code: str = "declined", reason: str = "") -> list[Output]:
        return self.recv(Reject(sender=peer, transfer=TRANSFER, code=code, reason=reason))

    def ack(self, peer: int = 2, n: int | None = None) -> list[Output]:
        return self.recv(Ack(sender=peer, transfer=TRANSFER, bytes=self.m.sent if n is None else n))

    def verify(self, peer: int = 2, index: int = 0, digest: str | None = None) -> list[Output]:
        data = (self.contents[index] if index < len(self.contents) else None) or b""
        return self.recv(Verified(sender=peer, transfer=TRANSFER, index=index, sha256=digest or sha(data)))

    def error(self, peer: int = 2, code: str = "io-error", index: int | None = None) -> list[Output]:
        return self.recv(Error(sender=peer, transfer=TRANSFER, code=code, message="broken", index=index))

    def cancel(self, peer: int = 2) -> list[Output]:
        return self.recv(Cancel(sender=peer, transfer=TRANSFER, reason="stop"))

    def finish(self, peers: Iterable[int] = (2,)) -> list[Output]:
        """Every peer acknowledges everything and verifies every file (until all is sent)."""
        out: list[Output] = []
        for _ in range(10_000):
            if self.m.finished or not self.m.round.members:
                break
            for peer in list(peers):
                if peer in self.m.round.members:
                    out += self.ack(peer)
            if self.m.state.name == "FINISHING":
                for peer in list(peers):
                    if peer in self.m.round.members and self.m.round.acks[peer] < self.m.sent:
                        out += self.ack(peer)
                for peer in list(peers):
                    for index in self.m.round.files:
                        if peer in self.m.round.members:
                            out += self.verify(peer, index, self.m.hashes[index])
        return out

    # -- what came out ------------------------------------------------------------

    def sent_of(self, kind: type) -> list[Message]:
        return [m for m in self.messages if isinstance(m, kind)]

    def events_of(self, kind: type) -> list[Event]:
        return [e for e in self.events if isinstance(e, kind)]

    def failure(self) -> Exception:
        failed = self.events_of(Failed)
        assert len(failed) == 1, self.events
        error: Exception = failed[0].error  # type: ignore[attr-defined]
        return error

    def data_sent(self, index: int = 0) -> bytes:
        return b"".join(bytes(c.payload) for c in self.chunks if c.index == index)
