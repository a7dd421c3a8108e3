"""The sender machine's vocabulary: its states and legal moves, the actions its shell
performs and the events it reports. Kept apart from the machine (``sender.py``) and its
rounds (``sender_rounds.py``) so that each file stays readable.

Actions carry the ``epoch`` of the machine that asked for them: a round that breaks
while the shell is still reading or hashing makes those answers stale, and the machine
drops them instead of mixing them into the next round.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from .errors import XferError
from .machine import Action, Event, Transitions
from .messages import PeerInfo

# -- states ------------------------------------------------------------------


class RunningHash(Protocol):
    """A hash being computed (``hashlib.sha256()``): the start of a file, then each chunk."""

    def update(self, data: bytes | memoryview, /) -> None: ...
    def hexdigest(self) -> str: ...


class SenderState(Enum):
    WAITING = "waiting"  # for enough receivers, and the link
    OFFERED = "offered"  # for every receiver's answer
    CHECKING = "checking"  # the shell hashes what the receivers say they hold
    SENDING = "sending"  # files, inside the window
    FINISHING = "finishing"  # everything sent: for every receiver's verified
    RETURNING = "returning"  # fan-out receivers that left: for them to come back
    DONE = "done"
    FAILED = "failed"


_S = SenderState
ROUND_STATES = (_S.WAITING, _S.OFFERED, _S.CHECKING, _S.SENDING, _S.FINISHING)  # a round is on

TRANSITIONS: Transitions[SenderState] = Transitions(
    {
        (_S.WAITING, "offer"): _S.OFFERED,
        (_S.RETURNING, "offer"): _S.OFFERED,
        (_S.OFFERED, "answered"): _S.CHECKING,
        (_S.CHECKING, "checked"): _S.SENDING,
        (_S.SENDING, "all-sent"): _S.FINISHING,
        (_S.FINISHING, "complete"): _S.DONE,
        (_S.FINISHING, "take-back"): _S.RETURNING,
        (_S.RETURNING, "complete"): _S.DONE,  # the receivers that left did not come back
        # the link was lost or the receiver left: another round once one is back
        **{(state, "interrupt"): _S.WAITING for state in ROUND_STATES},
        # a round for receivers that came back late fails: the others are served, it is a warning
        **{(state, "give-up"): _S.DONE for state in ROUND_STATES},
        **{(state, "fail"): _S.FAILED for state in (*ROUND_STATES, _S.RETURNING)},
    }
)


# -- actions -------------------------------------------------------------------


@dataclass(frozen=True)
class Read(Action):
    """Read ``n`` bytes of file ``index`` from ``offset`` (fewer, or none at its end, for a
    stream) and hand them to ``SenderMachine.data_read``."""

    epoch: int
    index: int
    offset: int
    n: int


@dataclass(frozen=True)
class CheckPrefix(Action):
    """Hash the first ``offset`` bytes of file ``index`` and hand the running hash to
    ``SenderMachine.prefix_checked`` (None when the file cannot be read): a receiver says it
    holds them with this ``sha256``."""

    epoch: int
    index: int
    offset: int
    sha256: str


# -- events --------------------------------------------------------------------


@dataclass(frozen=True)
class PeerArrived(Event):
    peer: PeerInfo


@dataclass(frozen=True)
class PeerDeparted(Event):
    peer_id: int


@dataclass(frozen=True)
class TextReceived(Event):
    text: str
    sender: PeerInfo | None  # None when the relay does not know it (any more)


@dataclass(frozen=True)
class Waiting(Event):
    """Waiting for receivers: the first (``reason="receiver"``), or those of a fan-out that
    left and may come back (``"receiver-back"``, with how many and for how long)."""

    reason: str
    receivers: int | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class OfferSent(Event):
    transfer: int
    peers: tuple[PeerInfo, ...]  # offered to, the first is "the" receiver
    total: int


@dataclass(frozen=True)
class ReceiverDeclined(Event):
    """One receiver of a fan-out declined; the others go on."""

    peer: PeerInfo
    reason: str


@dataclass(frozen=True)
class ResumeMismatch(Event):
    """What a receiver holds of a file is not the start of ours: it is sent whole."""

    index: int
    name: str


@dataclass(frozen=True)
class Accepted(Event):
    peer: PeerInfo
    resumed: int  # bytes not sent again, over every file


@dataclass(frozen=True)
class FileStarted(Event):
    index: int
    name: str
    size: int | None
    offset: int


@dataclass(frozen=True)
class Progress(Event):
    index: int
    name: str
    bytes: int  # of this file that every receiver holds
    size: int | None
    total_bytes: int
    total_size: int
    peers: dict[int, int] | None  # a fan-out: bytes each receiver acknowledged this round


@dataclass(frozen=True)
class PeerFileVerified(Event):
    """One receiver of a fan-out confirmed a file."""

    peer_id: int
    index: int
    name: str


@dataclass(frozen=True)
class FileVerified(Event):
    """Every receiver confirmed the file's SHA-256."""

    index: int
    name: str
    size: int
    sha256: str


@dataclass(frozen=True)
class ReceiverFailed(Event):
    """A receiver of a fan-out is dropped; the others go on."""

    peer_id: int
    peer: PeerInfo | None
    reason: str


@dataclass(frozen=True)
class Interrupted(Event):
    """The round broke: the receiver left (``"receiver-left"``) or the link to the relay
    was lost (``"relay-lost"``); ``at`` says where."""

    reason: str
    at: str


@dataclass(frozen=True)
class TurnedAway(Event):
    """A receiver came with the right code after the round had all it takes: told so, never offered to."""

    peer: PeerInfo


@dataclass(frozen=True)
class Warning(Event):
    message: str


@dataclass(frozen=True)
class Failed(Event):
    """The run ends with ``error`` (the machine is ``FAILED``)."""

    error: XferError


@dataclass(frozen=True)
class Completed(Event):
    """Every file reached every receiver served (the machine is ``DONE``)."""

    peers: tuple[PeerInfo, ...]
