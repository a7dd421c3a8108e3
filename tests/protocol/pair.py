"""A sender, the relay's ``Room`` and receivers wired together in memory (h11's
``ConnectionPair`` for xfer): no sockets, no disk, no asyncio, no clock but a number.

Every frame crosses the wire as the relay sees it: a peer's message is serialized, the
relay parses it, stamps its sender, lets the ``Room`` note it (fan-out bookkeeping) and
asks the ``Room`` for its ``targets``; a chunk is encoded and its header checked. The
peers parse what reaches them. Each connection has two lanes (to the relay, from it),
each in order, as a WebSocket keeps them; ``step(pick)`` delivers the head of one lane,
so a test (or Hypothesis) chooses how the lanes interleave.

The ends play their shells' parts: the sender reads its files from byte strings and
answers prefix checks at once; a receiver (``receiver_helpers.Driver``) writes into a
dict of byte strings that outlives its process, so a receiver started again resumes
from what it holds, as ``transfer/store.py`` does on disk.

Faults go between any two steps: ``lose_link``/``link_back``, ``restart`` (the process
ends, a new one starts with the same disk), ``drop``/``duplicate``/``tamper`` a frame in
flight, ``advance`` the clock; a receiver may decline, have too little space, write slowly
or not at all.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from receiver_helpers import Driver, sha

from xfer.protocol import LIMITS, Limits
from xfer.protocol.errors import Declined, LocalFileError, PeerGone, RemoteProtocolError, XferError
from xfer.protocol.frames import Chunk, encode_chunk, parse_chunk, parse_header
from xfer.protocol.machine import Event, Output, Send, SendChunk
from xfer.protocol.messages import (
    Error,
    FileInfo,
    Message,
    PeerJoined,
    PeerLeft,
    ResumePoint,
    parse_message,
    serialize,
)
from xfer.protocol.receiver import ReceiverMachine, ReceiverState
from xfer.protocol.receiver_outputs import (
    Accepted,
    Close,
    Completed,
    Discard,
    Interrupted,
    OfferReceived,
    OfferRenewed,
    PeerDeparted,
    Write,
)
from xfer.protocol.room import Joined, Room
from xfer.protocol.sender import SenderMachine
from xfer.protocol.sender_events import CheckPrefix, Read

ROOM = "r" * 32
# Small numbers so that a few kilobytes cross many chunks, windows and acks.
PAIR_LIMITS = replace(LIMITS, chunk_size=512, window=2048, ack_every=512, peer_timeout=10.0, joins_per_minute=1_000_000)

Entry = tuple[str, "bytes | None"]  # a name and its bytes; None: a folder


@dataclass(eq=False)
class Conn:
    """One WebSocket between an end and the relay; the Room's handle for it."""

    end: End
    session: str
    peer_id: int = 0
    alive: bool = True


@dataclass
class Frame:
    conn: Conn
    up: bool  # to the relay (else from it)
    data: str | bytes | None  # None: the connection closes (the relay sees the peer leave)


class End:
    """What both ends share: a name, a connection, what they were told."""

    def __init__(self, pair: Pair, name: str, role: str) -> None:
        self.pair = pair
        self.name = name
        self.role = role
        self.conn: Conn | None = None
        self.events: list[Event] = []
        self.exited = False  # the process ended (finished, failed or killed)

    def send(self, message: Message) -> None:
        if self.conn is not None and self.conn.alive:
            self.pair.wire.append(Frame(self.conn, True, serialize(message)))

    def send_chunk(self, chunk: Chunk) -> None:
        if self.conn is not None and self.conn.alive:
            data = encode_chunk(chunk.sender, chunk.to, chunk.transfer, chunk.index, chunk.offset, bytes(chunk.payload))
            self.pair.wire.append(Frame(self.conn, True, data))

    def parse(self, data: str | bytes) -> Message | Chunk:
        return parse_chunk(data) if isinstance(data, bytes) else parse_message(data)

    def hang_up(self) -> None:
        """The connection ends: the relay sees the peer leave after what it already sent."""
        conn, self.conn = self.conn, None
        if conn is not None and conn.alive:
            self.pair.wire.append(Frame(conn, True, None))
            conn.alive = False

    def exit(self) -> None:
        self.exited = True
        self.hang_up()

    # overridden
    def deliver(self, item: Message | Chunk) -> None: ...
    def check_exit(self) -> None: ...
    def deadline(self) -> float | None: ...
    def tick(self) -> None: ...


