"""What ``ReceiverMachine`` returns besides ``Send``: actions for its shell and events for the UI.

Actions name a file by its index in the offer; the shell knows where that file lives
(a partial file on disk, an HTTP response).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import XferError
from .machine import Action, Event
from .messages import Offer, PeerInfo

# -- actions: what the shell must do, in order ------------------------------------------------


@dataclass(frozen=True)
class OpenPartial(Action):
    """Open the file's partial at ``offset``: cut it there, and (when ``offset`` is not 0)
    hand its first ``offset`` bytes' running hash back with ``ReceiverMachine.opened``."""

    index: int
    offset: int


@dataclass(frozen=True)
class Write(Action):
    """Write ``data`` at ``offset`` of the file; then report it with ``ReceiverMachine.wrote``."""

    index: int
    offset: int
    data: memoryview


@dataclass(frozen=True)
class Place(Action):
    """The file arrived whole and its SHA-256 matched: make it durable, give it its final
    name, then report it with ``ReceiverMachine.placed``."""

    index: int
    sha256: str


@dataclass(frozen=True)
class Close(Action):
    """Close the file's partial and keep it: the transfer may resume from it."""

    index: int


@dataclass(frozen=True)
class Discard(Action):
    """Close the file's partial and remove it: what it holds cannot be used."""

    index: int


# -- events: what happened ---------------------------------------------------------------------


@dataclass(frozen=True)
class PeerArrived(Event):
    peer: PeerInfo


@dataclass(frozen=True)
class PeerDeparted(Event):
    peer_id: int


@dataclass(frozen=True)
class TextReceived(Event):
    sender: int | None
    text: str


@dataclass(frozen=True)
class OfferReceived(Event):
    """An offer to decide on; ``parts`` is each entry's relative path, made safe."""

    offer: Offer
    parts: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class OfferRenewed(Event):
    """The same files again after an interruption: accept with resume points, without asking."""

    offer: Offer


@dataclass(frozen=True)
class OtherSender(Event):
    """A peer other than the one the transfer began with offers the same files; never taken
    on our own. ``asking``: ask the person (then ``ReceiverMachine.switch`` or
    ``refuse_other``); else it is refused already."""

    offer: Offer
    asking: bool


@dataclass(frozen=True)
class Accepted(Event):
    resumed: int  # bytes already held


@dataclass(frozen=True)
class FolderMade(Event):
    index: int
    name: str
    path: str


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
    bytes: int  # of this file
    size: int | None
    total_bytes: int
    total_size: int


@dataclass(frozen=True)
class FileVerified(Event):
    index: int
    name: str
    size: int
    sha256: str
    path: str


@dataclass(frozen=True)
class Interrupted(Event):
    """The sender left or the link dropped; ``index`` is the file broken off, if any."""

    reason: str
    index: int | None
    name: str | None
    received: int
    size: int | None


@dataclass(frozen=True)
class Completed(Event):
    """Every entry of the offer is verified and in place."""


@dataclass(frozen=True)
class HashMismatch(Event):
    """What arrived of the file does not have the SHA-256 the sender sent; the transfer failed."""

    index: int
    name: str


@dataclass(frozen=True)
class Unresumable(Event):
    """The transfer broke off in a file that cannot resume (a stream, or standard output)."""

    index: int
    name: str
    received: int


@dataclass(frozen=True)
class Failed(Event):
    """The sender cancelled or stopped with an error."""

    error: XferError
