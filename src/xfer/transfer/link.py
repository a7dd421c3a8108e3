"""What the sender and receiver need of their connection to a room: a ``Link``.

A WebSocket to a relay (``connection.RelayConnection``) and the in-process link of the
built-in relay (``relay.local.LocalConnection``) both fit it by shape; neither needs to
know of the other.
"""

from __future__ import annotations

from typing import Protocol

from ..protocol import Chunk, Message, PeerInfo


class Link(Protocol):
    """One peer's connection to its room."""

    @property
    def peer_id(self) -> int:
        """Ours, given by the relay."""

    @property
    def room(self) -> str:
        """The nameplate of the room joined."""

    peers: dict[int, PeerInfo]  # the others in the room, kept up to date by ``recv``
    lost: bool  # a send found the link closed (the reader may not have noticed yet)

    async def send(self, message: Message) -> None:
        """Send a control message; raises ``RelayGone`` when the link is closed."""

    async def send_frame(self, frame: bytes | bytearray) -> None:
        """Send a binary frame (a chunk); raises ``RelayGone`` when the link is closed."""

    async def recv(self) -> Message | Chunk:
        """The next message or chunk, validated; raises ``XferError``s."""

    async def close(self) -> None: ...
