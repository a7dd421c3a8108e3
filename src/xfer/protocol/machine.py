"""What every state machine of the protocol shares: outputs and the transition table.

A machine (``SenderMachine``, ``ReceiverMachine``, ``Room``) does no I/O. Each of its
inputs (a message or chunk from the link, or a local decision such as "accept") returns
a list of outputs, in order:

- ``Action``: something the shell must do: send a message, write bytes, place a file.
- ``Event``: something that happened, for the UI (and for the shell to wait on).

States are ``Enum``s; a machine's legal moves are one literal table
``{(state, trigger): next_state}``, read by ``Transitions``. A trigger that the table
does not allow raises ``RemoteProtocolError`` when a peer caused it and
``LocalProtocolError`` when the program did (h11's split).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from .errors import LocalProtocolError, RemoteProtocolError
from .frames import Chunk
from .messages import Message

S = TypeVar("S", bound=Enum)


class Output:
    """Base of what a machine returns."""

    __slots__ = ()


class Action(Output):
    """Something the shell must do, in order."""

    __slots__ = ()


class Event(Output):
    """Something that happened, for the UI (and for the shell to wait on)."""

    __slots__ = ()


@dataclass(frozen=True)
class Send(Action):
    """Send a control message on the link."""

    message: Message


@dataclass(frozen=True)
class SendChunk(Action):
    """Send a chunk frame on the link."""

    chunk: Chunk


class Transitions(Generic[S]):
    """A machine's table of legal moves: ``{(state, trigger): next_state}``.

    A trigger is a short name (``"offer"``, ``"accept"``, ``"file-end"``, ...).
    """

    def __init__(self, table: Mapping[tuple[S, str], S]) -> None:
        self.table = dict(table)

    def allows(self, state: S, trigger: str) -> bool:
        return (state, trigger) in self.table

    def next(self, state: S, trigger: str, *, remote: bool) -> S:
        """The state after ``trigger``; a trigger not allowed in ``state`` is an error
        of the peer (``remote``) or of this program."""
        try:
            return self.table[(state, trigger)]
        except KeyError:
            why = f"{trigger} is not allowed while {state.name.lower().replace('_', ' ')}"
            if remote:
                raise RemoteProtocolError(f"the peer broke the protocol: {why}") from None
            raise LocalProtocolError(why) from None

    def triggers(self) -> set[str]:
        return {trigger for _, trigger in self.table}

    def states(self) -> set[S]:
        return {state for state, _ in self.table} | set(self.table.values())
