"""The sending peer as a state machine, sans I/O.

The exchange runs in rounds. A round offers every file (under one transfer id for the
whole run), takes the receivers' resume points (the shell checks each against our file),
and streams what is missing inside a credit window. When the link to the relay drops or
the receiver leaves, the round is broken; the next starts once a receiver is back (and
the link is up: a round cannot start without it), from what that receiver holds.

Inputs: ``receive`` (a message from the link), ``link_lost`` / ``link_back``, and the
answers to its actions (``data_read``, ``read_failed``, ``prefix_checked``). The machine
has no clock: each input brings ``now``, ``deadline()`` says when it next needs one, and
the shell calls ``tick(now)`` then. Each input returns the outputs, in order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

from .errors import Declined, IntegrityFailure, LocalFileError, PeerGone, RelayGone, RemoteProtocolError, XferError
from .frames import Chunk
from .limits import LIMITS, Limits
from .machine import Output, Send
from .message_fields import ROOM_CLOSED
from .messages import (
    Cancel,
    Done,
    Error,
    FileInfo,
    Message,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Reject,
    Text,
)
from .sender_events import (
    ROUND_STATES,
    TRANSITIONS,
    CheckPrefix,
    Completed,
    Failed,
    Interrupted,
    PeerArrived,
    PeerDeparted,
    Read,
    RunningHash,
    SenderState,
    TextReceived,
    TurnedAway,
    Waiting,
    Warning,
)
from .sender_rounds import Round

RECEIVING_ROLES = ("receiver", "peer")


def _plain_size(n: int) -> str:
    return f"{n} B"


class SenderMachine:
    """Every decision of a sending peer; see the module's docstring."""

    def __init__(
        self,
        files: Sequence[FileInfo],
        *,
        transfer: int,
        peer_id: int,
        peers: Mapping[int, PeerInfo] = {},
        receivers: int = 1,
        exclude: Iterable[int] = (),
        turn_away: bool = True,
        limits: Limits = LIMITS,
        size_text: Callable[[int], str] = _plain_size,
    ) -> None:
        """``turn_away``: once a round has its ``receivers``, a newcomer is told that the room
        takes nobody else (False with ``--keep-open``: it waits to be served next)."""
        if not files:
            raise ValueError("nothing to send")
        if not 1024 <= limits.window <= 1 << 30:
            raise ValueError("window must be from 1 KiB to 1 GiB (what an offer can carry)")
        self.files = tuple(files)
        self.transfer = transfer
        self.peer_id = peer_id  # ours, from the relay (it changes when the link comes back)
        self.peers = dict(peers)  # the others in the room
        self.limits = limits
        self.size_text = size_text
        self.want = max(1, receivers)  # the data is sent once, fanned out by the relay
        self.fanout = self.want > 1
        self.take = self.want  # receivers to offer the next round to (fewer when some come back late)
        self.exclude = set(exclude)  # peers already served (--keep-open), or by this run
        self.turn_away = turn_away
        self.state = SenderState.WAITING
        self.epoch = 0  # a new one for each round: the shell's answers carry it
        self.link_up = True
        self.lost_at: float | None = None
        self.total = sum(f.size or 0 for f in self.files)  # streams count once they end
        self.verified: dict[int, str] = {}  # index -> SHA-256 every receiver confirmed
        self.held = 0  # bytes of the verified files
        self.hashes: dict[int, str] = {}  # index -> SHA-256 we computed
        self.stream_sizes: dict[int, int] = {}
        self.left_early: list[int] = []  # fan-out receivers that left: taken back if they return
        self.served: dict[int, PeerInfo] = {}  # receivers that have everything
        self.late = False  # this round is for receivers that came back late
        self.where: str | None = None  # where the last interruption happened
        self.wait_deadline: float | None = None  # for a receiver (and the link) to be back
        self.engaged = False  # a receiver has accepted: from then on, one that goes away has a deadline
        self.round = Round(self)

    # -- what the shell reads --------------------------------------------------

    @property
    def chosen(self) -> dict[int, PeerInfo]:
        return self.round.chosen

    @property
    def sent(self) -> int:
        """Bytes sent this round."""
        return self.round.sent

    @property
    def acked(self) -> int:
        return self.round.acked

    @property
    def finished(self) -> bool:
        return self.state in (SenderState.DONE, SenderState.FAILED)

    def deadline(self) -> float | None:
        """When the machine next needs ``tick``; None while it waits on the link or peers only."""
        if self.state in (SenderState.WAITING, SenderState.RETURNING):
            return self.wait_deadline
        if self.state is SenderState.SENDING:
            return self.round.credit_deadline
        return None

    # -- inputs ----------------------------------------------------------------

    def start(self, now: float) -> list[Output]:
        """Begin: offer as soon as enough receivers are in the room."""
        return self.waiting() + self._try_offer(now)

    def receive(self, item: Message | Chunk, now: float) -> list[Output]:
        """A message (or chunk) that came on the link."""
        out: list[Output] = []
        if isinstance(item, PeerJoined):
            self.peers[item.peer.id] = item.peer
            out.append(PeerArrived(item.peer))
            if self._taken(item.peer):
                out += self._send_away(item.peer)
            elif self.state is SenderState.WAITING:
                out += self._try_offer(now)
            elif self.state is SenderState.RETURNING:
                out += self._try_take_back(now)
        elif isinstance(item, PeerLeft):
            self.peers.pop(item.peer_id, None)
            out.append(PeerDeparted(item.peer_id))
            if not self.finished:
                out += self._peer_left(item.peer_id, now)
        elif isinstance(item, Text):
            out.append(TextReceived(item.text, self.peers.get(item.sender or 0)))
        elif isinstance(item, Message) and not self.finished and item.sender in self.chosen:
            if getattr(item, "transfer", self.transfer) == self.transfer:
                out += self.round.from_receiver(item.sender, item, now)
        return out  # chunks: a sender receives none; ignored rather than buffered

    def _taken(self, peer: PeerInfo) -> bool:
        """A receiver came (it proved the code) while the round has every receiver it takes,
        all still here: it is not one of them coming back, and it gets nothing."""
        return (
            self.turn_away
            and peer.role in RECEIVING_ROLES
            and peer.id not in self.exclude
            and peer.id not in self.chosen
            and self.state in (SenderState.OFFERED, SenderState.CHECKING, SenderState.SENDING, SenderState.FINISHING)
            and len(self.chosen) >= self.want
            and all(p in self.peers for p in self.chosen)
        )

    def _send_away(self, peer: PeerInfo) -> list[Output]:
        self.exclude.add(peer.id)  # nor in a later round, should the receivers we have leave
        message = "the sender already has its receiver; this room takes nobody else"
        return [TurnedAway(peer), Send(Error(to=peer.id, code=ROOM_CLOSED, message=message))]

    def link_lost(self, now: float) -> list[Output]:
        """The link to the relay dropped (the shell is reaching it again)."""
        if not self.link_up:
            return []
        self.link_up = False
        self.lost_at = now
        if self.state is SenderState.WAITING and not self.engaged:
            return []  # nothing broke off: still waiting for a first receiver, as before the loss
        if self.state in ROUND_STATES:
            if self.chosen:
                self.where = self.round.where()
            return self._interrupt(now)
        return []

    def link_back(self, peer_id: int, peers: Mapping[int, PeerInfo], now: float) -> list[Output]:
        """The link is up again, on a new connection: our id and the room as it is now."""
        self.link_up = True
        self.peer_id = peer_id
        self.peers = dict(peers)
        if self.state is SenderState.WAITING:
            return self._try_offer(now)
        if self.state is SenderState.RETURNING:
            return self._try_take_back(now)
        return []

    def data_read(self, read: Read, data: bytes | memoryview, now: float) -> list[Output]:
        """The bytes of ``read``: a chunk to send."""
        if read.epoch != self.epoch or self.finished:
            return []  # asked by a round that has broken since
        return self.round.data_read(read, data, now)

    def read_failed(self, read: Read, error: XferError) -> list[Output]:
        """Our file could not be read: tell the receivers, and end."""
        if read.epoch != self.epoch or self.finished:
            return []
        name = self.files[read.index].name
        return self.cancel(f"cannot read {name}") + self.fail(error)

    def prefix_checked(self, check: CheckPrefix, digest: RunningHash | None, now: float) -> list[Output]:
        """The running hash of ``check``'s prefix of our file (None: it could not be read)."""
        if check.epoch != self.epoch or self.finished:
            return []
        return self.round.prefix_checked(check, digest, now)

    def tick(self, now: float) -> list[Output]:
        """Time passed ``deadline()``."""
        if self.state is SenderState.SENDING:
            return self.round.credit_timeout(now)
        if self.wait_deadline is None or now < self.wait_deadline:
            return []
        if self.state is SenderState.RETURNING:
            owed = len(self.left_early)
            s = "s" if owed > 1 else ""
            warning = f"{owed} receiver{s} that left did not come back within {self.limits.peer_timeout:.0f} s"
            self.left_early = []
            return [Warning(warning)] + self._complete("complete")
        if self.state is SenderState.WAITING:
            if not self.link_up:  # the relay, not the receiver, is what stayed away
                error: XferError = RelayGone(
                    f"could not reach the relay again within {self.limits.reconnect_for:.0f} s"
                )
            else:
                during = f" during {self.where}" if self.where else ""
                error = PeerGone(
                    f"the receiver left{during} and did not come back. Run the same command again to resume."
                )
            return self.fail(error)
        return []

    def cancel(self, reason: str) -> list[Output]:
        """Tell the receivers that we give up (so that they remove what they hold of this offer)."""
        to = list(self.round.members) or list(self.chosen)
        return [Send(Cancel(to=peer, transfer=self.transfer, reason=reason[:200])) for peer in to]

    def fail(self, error: XferError) -> list[Output]:
        """End the run with ``error``; a round for receivers back late only warns."""
        if self.finished:
            return []
        if self.late and self.state is not SenderState.RETURNING:
            return [Warning(f"a receiver that came back did not finish: {error}")] + self._complete("give-up")
        self._move("fail")
        return [Failed(error)]

    # -- rounds ----------------------------------------------------------------

    def _move(self, trigger: str) -> None:
        self.state = TRANSITIONS.next(self.state, trigger, remote=False)

    def available(self) -> list[PeerInfo]:
        return [p for p in self.peers.values() if p.role in RECEIVING_ROLES and p.id not in self.exclude]

    def _try_offer(self, now: float) -> list[Output]:
        """Offer to the receivers there are, if there are enough (and the link is up)."""
        if not self.link_up or len(self.available()) < self.take:
            return []
        self.round = Round(self)
        self.epoch += 1
        self.wait_deadline = None
        self._move("offer")
        return self.round.offer(self.available()[: self.take])

    def waiting(self) -> list[Output]:
        if self.link_up and len(self.available()) >= self.take:
            return []
        return [Waiting("receiver")]

    def _interrupt(self, now: float) -> list[Output]:
        """The round broke: another one, from what the receivers hold, once one is back."""
        stream = next((f for i, f in enumerate(self.files) if f.stream and i in self.round.base), None)
        if stream is not None:
            return self.fail(
                PeerGone(f"the transfer of {stream.name} broke off; a stream cannot resume: run the pipeline again")
            )
        reason = "receiver-left" if self.link_up else "relay-lost"
        out: list[Output] = [Interrupted(reason, self.where or "the transfer")]
        self._move("interrupt")
        self.round = Round(self)
        self.epoch += 1
        # the wait for the receiver counts from when it (or the relay) was lost, not from now;
        # before any receiver accepted, nobody is owed a deadline: wait for one as at the start
        # (the relay staying away is bounded by the shell's reconnecting, --peer-timeout)
        since = self.lost_at if not self.link_up and self.lost_at is not None else now
        self.wait_deadline = since + self.limits.peer_timeout if self.engaged else None
        return out + self.waiting() + self._try_offer(now)

    def _peer_left(self, peer_id: int, now: float) -> list[Output]:
        if self.state is SenderState.RETURNING or peer_id not in self.chosen:
            return []
        rnd = self.round
        if peer_id in rnd.answers and peer_id not in rnd.members:
            return []  # declined, or dropped from a fan-out already
        done = rnd.member_verified.get(peer_id)
        if done is not None and rnd.files and len(done) >= len(rnd.files):
            return []  # it has everything: leaving is how a finished receiver says goodbye
        if self.fanout and len(rnd.members) > 1:
            self.left_early.append(peer_id)
            return rnd.drop(peer_id, "left", now)
        if len(self.verified) < len(self.files) or self.late:  # late: the others have it all, it does not
            self.where = rnd.where()
            return self._interrupt(now)
        return []

    def round_complete(self, now: float) -> list[Output]:
        """Every member has every file of this round: tell them, then take back those that left."""
        out: list[Output] = [Send(Done(to=peer, transfer=self.transfer)) for peer in self.round.members]
        self.served.update(self.round.members)
        if self.left_early:
            self._move("take-back")
            self.late = True
            self.exclude.update(self.served, self.chosen)  # offer only to peers that are new
            owed = len(self.left_early)
            self.wait_deadline = now + self.limits.peer_timeout
            out.append(Waiting("receiver-back", receivers=owed, seconds=self.limits.peer_timeout))
            return out + self._try_take_back(now)
        return out + self._complete("complete")

    def _try_take_back(self, now: float) -> list[Output]:
        if not self.link_up or not self.available():
            return []
        self.take = min(len(self.left_early), len(self.available()))
        self.left_early = self.left_early[self.take :]  # those not back yet are still owed a round
        return self._try_offer(now)

    def _complete(self, trigger: str) -> list[Output]:
        self._move(trigger)
        return [Completed(tuple(self.served.values()))]

    def declined_error(self, reject: Reject) -> XferError:
        if reject.code == "no-space":
            return LocalFileError(f"the receiver has no room for this: {reject.reason}", "no-space").of_peer()
        if reject.code == "other-sender":  # our own words: the receiver's are its to choose
            return Declined("the receiver refused: it takes these files only from the sender it began with")
        reason = f": {reject.reason}" if reject.reason and reject.reason != "declined" else ""
        return Declined(f"the receiver declined the offer{reason}")

    def error_from_peer(self, error: Error) -> XferError:
        name = self.files[error.index].name if error.index is not None and error.index < len(self.files) else None
        what = f" ({name})" if name else ""
        if error.code == "hash-mismatch":
            return IntegrityFailure(
                f"the receiver found a SHA-256 mismatch{what}; nothing was saved under its name"
            ).of_peer()
        if error.code in ("no-space", "disk-full", "permission-denied", "read-only", "io-error"):
            return LocalFileError(f"the receiver could not write{what}: {error.message}", error.code).of_peer()
        return RemoteProtocolError(f"the receiver stopped{what}: {error.message or error.code}", error.code).of_peer()

    def new_hash(self) -> RunningHash:
        return hashlib.sha256()


__all__ = ["RECEIVING_ROLES", "SenderMachine", "SenderState", "TRANSITIONS"]
