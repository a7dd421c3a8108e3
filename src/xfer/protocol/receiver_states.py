"""The receiver's states and its legal moves, as data (h11 keeps its ``_state.py`` apart
from the connection the same way): ``ReceiverMachine`` moves only along ``TRANSITIONS``.

A trigger is what happened: a message from the sender (``offer``, ``file-start``,
``chunk``, ``file-end``, ``stopped`` for its cancel or error), a local input (``accept``,
``reject``, ``wrote``, ``placed``, ``fail``), or the machine's own finding (``again``: the
same files offered anew; ``away``: the sender or our link went; ``busy``: another offer
refused; ``complete``, ``hash-mismatch``, ``unresumable``).
"""

from __future__ import annotations

from enum import Enum, auto
from typing import Protocol

from .machine import Transitions


class Digest(Protocol):
    """A running hash (``hashlib.sha256()``), as the shell hands over the prefix of a resumed file."""

    def update(self, data: bytes | memoryview, /) -> None: ...

    def hexdigest(self) -> str: ...


class ReceiverState(Enum):
    WAITING = auto()  # for an offer
    DECIDING = auto()  # the person is asked about the offer
    RESUMING = auto()  # the same files again: the shell finds the resume points (no asking)
    RECEIVING = auto()  # accepted: file-starts, chunks and file-ends
    AWAY = auto()  # the sender left or our link dropped; waiting for the same files again
    DONE = auto()  # every entry of the offer is verified and in place
    FAILED = auto()  # declined, refused, broken off, or a peer broke the protocol


_ = ReceiverState
TRANSITIONS: Transitions[ReceiverState] = Transitions(
    {
        (_.WAITING, "offer"): _.DECIDING,
        (_.DECIDING, "accept"): _.RECEIVING,
        (_.DECIDING, "reject"): _.FAILED,
        (_.DECIDING, "away"): _.DECIDING,  # the person still decides; the sender may come back
        (_.DECIDING, "busy"): _.DECIDING,
        (_.DECIDING, "stopped"): _.FAILED,
        (_.RESUMING, "accept"): _.RECEIVING,
        (_.RESUMING, "reject"): _.FAILED,
        (_.RESUMING, "away"): _.AWAY,
        (_.RESUMING, "busy"): _.RESUMING,
        (_.RESUMING, "stopped"): _.FAILED,
        (_.RECEIVING, "file-start"): _.RECEIVING,
        (_.RECEIVING, "chunk"): _.RECEIVING,
        (_.RECEIVING, "file-end"): _.RECEIVING,
        (_.RECEIVING, "wrote"): _.RECEIVING,
        (_.RECEIVING, "placed"): _.RECEIVING,
        (_.RECEIVING, "complete"): _.DONE,
        (_.RECEIVING, "again"): _.RESUMING,  # back before we noticed it had gone
        (_.RECEIVING, "away"): _.AWAY,
        (_.RECEIVING, "busy"): _.RECEIVING,
        (_.RECEIVING, "stopped"): _.FAILED,
        (_.RECEIVING, "unresumable"): _.FAILED,
        (_.RECEIVING, "hash-mismatch"): _.FAILED,
        (_.AWAY, "again"): _.RESUMING,
        (_.AWAY, "away"): _.AWAY,
        (_.AWAY, "busy"): _.AWAY,
        (_.AWAY, "stopped"): _.FAILED,
        (_.DONE, "again"): _.RESUMING,  # our sender back: our last verified was lost with its link
        # our side gives up (a broken rule, a disk that is full), from wherever it was
        **{(state, "fail"): _.FAILED for state in _ if state is not _.FAILED},
    }
)
del _
