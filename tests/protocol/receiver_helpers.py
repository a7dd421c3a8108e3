"""Drive a ``ReceiverMachine`` in memory: a sender's messages in, its actions carried out
on a dict of byte strings instead of a disk (as h11's ``ConnectionPair`` does for HTTP)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from xfer.protocol import (
    Cancel,
    Chunk,
    FileEnd,
    FileInfo,
    FileStart,
    Message,
    Offer,
    PeerLeft,
    ResumePoint,
)
from xfer.protocol.machine import Event, Output, Send
from xfer.protocol.receiver import ReceiverMachine
from xfer.protocol.receiver_outputs import Close, Discard, OpenPartial, Place, Write

ME, SENDER, OTHER, TRANSFER = 1, 2, 3, 77


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def offer(*files: tuple[str, int | None], sender: int = SENDER, window: int | None = None, **kw: Any) -> Offer:
    infos = tuple(FileInfo(name=n, size=s, kind="dir" if s == 0 and n.endswith("/") else "file") for n, s in files)
    return Offer(to=ME, sender=sender, transfer=kw.get("transfer", TRANSFER), files=infos, window=window)


def start(index: int, offset: int = 0, sender: int = SENDER) -> FileStart:
    return FileStart(to=ME, sender=sender, transfer=TRANSFER, index=index, offset=offset)


def chunk(index: int, offset: int, data: bytes, sender: int = SENDER, transfer: int = TRANSFER) -> Chunk:
    return Chunk(sender, ME, transfer, index, offset, memoryview(data))


def end(index: int, size: int, digest: str, sender: int = SENDER) -> FileEnd:
    return FileEnd(to=ME, sender=sender, transfer=TRANSFER, index=index, size=size, sha256=digest)


def cancel(reason: str = "") -> Cancel:
    return Cancel(to=ME, sender=SENDER, transfer=TRANSFER, reason=reason)


def left(peer: int = SENDER) -> PeerLeft:
    return PeerLeft(peer_id=peer)


@dataclass
class Driver:
    """A machine and an in-memory disk; ``auto`` carries out each action as a shell would.

    ``writes_later``: writes are queued, and ``flush`` reports them written (as the relay's
    download bridge does when a phone is slow).
    """

    machine: ReceiverMachine = field(default_factory=ReceiverMachine)
    partials: dict[int, bytearray] = field(default_factory=dict)  # what a disk holds of each file
    final: dict[int, bytes] = field(default_factory=dict)
    sent: list[Message] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    outputs: list[Output] = field(default_factory=list)
    writes_later: bool = False
    pending: list[Write] = field(default_factory=list)

    def feed(self, *items: Message | Chunk) -> list[Output]:
        out: list[Output] = []
        for item in items:
            out += self.carry(self.machine.receive(item))
        return out

    def carry(self, outputs: list[Output]) -> list[Output]:
        done: list[Output] = []
        for output in outputs:
            done.append(output)
            self.outputs.append(output)
            if isinstance(output, Send):
                self.sent.append(output.message)
            elif isinstance(output, Event):
                self.events.append(output)
            elif isinstance(output, OpenPartial):
                held = self.partials.setdefault(output.index, bytearray())
                del held[output.offset :]
                if output.offset:
                    digest = hashlib.sha256(bytes(held))
                    done += self.carry(self.machine.opened(output.index, digest))
            elif isinstance(output, Write):
                if self.writes_later:
                    self.pending.append(output)
                else:
                    done += self._write(output)
            elif isinstance(output, Place):
                if self.writes_later and any(w.index == output.index for w in self.pending):
                    self.pending.append(Write(output.index, -1, memoryview(b"")))  # a marker: place after the writes
                    continue
                self.final[output.index] = bytes(self.partials.pop(output.index))
                done += self.carry(self.machine.placed(output.index, f"/in/{self.machine.name(output.index)}"))
            elif isinstance(output, Discard):
                self.partials.pop(output.index, None)
            elif isinstance(output, Close):
                pass  # the partial stays
        return done

    def _write(self, w: Write) -> list[Output]:
        data = self.partials[w.index]
        assert len(data) == w.offset, "writes come in order"
        data += w.data
        return self.carry(self.machine.wrote(w.index, len(w.data)))

    def flush(self, limit: int | None = None) -> list[Output]:
        """Report queued writes done (up to ``limit`` of them); places that waited on them follow."""
        out: list[Output] = []
        while self.pending and (limit is None or limit > 0):
            w = self.pending.pop(0)
            if w.offset == -1:
                out += self.carry([Place(w.index, "")])
                continue
            out += self._write(w)
            limit = None if limit is None else limit - 1
        return out

    def sent_of(self, kind: type) -> list[Any]:
        return [m for m in self.sent if isinstance(m, kind)]

    def events_of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]

    def receive_file(self, index: int, data: bytes, size: int = 64, offset: int = 0) -> None:
        """A sender's honest file-start, chunks and file-end for ``data`` (from ``offset``)."""
        self.feed(start(index, offset))
        for at in range(offset, len(data), size):
            self.feed(chunk(index, at, data[at : at + size]))
        self.feed(end(index, len(data), sha(data)))


def accepted(driver: Driver, *files: tuple[str, int | None], points: dict[int, ResumePoint] | None = None) -> Driver:
    driver.feed(offer(*files))
    driver.carry(driver.machine.accept(points or {}))
    return driver
