"""The receiving side of a transfer as a state machine: messages and chunks in, actions
and events out, no I/O.

Two shells drive it: ``transfer.receiver`` (files on disk, the person's answer) and the
relay's download bridge (``relay.download``: HTTP responses to a browser page). Every
protocol decision a receiver makes lives here and nowhere else: which sender it follows
(only the peer whose offer it took), chunk order and offsets, never more bytes than
offered, the size at each file-end, the SHA-256 of what arrived, when to acknowledge
(counting only bytes the shell says it wrote), which offsets a file-start may use after
resume points, and what "the same files again" means after an interruption.

The shell feeds it with ``receive(item)`` and the local inputs (``accept``, ``reject``,
``opened``, ``wrote``, ``placed``, ``sender_left``/``link_lost``, ``fail``), and carries
out the returned ``Action``s in order; ``Event``s tell the UI what happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import LocalProtocolError, PeerGone, RemoteProtocolError, RoomError, XferError
from .frames import Chunk
from .limits import LIMITS, Limits
from .machine import Output, Send
from .message_fields import ROOM_CLOSED
from .messages import (
    Accept,
    Ack,
    Cancel,
    Done,
    Error,
    FileEnd,
    FileInfo,
    FileStart,
    Message,
    Offer,
    PeerJoined,
    PeerLeft,
    Reject,
    ResumePoint,
    Text,
    Verified,
)
from .names import safe_relpath
from .receiver_outputs import (
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
from .receiver_states import TRANSITIONS, Digest, ReceiverState


@dataclass
class _Incoming:
    """A file between its file-start and its placing."""

    index: int
    name: str
    size: int | None  # None: a stream, sized by its file-end
    received: int  # the offset the next chunk must have
    written: int  # what the shell says it wrote (or, for a file held whole, what was skipped)
    digest: Digest | None  # None until the shell hashed the prefix of a resumed partial
    held: bool = False  # the file is here whole already: its bytes are counted, not written
    sha256: str = ""  # set at its file-end


@dataclass
class _Saved:
    sha256: str
    size: int
    path: str = ""


@dataclass
class ReceiverMachine:
    """One receiver's side of one offer (and its rounds after interruptions).

    ``rewindable``: what is written can be kept and resumed (False for standard output).
    ``implicit_start``: a chunk at offset 0 of a file not started yet starts it, as if its
    ``file-start`` had come (the relay's download bridge has always taken such senders).
    ``ask_other``: the shell can ask its person whether to take the files from a different
    sender (``OtherSender``); without it such offers are refused at once.
    """

    limits: Limits = LIMITS
    rewindable: bool = True
    implicit_start: bool = False
    ask_other: bool = False
    state: ReceiverState = ReceiverState.WAITING
    offer: Offer | None = None
    parts: list[tuple[str, ...]] = field(default_factory=list)  # each entry's safe relative path
    ack_every: int = 0
    points: dict[int, ResumePoint] = field(default_factory=dict)  # what we said we hold, this round
    placed_before: dict[int, str] = field(default_factory=dict)  # index -> path of a file placed by an earlier run
    saved: dict[int, _Saved] = field(default_factory=dict)
    saved_bytes: int = 0
    current: _Incoming | None = None
    placing: dict[int, _Incoming] = field(default_factory=dict)  # ended and verified, not placed yet
    round_written: int = 0  # bytes written this round: what acks count
    last_ack: int = 0
    away: bool = False  # the sender (or our link) went away; the shell times that out
    round_needed: set[int] = field(default_factory=set)  # files a round after DONE must verify again
    round_verified: set[int] = field(default_factory=set)
    sender_done: bool = False  # the sender's ``done``: it heard every ``verified``
    other: Offer | None = None  # a different sender's offer the person is asked about

    def __post_init__(self) -> None:
        self.ack_every = self.ack_every or self.limits.ack_every

    # -- what the shell asks ---------------------------------------------------------

    @property
    def complete(self) -> bool:
        return self.offer is not None and len(self.saved) == len(self.offer.files)

    @property
    def sender(self) -> int | None:
        return self.offer.sender if self.offer is not None else None

    def name(self, index: int) -> str:
        return "/".join(self.parts[index])

    # -- from the link ------------------------------------------------------------------

    def receive(self, item: Message | Chunk) -> list[Output]:
        """A message or chunk from the link. Raises ``RemoteProtocolError`` when the
        sender broke the protocol (then ``fail`` gives the error message to send)."""
        if isinstance(item, PeerJoined):
            return [PeerArrived(item.peer)]
        if isinstance(item, PeerLeft):
            if self.other is not None and item.peer_id == self.other.sender:
                self.other = None  # nothing to take from it any more
            out: list[Output] = [PeerDeparted(item.peer_id)]
            if item.peer_id == self.sender:
                out += self._interrupt("sender-left")
            return out
        if isinstance(item, Text):
            return [TextReceived(item.sender, item.text)]
        if self.state is ReceiverState.FAILED:
            return []
        if isinstance(item, Offer):
            return self._on_offer(item)
        if isinstance(item, Error) and item.code == ROOM_CLOSED and self.state is ReceiverState.WAITING:
            self._move("fail", remote=False)  # a sender that proved the code turned us away: in our words
            return [
                Failed(
                    RoomError(
                        "the sender already has its receiver and takes nobody else; "
                        "ask for the files to be sent again, with --receivers or --keep-open",
                        ROOM_CLOSED,
                    )
                )
            ]
        if self.offer is None or item.sender != self.offer.sender:
            return []  # only the peer whose offer we took may drive the transfer
        if isinstance(item, Done) and item.transfer == self.offer.transfer and self.complete:
            self.sender_done = True  # it heard every verified: the shell may go
            return []
        if self.state is ReceiverState.DONE:
            return []
        if isinstance(item, Chunk):
            return self._on_chunk(item)
        if getattr(item, "transfer", None) != self.offer.transfer:
            return []
        if isinstance(item, FileStart):
            return self._on_file_start(item)
        if isinstance(item, FileEnd):
            return self._on_file_end(item)
        if isinstance(item, Cancel):
            self._move("stopped")
            return self._drop_current(discard=True) + [
                Failed(PeerGone(f"the sender cancelled: {item.reason or 'no reason given'}"))
            ]
        if isinstance(item, Error):
            self._move("stopped")
            error = RemoteProtocolError(f"the sender stopped: {item.message or item.code}", item.code)
            return self._drop_current(discard=False) + [Failed(error)]
        return []  # done, and anything a newer minor version adds

    def _move(self, trigger: str, *, remote: bool = True) -> None:
        self.state = TRANSITIONS.next(self.state, trigger, remote=remote)

    def _broken(self, why: str) -> RemoteProtocolError:
        return RemoteProtocolError(f"the sender broke the protocol: {why}")

    # -- offers ----------------------------------------------------------------------------

    def _on_offer(self, offer: Offer) -> list[Output]:
        if self.state is ReceiverState.WAITING:
            self._move("offer")
            self.offer = offer
            window = offer.window if offer.window is not None else self.limits.window
            self.ack_every = max(1, min(self.ack_every, window // 4))  # the sender's window never runs dry
            self.parts = [tuple(safe_relpath(f.name)) for f in offer.files]
            return [OfferReceived(offer, tuple(self.parts))]
        assert self.offer is not None
        same = [_identity(f) for f in offer.files] == [_identity(f) for f in self.offer.files]
        # The sender we began with: its peer id, or after a reconnection (a new peer id) its
        # transfer id, which a sender keeps for its whole run.
        ours = offer.sender == self.offer.sender or offer.transfer == self.offer.transfer
        if self.state is ReceiverState.DONE:
            # Our sender again, after we verified everything: its link dropped before our last
            # verified reached it. A round of file-starts and file-ends tells it again what we
            # hold (nothing is written). Anything else is for another receive.
            return self._renew(offer) if same and ours else []
        if same and ours and self.state is ReceiverState.DECIDING and self.away:
            # The sender is back (it left, or our link dropped) while the person still decides:
            # the answer goes to this offer, which may come from a new peer id. Not "busy": that
            # would read as a refusal. (While it is here, the same files from another are busy.)
            self.offer = offer
            self.away = False
            return []
        if same and not ours and self.state in (ReceiverState.RECEIVING, ReceiverState.AWAY):
            return self._other_sender(offer)
        if not (same and ours) or self.state in (ReceiverState.DECIDING, ReceiverState.RESUMING):
            self._move("busy")
            reason = "this receiver is busy with another offer"
            return [Send(Reject(to=offer.sender, transfer=offer.transfer, code="busy", reason=reason))]
        # The same files again: the sender is back (perhaps before we noticed it had gone).
        # Resume without asking; whatever the old connection still sends is ignored.
        return self._renew(offer)

    def _renew(self, offer: Offer) -> list[Output]:
        """Take ``offer`` (the same files) in place of the current one, for a new round."""
        assert self.offer is not None
        out: list[Output] = []
        if self.state is ReceiverState.RECEIVING:
            if offer.sender != self.offer.sender:
                out += self._interrupt("sender-replaced")
            else:
                out += self._drop_current(discard=False)
        if self.state is ReceiverState.FAILED:  # a stream broke off: it cannot go on from anyone
            return out
        self._move("again")
        self.sender_done = False
        self.offer = offer
        return [*out, OfferRenewed(offer)]

    # A receiver never changes sender on its own (docs/guarantees.md): anyone else in the room
    # who holds the code could offer the same names with other bytes, and they would be saved
    # as verified. The person may say yes; ``--yes`` does not cover it.

    def _other_sender(self, offer: Offer) -> list[Output]:
        self._move("busy")
        if self.ask_other and self.other is None:
            self.other = offer
            return [OtherSender(offer, asking=True)]
        return [*self._refuse_other(offer), OtherSender(offer, asking=False)]

    def switch(self, offer: Offer) -> list[Output]:
        """The person agreed to take the files from ``offer``'s different sender."""
        if self.other is not offer or self.state not in (ReceiverState.RECEIVING, ReceiverState.AWAY):
            self.other = None
            return []  # it left, or the transfer ended, while the person was asked
        self.other = None
        return self._renew(offer)

    def refuse_other(self, offer: Offer) -> list[Output]:
        """The person said no to ``offer``'s different sender (or could not be asked)."""
        if self.other is offer:
            self.other = None
        return self._refuse_other(offer)

    def _refuse_other(self, offer: Offer) -> list[Output]:
        reason = "this receiver takes the files only from the sender it began with"
        return [Send(Reject(to=offer.sender, transfer=offer.transfer, code="other-sender", reason=reason))]

    def accept(
        self,
        points: Mapping[int, ResumePoint] | None = None,
        *,
        placed: Mapping[int, str] | None = None,
        folders: Mapping[int, str] | None = None,
    ) -> list[Output]:
        """Take the offer (the person said yes, or the same files came again).

        ``points``: what is held of each file; ``placed``: files an earlier run already
        put in place (index -> path); ``folders``: the offer's folders, made (index -> path).
        """
        offer = self.offer
        if offer is None or any(
            not 0 <= i < len(offer.files) or offer.files[i].kind != kind
            for entries, kind in ((points or {}, "file"), (placed or {}, "file"), (folders or {}, "dir"))
            for i in entries
        ):
            raise LocalProtocolError("resume points, placed files and folders must name entries of the offer")
        if any(p.offset > (offer.files[i].size or 0) for i, p in (points or {}).items()):
            raise LocalProtocolError("a resume point past the end of its file")
        self._move("accept", remote=False)
        out: list[Output] = []
        for index, path in sorted((folders or {}).items()):
            if index not in self.saved:
                self.saved[index] = _Saved("", 0, path)
                out.append(FolderMade(index, self.name(index), path))
        self.points = dict(points or {})
        self.placed_before = dict(placed or {})
        self.away = False
        self.current = None
        self.placing.clear()
        self.round_written = self.last_ack = 0
        # Back after we had it all (our last verified was lost with the sender's link): the
        # sender goes through every file (a stream excepted) and waits for each verified, so
        # this round is complete when each is verified again.
        again = self.complete
        self.round_needed = (
            {i for i, f in enumerate(offer.files) if f.kind == "file" and f.size is not None} if again else set()
        )
        self.round_verified = set()
        held = sum(p.offset for p in self.points.values())
        resume = tuple(self.points[i] for i in sorted(self.points))
        out += [Send(Accept(to=offer.sender, transfer=offer.transfer, resume=resume)), Accepted(held)]
        return out + self._check_complete()

    def reject(self, reason: str, code: str = "declined") -> list[Output]:
        """Refuse the offer: the person declined, there is no space, or the shell cannot take it."""
        self._move("reject", remote=False)
        assert self.offer is not None
        return [Send(Reject(to=self.offer.sender, transfer=self.offer.transfer, code=code, reason=reason))]

    # -- files ---------------------------------------------------------------------------------

    def _on_file_start(self, msg: FileStart) -> list[Output]:
        assert self.offer is not None
        if self.state is not ReceiverState.RECEIVING or self.current is not None or msg.index >= len(self.parts):
            raise self._broken("file-start out of order")
        self._move("file-start")
        point = self.points.get(msg.index)
        if msg.offset > (point.offset if point else 0):  # any offset up to what we hold (a fan-out takes the least)
            raise self._broken("file-start past what we hold")
        info = self.offer.files[msg.index]
        if info.kind == "dir":
            raise self._broken("file-start for a folder")
        name = self.name(msg.index)
        started = FileStarted(msg.index, name, info.size, msg.offset)
        held_whole = point is not None and point.offset == info.size
        if held_whole and (msg.index in self.saved or msg.index in self.placed_before):
            # Already here. A fan-out may still stream it (from what another receiver holds):
            # take those bytes without writing them, and check the hash at file-end.
            self.current = _Incoming(msg.index, name, info.size, msg.offset, msg.offset, None, held=True)
            return [started]
        digest = hashlib.sha256() if msg.offset == 0 else None
        self.current = _Incoming(msg.index, name, info.size, msg.offset, msg.offset, digest)
        return [OpenPartial(msg.index, msg.offset), started]

    def opened(self, index: int, prefix: Digest) -> list[Output]:
        """The shell opened a resumed partial and hashed its first ``offset`` bytes."""
        cur = self.current
        if cur is None or cur.index != index or cur.held:
            raise LocalProtocolError(f"file {index} is not being opened")
        cur.digest = prefix
        return []

    def _on_chunk(self, chunk: Chunk) -> list[Output]:
        assert self.offer is not None
        out: list[Output] = []
        if self.implicit_start and self.current is None and chunk.offset == 0 and chunk.transfer == self.offer.transfer:
            index = chunk.index
            out = self._on_file_start(FileStart(sender=chunk.sender, transfer=chunk.transfer, index=index))
        cur = self.current
        if (
            self.state is not ReceiverState.RECEIVING
            or cur is None
            or chunk.transfer != self.offer.transfer
            or chunk.index != cur.index
            or chunk.offset != cur.received
        ):
            raise self._broken("a chunk arrived out of order or for an unknown file")
        n = len(chunk.payload)
        if cur.size is not None and cur.received + n > cur.size:
            raise self._broken(f"the sender sent more bytes of {cur.name} than it offered")
        self._move("chunk")
        cur.received += n
        if cur.held:  # a file we hold whole already is not written again
            return out + self._count(cur, n)
        if cur.digest is None:
            raise LocalProtocolError(f"a chunk of {cur.name} came before its partial file was opened")
        cur.digest.update(chunk.payload)
        return [*out, Write(cur.index, chunk.offset, chunk.payload)]

    def wrote(self, index: int, n: int) -> list[Output]:
        """The shell wrote ``n`` more bytes of file ``index``: they count for acks."""
        cur = self.current if self.current is not None and self.current.index == index else self.placing.get(index)
        if cur is None or cur.written + n > cur.received:
            raise LocalProtocolError(f"{n} bytes of file {index} were never received")
        self._move("wrote", remote=False)
        return self._count(cur, n)

    def _count(self, cur: _Incoming, n: int) -> list[Output]:
        cur.written += n
        self.round_written += n
        if self.round_written - self.last_ack >= self.ack_every:
            return self._ack(cur)
        return []

    def _ack(self, cur: _Incoming) -> list[Output]:
        """Tell the sender how much is written (its credit), and the UI how far we are."""
        assert self.offer is not None
        self.last_ack = self.round_written
        held = self.saved_bytes + (cur.written if cur.index not in self.saved else 0)
        return [
            Send(Ack(to=self.offer.sender, transfer=self.offer.transfer, bytes=self.round_written)),
            Progress(cur.index, cur.name, cur.written, cur.size, min(held, self.offer.total), self.offer.total),
        ]

    def _on_file_end(self, msg: FileEnd) -> list[Output]:
        cur = self.current
        if self.state is not ReceiverState.RECEIVING or cur is None or msg.index != cur.index:
            raise self._broken("file-end for a file that is not being sent")
        if (cur.size is not None and msg.size != cur.size) or cur.received != msg.size:
            offered = "a stream" if cur.size is None else f"{cur.size} bytes"
            raise self._broken(
                f"{cur.name} ended at {cur.received} bytes ({msg.size} claimed), but {offered} were offered"
            )
        self._move("file-end")
        self.current = None
        cur.size, cur.sha256 = msg.size, msg.sha256
        if cur.held:
            known = self.saved[cur.index].sha256 if cur.index in self.saved else self.points[cur.index].sha256
            if known != msg.sha256:
                raise self._broken(f"{cur.name} was already here with another hash")
            self.placing[cur.index] = cur
            path = self.saved[cur.index].path if cur.index in self.saved else self.placed_before[cur.index]
            return self.placed(cur.index, path)
        assert cur.digest is not None
        if cur.digest.hexdigest() != msg.sha256:
            self._move("hash-mismatch")
            assert self.offer is not None
            error = Error(
                to=self.offer.sender,
                code="hash-mismatch",
                message=f"SHA-256 of {cur.name} did not match"[: self.limits.max_reason_chars],
                transfer=self.offer.transfer,
                index=cur.index,
            )
            return [Discard(cur.index), Send(error), HashMismatch(cur.index, cur.name)]
        self.placing[cur.index] = cur
        return [Place(cur.index, msg.sha256)]

    def placed(self, index: int, path: str) -> list[Output]:
        """File ``index`` is verified and has its final name (``path``)."""
        cur = self.placing.pop(index, None)
        if cur is None or cur.size is None:
            raise LocalProtocolError(f"file {index} was not waiting to be placed")
        self._move("placed", remote=False)
        assert self.offer is not None
        self.round_verified.add(index)
        out = self._ack(cur)
        out.append(Send(Verified(to=self.offer.sender, transfer=self.offer.transfer, index=index, sha256=cur.sha256)))
        if index not in self.saved:
            self.saved[index] = _Saved(cur.sha256, cur.size, path)
            self.saved_bytes += cur.size
            out.append(FileVerified(index, cur.name, cur.size, cur.sha256, path))
        return out + self._check_complete()

    def _check_complete(self) -> list[Output]:
        if self.complete and self.round_needed <= self.round_verified and self.state is ReceiverState.RECEIVING:
            self._move("complete", remote=False)
            return [Completed()]
        return []

    # -- interruptions and failures ----------------------------------------------------------

    def sender_left(self) -> list[Output]:
        return self._interrupt("sender-left")

    def link_lost(self) -> list[Output]:
        """Our link to the relay dropped (the shell reconnects)."""
        return self._interrupt("relay-lost")

    def _interrupt(self, reason: str) -> list[Output]:
        """Keep what is written and wait for the same files again; a stream cannot wait."""
        if self.offer is None or self.complete or self.state in (ReceiverState.FAILED, ReceiverState.DONE):
            return []
        cur = self.current
        if cur is not None and (cur.size is None or not self.rewindable):
            self._move("unresumable")
            self.current = None
            return [Discard(cur.index), Unresumable(cur.index, cur.name, cur.received)]
        self._move("away")
        self.away = True
        where = Interrupted(reason, None, None, 0, None)
        if cur is not None:
            where = Interrupted(reason, cur.index, cur.name, cur.received, cur.size)
        return [where, *self._drop_current(discard=False)]

    def _drop_current(self, *, discard: bool) -> list[Output]:
        cur, self.current = self.current, None
        if cur is None or cur.held:
            return []
        return [Discard(cur.index) if discard else Close(cur.index)]

    def fail(self, error: XferError) -> list[Output]:
        """The transfer ends with ``error`` (a broken rule, a disk that is full): tell the sender why."""
        if self.state is ReceiverState.FAILED:
            return []  # told already
        self._move("fail", remote=False)
        if self.offer is None:
            return []
        message = str(error)[: self.limits.max_reason_chars]
        return [Send(Error(to=self.offer.sender, code=error.code, message=message, transfer=self.offer.transfer))]


def _identity(info: FileInfo) -> tuple[str, int | None, float | None]:
    """What makes an offered file the same file again (the key of its partial on disk)."""
    return info.name, info.size, info.mtime


__all__ = ["TRANSITIONS", "Digest", "ReceiverMachine", "ReceiverState"]