class SenderEnd(End):
    """The sending shell: files are byte strings, read and hashed at once."""

    def __init__(self, pair: Pair, entries: Sequence[Entry], streams: Iterable[int], receivers: int) -> None:
        super().__init__(pair, "sender", "sender")
        self.contents = [data for _, data in entries]
        streams = set(streams)
        self.files = tuple(
            FileInfo(name=name, size=0, kind="dir")
            if data is None
            else FileInfo(name=name, size=None if i in streams else len(data))
            for i, (name, data) in enumerate(entries)
        )
        self.receivers = receivers
        self.transfer = 0
        self.machine: SenderMachine | None = None
        self.in_flight_max = 0  # the most unacknowledged bytes ever in flight
        self.chunks_sent = 0

    def start(self) -> None:
        """A new process: a new transfer id, the same files."""
        self.exited = False
        self.transfer += 1
        joined = self.pair.join(self)
        peers = {p.id: p for p in joined.others}
        self.machine = SenderMachine(
            self.files,
            transfer=self.transfer,
            peer_id=joined.peer.id,
            peers=peers,
            receivers=self.receivers,
            limits=self.pair.limits,
        )
        self.carry(self.machine.start(self.pair.now))

    @property
    def m(self) -> SenderMachine:
        assert self.machine is not None
        return self.machine

    def carry(self, outputs: list[Output]) -> None:
        todo = list(outputs)
        while todo:
            output = todo.pop(0)
            now = self.pair.now
            if isinstance(output, Send):
                self.send(output.message)
            elif isinstance(output, SendChunk):
                self.chunks_sent += 1
                rnd = self.m.round  # what is unacknowledged as this chunk leaves
                self.in_flight_max = max(self.in_flight_max, rnd.sent - rnd.acked)
                self.send_chunk(output.chunk)
            elif isinstance(output, Event):
                self.events.append(output)
            elif isinstance(output, Read):
                data = self.contents[output.index] or b""
                todo[:0] = self.m.data_read(output, data[output.offset : output.offset + output.n], now)
            elif isinstance(output, CheckPrefix):
                data = self.contents[output.index] or b""
                todo[:0] = self.m.prefix_checked(output, _hashed(data[: output.offset]), now)
        self.check_exit()

    def deliver(self, item: Message | Chunk) -> None:
        self.carry(self.m.receive(item, self.pair.now))

    def check_exit(self) -> None:
        if self.machine is not None and self.m.finished and not self.exited:
            self.exit()

    def deadline(self) -> float | None:
        return None if self.exited or self.machine is None else self.m.deadline()

    def tick(self) -> None:
        self.carry(self.m.tick(self.pair.now))

    def lose_link(self) -> None:
        self.hang_up()
        self.carry(self.m.link_lost(self.pair.now))

    def link_back(self) -> None:
        joined = self.pair.join(self)
        self.carry(self.m.link_back(joined.peer.id, {p.id: p for p in joined.others}, self.pair.now))


