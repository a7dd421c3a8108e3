"""A peer's connection to a relay room: hello/welcome, then messages and chunks.

Everything received passes through the sans-I/O protocol before it reaches the
sender or receiver logic; connection failures become ``XferError``s.
"""

from __future__ import annotations

import asyncio
import ssl

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from .. import __version__
from ..errors import PeerProtocolError, RelayGone, RelayUnreachable, RoomError
from ..protocol import (
    MAX_BINARY_FRAME,
    Chunk,
    Error,
    Message,
    PeerInfo,
    ProtocolError,
    VersionMismatch,
    Welcome,
    check_version,
    parse_message,
    serialize,
)
from ..protocol.view import ROOM_REFUSALS, RoomView, client_name, hello
from .wire import ChunkConnection

CLIENT = client_name(__version__)


class RelayConnection:
    """A peer's WebSocket to its room on a relay: fits ``link.Link``."""

    def __init__(
        self, ws: ChunkConnection, url: str, peer_id: int, peers: dict[int, PeerInfo] | None = None, room: str = ""
    ) -> None:
        self.ws = ws
        self.url = url
        self.room = room  # the nameplate joined (the relay's pick when we asked it for one)
        self.view = RoomView(peer_id, peers)
        self.peer_id = peer_id
        self.peers = self.view.peers  # one dict: the view keeps it up to date
        self.lost = False  # a send found the connection closed (the reader may not know yet)

    async def send(self, message: Message) -> None:
        try:
            await self.ws.send(serialize(message))
        except ConnectionClosed as exc:
            self.lost = True
            raise _closed_error(exc, self.url) from exc

    async def send_frame(self, frame: bytes | bytearray) -> None:
        try:
            await self.ws.send(frame)
        except ConnectionClosed as exc:
            self.lost = True
            raise _closed_error(exc, self.url) from exc

    async def recv(self) -> Message | Chunk:
        """The next message or chunk; keeps ``peers`` up to date. Raises ``XferError``s.
        A chunk's payload is a view of the connection's buffer: valid until the next ``recv``."""
        try:
            data = await self.ws.next_frame()
        except ConnectionClosed as exc:
            raise _closed_error(exc, self.url) from exc
        return self.decode(data)

    def decode(self, data: str | bytes | memoryview) -> Message | Chunk:
        return self.view.receive(data)

    async def close(self) -> None:
        await self.ws.close()


def _closed_error(exc: ConnectionClosed, url: str) -> Exception:
    rcvd = exc.rcvd
    if rcvd is not None and rcvd.code == 1012:
        return RelayGone("the relay is restarting; run the same command again in a moment")
    return RelayGone(f"lost the connection to the relay {url}")


async def open_room(
    url: str,
    room: str,
    *,
    role: str,
    name: str,
    create: bool,
    session: str | None = None,
    open_timeout: float = 10.0,
    ping_interval: float | None = 20.0,
    ping_timeout: float | None = 20.0,
) -> RelayConnection:
    """Connect to the relay at ``url`` and join (or open) the room with id ``room``."""
    try:
        ws = await connect(
            url,
            compression=None,
            create_connection=ChunkConnection,
            max_size=MAX_BINARY_FRAME,
            open_timeout=open_timeout,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            # a link that missed its pong waits no longer for the relay's answer to its close
            # (over a stalled network it never comes; websockets' default is 10 s more)
            close_timeout=10.0 if ping_timeout is None else min(10.0, ping_timeout),
            user_agent_header=CLIENT,
            write_limit=256 * 1024,
        )
    except ssl.SSLCertVerificationError as exc:
        raise RelayUnreachable(
            f"cannot trust relay {url}: {exc.verify_message or exc.reason}. If it uses a private CA, "
            "set SSL_CERT_FILE to that CA's certificate (PEM)"
        ) from exc
    except (OSError, asyncio.TimeoutError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        reason = _reason(exc)
        raise RelayUnreachable(f"cannot reach relay {url} ({reason}). Is `xfer serve` running there?") from exc
    assert isinstance(ws, ChunkConnection)
    try:
        await ws.send(serialize(hello(room, role=role, name=name, client=CLIENT, create=create, session=session)))
        data = await asyncio.wait_for(ws.next_frame(), open_timeout)
        reply = parse_message(bytes(data) if isinstance(data, memoryview) else data)
        if isinstance(reply, Error):
            raise _join_error(reply)
        if not isinstance(reply, Welcome):
            raise PeerProtocolError(f"the relay answered hello with {reply.type}")
        check_version(reply.version)
    except VersionMismatch as exc:
        await ws.close()
        raise PeerProtocolError(str(exc), "version") from exc
    except ProtocolError as exc:
        await ws.close()
        raise PeerProtocolError(f"the relay sent something broken: {exc}", exc.code) from exc
    except (ConnectionClosed, asyncio.TimeoutError, TimeoutError) as exc:
        await ws.close()
        raise RelayUnreachable(f"the relay {url} did not answer") from exc
    except BaseException:
        await ws.close()
        raise
    return RelayConnection(ws, url, reply.peer_id, {p.id: p for p in reply.peers}, reply.room or room)


def _join_error(error: Error) -> Exception:
    if error.code == "room-not-found":
        return RoomError("room is not open. Check the code, or ask the other side to start again.", error.code)
    if error.code in ROOM_REFUSALS:
        return RoomError(f"the relay refused to join: {error.message}", error.code)
    if error.code == "version":
        return PeerProtocolError(error.message, "version")
    if error.code == "unavailable":  # a relay that lost its Redis: a reconnecting peer tries again
        return RelayGone(f"the relay is unavailable: {error.message}")
    return PeerProtocolError(f"the relay refused: {error.message}", error.code)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return "timed out"
    if isinstance(exc, InvalidHandshake):
        return f"not an xfer relay: {exc}"
    if isinstance(exc, ssl.SSLError):
        if exc.reason == "WRONG_VERSION_NUMBER":
            return "it does not speak TLS there; try ws://"
        return f"TLS failed: {exc.reason or exc}"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text
