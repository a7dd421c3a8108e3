"""A peer's view of its room, shared by every link to a relay (a WebSocket, or the
in-process link of a relay that the peer hosts itself): what it sends first, how it
reads what the relay sends, and who else is in the room.
"""

from __future__ import annotations

from .closes import ROOM_REFUSALS
from .errors import ProtocolError, RemoteProtocolError
from .frames import Chunk, parse_chunk
from .messages import PROTOCOL_VERSION, Error, Hello, Message, PeerInfo, PeerJoined, PeerLeft, parse_message

__all__ = ["ROOM_REFUSALS", "RoomView", "client_name", "hello"]


def client_name(version: str) -> str:
    """The ``client`` of a terminal peer in its hello (the page says ``xfer-web/...``)."""
    return f"xfer/{version}"


def hello(room: str, *, role: str, name: str, client: str, create: bool, session: str | None = None) -> Hello:
    """The first message of a peer to the relay."""
    return Hello(
        version=PROTOCOL_VERSION, room=room, role=role, name=name, client=client, create=create, session=session
    )


class RoomView:
    """``peer_id`` (ours, from the welcome) and ``peers`` (the others), kept up to date by
    ``receive``, which turns each frame from the relay into a validated message or chunk."""

    def __init__(self, peer_id: int, peers: dict[int, PeerInfo] | None = None) -> None:
        self.peer_id = peer_id
        self.peers: dict[int, PeerInfo] = peers if peers is not None else {}

    def receive(self, data: str | bytes | memoryview) -> Message | Chunk:
        """Raises ``RemoteProtocolError`` for a broken frame, or when the relay itself sent
        an error (it closes the connection next: say why, do not reconnect)."""
        try:
            if isinstance(data, str):
                item: Message | Chunk = parse_message(data)
            else:
                item = parse_chunk(data)
        except ProtocolError as exc:
            raise RemoteProtocolError(f"the relay sent something broken: {exc}", exc.code) from exc
        if isinstance(item, PeerJoined):
            self.peers[item.peer.id] = item.peer
        elif isinstance(item, PeerLeft):
            self.peers.pop(item.peer_id, None)
        elif isinstance(item, Error) and item.sender is None and item.code != "no-such-peer":
            raise RemoteProtocolError(f"the relay closed the connection: {item.message or item.code}", item.code)
        return item