class Disk(Driver):
    """A receiver's shell on an in-memory disk (``Driver``), its sends put on the wire."""

    end: ReceiverEnd

    def carry(self, outputs: list[Output]) -> list[Output]:
        done: list[Output] = []
        for output in outputs:
            if isinstance(output, Send):
                self.end.send(output.message)
            elif isinstance(output, (Close, Discard)):
                self._settle(output.index, keep=isinstance(output, Close))
            elif isinstance(output, Write) and self.end.space is not None:
                self.end.space -= len(output.data)
                if self.end.space < 0:
                    done.append(output)
                    done += self.carry(self.machine.fail(LocalFileError("the disk is full", "disk-full")))
                    break
            done += super().carry([output])
            if isinstance(output, (OfferReceived, OfferRenewed)):
                done += self.end.decide(output)
            elif isinstance(output, Interrupted):
                self.end.away_since = self.end.pair.now
            elif isinstance(output, PeerDeparted) and self.machine.complete and output.peer_id == self.machine.sender:
                self.end.away_since = self.end.pair.now  # gone before its done: wait for it, as for a round
            elif isinstance(output, Completed):
                self.end.completed_at = self.end.pair.now
            elif isinstance(output, Accepted):
                self.end.away_since = None
        return done

    def _settle(self, index: int, *, keep: bool) -> None:
        """Writes queued for a file that closes land on disk unreported (or go, if it is discarded)."""
        for w in [w for w in self.pending if w.index == index]:
            self.pending.remove(w)
            if keep and w.offset >= 0 and index in self.partials:
                self.partials[index] += w.data


class ReceiverEnd(End):
    """A receiving shell. ``answer``: "accept" or "decline"; ``space``: bytes it may write
    (None: no limit); ``slow``: writes wait for ``step`` to do them; ``stuck``: they never happen."""

    def __init__(
        self, pair: Pair, name: str, *, answer: str = "accept", space: int | None = None, slow: bool = False
    ) -> None:
        super().__init__(pair, name, "receiver")
        self.answer = answer
        self.space = space
        self.slow = slow
        self.stuck = False
        self.disk = Disk(ReceiverMachine(limits=pair.limits), writes_later=slow)
        self.disk.end = self
        self.folders: dict[int, str] = {}
        self.away_since: float | None = None
        self.completed_at = 0.0  # when the machine last said Completed
        self.error: XferError | None = None  # why the shell stopped, when the machine did not say

    @property
    def m(self) -> ReceiverMachine:
        return self.disk.machine

    def start(self) -> None:
        """A new process with the same disk: a new machine (what was queued to write is lost)."""
        self.exited = False
        self.error = None
        self.away_since = None
        self.disk.machine = ReceiverMachine(limits=self.pair.limits)
        self.disk.pending.clear()
        self.pair.join(self)

    def decide(self, event: OfferReceived | OfferRenewed) -> list[Output]:
        """The person's answer (a new offer) and the store's resume points, as the shell gives them."""
        if isinstance(event, OfferReceived) and self.answer != "accept":
            self.error = Declined("you declined the offer")
            return self.disk.carry(self.m.reject("declined", "declined"))
        offer = event.offer
        points: dict[int, ResumePoint] = {}
        placed: dict[int, str] = {}
        for index, f in enumerate(offer.files):
            held = self.disk.final.get(index)
            if held is None:
                held = bytes(self.disk.partials.get(index, b""))
            elif f.size is not None:
                placed[index] = f"/in/{self.m.name(index)}"
            if f.kind == "file" and f.size is not None and held and len(held) <= f.size:
                points[index] = ResumePoint(index=index, offset=len(held), sha256=sha(held))
        needed = offer.total - sum(p.offset for p in points.values())
        if self.space is not None and needed > self.space:
            self.error = LocalFileError("not enough space", "no-space")
            return self.disk.carry(self.m.reject(f"needs {needed} bytes", "no-space"))
        folders = {i: f"/in/{self.m.name(i)}" for i, f in enumerate(offer.files) if f.kind == "dir"}
        self.folders.update(folders)
        folders = {i: path for i, path in folders.items() if i not in self.m.saved}
        return self.disk.carry(self.m.accept(points, placed=placed, folders=folders))

    def deliver(self, item: Message | Chunk) -> None:
        if not isinstance(item, Chunk):  # the shell's writes finish before a message can interrupt them
            while self.write_one():
                pass
        if self.exited:
            return
        try:
            outputs = self.m.receive(item)
        except RemoteProtocolError as exc:  # the shell tells the sender why, then stops
            self.error = exc
            outputs = self.m.fail(exc)
        self.disk.carry(outputs)
        self.check_exit()

    def broken(self, exc: RemoteProtocolError) -> None:
        """A frame that does not parse: the shell stops as it does for a broken rule."""
        self.error = exc
        self.disk.carry(self.m.fail(exc))
        self.check_exit()

    def check_exit(self) -> None:
        # Holding everything, the shell waits for the sender's done (bounded: ``deadline``).
        if not self.exited and (self.m.state is ReceiverState.FAILED or self.m.sender_done):
            self.exit()

    @property
    def blocked(self) -> bool:
        """A write that does not finish holds up the whole shell: it reads no more frames."""
        return self.stuck and bool(self.disk.pending)

    def write_one(self, *, force: bool = False) -> bool:
        if not self.disk.pending or (self.stuck and not force) or self.exited:
            return False
        self.disk.flush(1)
        self.check_exit()
        return True

    def deadline(self) -> float | None:
        if self.exited:
            return None
        if self.away_since is not None:
            return self.away_since + self.pair.limits.peer_timeout
        if self.m.state is ReceiverState.DONE:
            return self.completed_at + self.pair.limits.done_wait
        return None

    def tick(self) -> None:
        deadline = self.deadline()
        if deadline is not None and self.pair.now >= deadline:
            if not self.m.complete:  # holding everything, the shell ends well without the sender's done
                self.error = PeerGone("the sender left and did not come back")
            self.exit()

    def lose_link(self) -> None:
        while self.write_one(force=True):  # the shell notices the loss once its writes are done
            pass
        self.hang_up()
        self.disk.carry(self.m.link_lost())
        if self.m.complete and self.away_since is None:
            self.away_since = self.pair.now

    def link_back(self) -> None:
        self.pair.join(self)

    # -- what it holds -----------------------------------------------------------------

    @property
    def done(self) -> bool:
        return self.m.state is ReceiverState.DONE

    def files(self) -> dict[int, bytes]:
        return dict(self.disk.final)


class Pair:
    """A sender, a Room and receivers; see the module's docstring."""

    def __init__(
        self,
        entries: Sequence[Entry],
        *,
        receivers: int = 1,
        fanout: int | None = None,
        streams: Iterable[int] = (),
        limits: Limits = PAIR_LIMITS,
        options: Mapping[int, Mapping[str, Any]] = {},
    ) -> None:
        """``receivers`` in the room; ``fanout``: how many the sender waits for (all of them by
        default); ``options[i]``: receiver i's ``answer``, ``space`` or ``slow``."""
        ids = itertools.count(2)
        self.limits = limits
        self.room: Room[Conn] = Room(limits, new_id=lambda: next(ids))
        self.now = 0.0
        self.wire: list[Frame] = []
        self.steps = 0
        self.sessions = itertools.count(1)
        self.sender = SenderEnd(self, entries, streams, fanout if fanout is not None else receivers)
        self.receivers = [ReceiverEnd(self, f"r{i}", **options.get(i, {})) for i in range(receivers)]
        self.session_of: dict[str, str] = {}

    # -- the relay ------------------------------------------------------------------------

    def join(self, end: End) -> Joined[Conn]:
        session = self.session_of.setdefault(end.name, f"session-{next(self.sessions)}")
        conn = Conn(end, session)
        result = self.room.join(
            ROOM, create=True, address=end.name, name=end.name, role=end.role, client="pair",
            handle=conn, now=self.now, session=session,
        )  # fmt: skip
        assert isinstance(result, Joined), result
        conn.peer_id = result.peer.id
        end.conn = conn
        if result.replaced is not None:  # its stale connection: the others learn it left
            result.replaced.handle.alive = False
            self.broadcast(PeerLeft(peer_id=result.replaced.info.id), but=conn)
        self.broadcast(PeerJoined(peer=result.peer), but=conn)
        return result

    def broadcast(self, message: Message, but: Conn) -> None:
        for handle in self.room.local_peers(ROOM, but=but.peer_id):
            self.down(handle, serialize(message))

    def down(self, conn: Conn, data: str | bytes) -> None:
        if conn.alive:
            self.wire.append(Frame(conn, False, data))

    def route(self, conn: Conn, data: str | bytes) -> None:
        """What ``relay/app.py`` does with one frame from a peer."""
        me = conn.peer_id
        transfer = None
        if isinstance(data, bytes):
            sender, to, transfer = parse_header(data)
            assert sender == me, "a peer sent a chunk in another's name"
            payload: str | bytes = data
        else:
            message = parse_message(data, max_size=self.limits.max_control_frame)
            assert message.routed, message
            to = message.to or 0
            payload = serialize(replace(message, sender=me))
            self.room.note(ROOM, me, message)
        targets = self.room.targets(ROOM, me, to or None, transfer)
        if targets is None:
            error = Error(code="no-such-peer", message="that peer is not in the room")
            self.down(conn, serialize(error))
            return
        for target in targets:
            self.down(target, payload)

    def seated(self, conn: Conn) -> bool:
        member = self.room.member(ROOM, conn.peer_id)
        return member is not None and member.handle is conn

    def leave(self, conn: Conn) -> None:
        left = self.room.leave(ROOM, conn.peer_id)
        if left is not None:
            for member in left.remaining:
                self.down(member.handle, serialize(PeerLeft(peer_id=conn.peer_id)))

    # -- running --------------------------------------------------------------------------

    @property
    def ends(self) -> list[End]:
        return [self.sender, *self.receivers]

    def start(self) -> Pair:
        """The receivers join, then the sender: it offers once enough are in the room."""
        for r in self.receivers:
            r.start()
        self.sender.start()
        return self

    def lanes(self) -> list[int]:
        """The index in ``wire`` of each lane's head (a lane: one connection, one direction)."""
        seen: set[tuple[int, bool]] = set()
        heads = []
        for i, frame in enumerate(self.wire):
            lane = (id(frame.conn), frame.up)
            end = frame.conn.end
            if not frame.up and isinstance(end, ReceiverEnd) and end.blocked:
                continue
            if lane not in seen:
                seen.add(lane)
                heads.append(i)
        return heads

    def step(self, pick: int = 0) -> bool:
        """Deliver one frame (or do one slow write); False when there is nothing to do."""
        heads = self.lanes()
        writers = [r for r in self.receivers if r.disk.pending and not r.stuck and not r.exited]
        choices = len(heads) + len(writers)
        if not choices:
            return False
        self.steps += 1
        pick %= choices
        if pick >= len(heads):
            return writers[pick - len(heads)].write_one()
        frame = self.wire.pop(heads[pick])
        if frame.up:
            if frame.data is None:
                self.leave(frame.conn)
            elif self.seated(frame.conn):  # sent before it hung up, unless it was replaced meanwhile
                self.route(frame.conn, frame.data)
            return True
        end = frame.conn.end
        if not frame.conn.alive or end.exited or frame.data is None:
            return True
        try:
            item = end.parse(frame.data)
        except RemoteProtocolError as exc:
            assert isinstance(end, ReceiverEnd), exc  # only receivers' frames are changed in flight
            end.broken(exc)
            return True
        end.deliver(item)
        return True

    def settle(self) -> Pair:
        """Step until nothing is in flight, with no time passing."""
        while self.step():
            pass
        return self

    def next_deadline(self) -> float | None:
        deadlines = [d for d in (end.deadline() for end in self.ends) if d is not None]
        return min(deadlines, default=None)

    def advance(self, seconds: float) -> None:
        """Time passes: each end whose deadline came is told."""
        self.now += seconds
        for end in self.ends:
            deadline = end.deadline()
            if deadline is not None and deadline <= self.now:
                end.tick()

    def run(
        self,
        max_steps: int = 100_000,
        *,
        picks: Callable[[], int] | None = None,
        faults: Iterable[tuple[int, Callable[[Pair], object]]] = (),
    ) -> Pair:
        """Step until nothing is left to do, letting time pass to each deadline when idle.

        ``picks`` chooses the lane of each step; ``faults`` are ``(step, fault)``, applied
        before that step (or as soon as all is idle: a link comes back before time passes)."""
        schedule = sorted(faults, key=lambda fault: fault[0])
        for _ in range(max_steps):
            while schedule and schedule[0][0] <= self.steps:
                schedule.pop(0)[1](self)
            if self.step(picks() if picks else 0):
                continue
            if schedule:
                schedule.pop(0)[1](self)
                continue
            deadline = self.next_deadline()
            if deadline is None:
                return self
            self.advance(max(deadline - self.now, 0.0))
        raise AssertionError(f"no end after {max_steps} steps")

    # -- faults -------------------------------------------------------------------------

    def frame(self, pick: int, *, chunks: bool = False) -> Frame | None:
        """The ``pick``-th frame in flight (among chunks only, if asked)."""
        frames = [f for f in self.wire if f.data is not None and (isinstance(f.data, bytes) or not chunks)]
        return frames[pick % len(frames)] if frames else None

    def drop(self, pick: int) -> None:
        frame = self.frame(pick)
        if frame is not None:
            self.wire.remove(frame)

    def duplicate(self, pick: int) -> None:
        frame = self.frame(pick)
        if frame is not None:
            self.wire.insert(self.wire.index(frame) + 1, Frame(frame.conn, frame.up, frame.data))

    def tamper(self, pick: int, at: int = 0) -> bool:
        """Flip one byte of a chunk's data in flight (its header left as it was)."""
        frame = self.frame(pick, chunks=True)
        if frame is None or not isinstance(frame.data, bytes):
            return False
        data = bytearray(frame.data)
        header = len(data) - len(parse_chunk(frame.data).payload)
        if header == len(data):
            return False
        data[header + at % (len(data) - header)] ^= 0xFF
        frame.data = bytes(data)
        return True

    def end(self, who: str) -> SenderEnd | ReceiverEnd:
        return self.sender if who == "sender" else self.receivers[int(who[1:])]

    def lose_link(self, who: str, *, abrupt: bool = False) -> None:
        """``abrupt``: what was in flight on that connection, either way, is lost with it."""
        end = self.end(who)
        if end.conn is not None and not end.exited:
            if abrupt:
                self.wire = [f for f in self.wire if f.conn is not end.conn]
            end.lose_link()

    def link_back(self, who: str) -> None:
        end = self.end(who)
        if end.conn is None and not end.exited and (end is not self.sender or self.sender.machine is not None):
            end.link_back()

    def restart(self, who: str) -> None:
        """The process ends (killed) and a new one starts, with the same files or disk."""
        end = self.end(who)
        if isinstance(end, SenderEnd) and end.machine is not None and end.m.finished:
            return  # finished for good: nothing to start again
        if isinstance(end, ReceiverEnd) and end.done:
            return
        end.exit()
        end.start()

    # -- what came of it ----------------------------------------------------------------------

    def events(self, who: str, kind: type) -> list[object]:
        return [e for e in self.end(who).events + _machine_events(self.end(who)) if isinstance(e, kind)]


def _machine_events(end: End) -> list[Event]:
    return end.disk.events if isinstance(end, ReceiverEnd) else []


def _hashed(data: bytes) -> hashlib._Hash:
    return hashlib.sha256(data)


__all__ = ["PAIR_LIMITS", "Pair", "ReceiverEnd", "SenderEnd"]
