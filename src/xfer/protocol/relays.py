"""What relays that share rooms through Redis say to each other, on each relay's channel
(``xfer:relay:<relay id>``): frozen messages that validate when built, one
``parse_relay_message`` (raises only ``ProtocolError``) and one ``serialize_relay``.

Relays trust each other and their Redis, but a bug or a stray publisher must not crash
a relay's channel, so every message is checked like a peer's: the size before anything
else, then each field. The first byte says the kind:

- ``D`` Deliver: room (its nameplate, uint32) + count (uint16) + that many peer ids (uint32) +
  ``t`` or ``b`` + the frame as the relay forwards it (JSON text with ``from`` set, or a
  binary chunk). Once per relay, however many receivers it holds.
- ``J`` / ``L`` / ``E`` + JSON: a peer joined (``room``, ``relay``, ``peer``), left
  (``room``, ``id``), or must be closed because it reconnected elsewhere (``room``,
  ``id``, ``code``).
- The page's downloads asked for on one relay and streamed by another (relay/download.py):
  ``G`` get (``s`` stream, ``t`` token, ``i`` index, ``r`` asking relay), ``H`` head
  (``s``, ``status``, ``name``, ``size``), ``Y`` body (stream id (16 hex) + ``0``/``1``
  more + bytes), ``W`` written, ``X`` abort (HTTP side), ``Z`` cancelled (page side),
  the last three JSON ``{"s": stream}``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import FrameTooLarge, ProtocolError
from .frames import MAX_BINARY_FRAME
from .message_fields import MAX_NAMEPLATE, NAMEPLATE
from .messages import MAX_CONTROL_FRAME, MAX_ID, MAX_NAME_CHARS, PeerInfo

MAX_DELIVER_IDS = 1000  # receivers named in one Deliver (a room holds far fewer)
MAX_RELAY_MESSAGE = 1 + 4 + 2 + 4 * MAX_DELIVER_IDS + 1 + max(MAX_BINARY_FRAME, MAX_CONTROL_FRAME)

_HEX32 = re.compile(r"^[0-9a-f]{32}$")
_HEX16 = re.compile(r"^[0-9a-f]{16}$")
_IDS = struct.Struct("!I")
_COUNT = struct.Struct("!H")
_ROOM = struct.Struct("!I")  # a nameplate, in a Deliver
_STREAM_CHARS = 16


def _hex(value: object, pattern: re.Pattern[str], what: str) -> None:
    if type(value) is not str or not pattern.fullmatch(value):
        raise ProtocolError(f"relay message: {what} is malformed")


def _room(value: object) -> None:
    if type(value) is not str or not NAMEPLATE.fullmatch(value):
        raise ProtocolError("relay message: room nameplate is malformed")


def _peer_id(value: object, what: str = "peer id") -> None:
    if type(value) is not int or not 1 <= value <= MAX_ID:
        raise ProtocolError(f"relay message: {what} is out of range")


class RelayMessage:
    """Base of the relay-to-relay messages."""

    __slots__ = ()
    kind: ClassVar[bytes]


@dataclass(frozen=True)
class Deliver(RelayMessage):
    kind: ClassVar[bytes] = b"D"
    room: str
    ids: tuple[int, ...]
    frame: str | bytes

    def __post_init__(self) -> None:
        _room(self.room)
        if len(self.ids) > MAX_DELIVER_IDS:
            raise ProtocolError("relay message: too many receivers")
        for i in self.ids:
            _peer_id(i)
        if not isinstance(self.frame, (str, bytes)):
            raise ProtocolError("relay message: a frame is text or bytes")


@dataclass(frozen=True)
class RemoteJoined(RelayMessage):
    kind: ClassVar[bytes] = b"J"
    room: str
    relay: str
    peer: PeerInfo

    def __post_init__(self) -> None:
        _room(self.room)
        _hex(self.relay, _HEX16, "relay id")


@dataclass(frozen=True)
class RemoteLeft(RelayMessage):
    kind: ClassVar[bytes] = b"L"
    room: str
    id: int

    def __post_init__(self) -> None:
        _room(self.room)
        _peer_id(self.id)


@dataclass(frozen=True)
class Evict(RelayMessage):
    """Close our peer ``id``: it reconnected on another relay (close ``code``)."""

    kind: ClassVar[bytes] = b"E"
    room: str
    id: int
    code: int

    def __post_init__(self) -> None:
        _room(self.room)
        _peer_id(self.id)
        if type(self.code) is not int or not 1000 <= self.code <= 4999:
            raise ProtocolError("relay message: close code is out of range")


@dataclass(frozen=True)
class DownloadGet(RelayMessage):
    kind: ClassVar[bytes] = b"G"
    s: str  # the stream's id on both relays
    t: str  # the download's token
    i: int  # the file's index
    r: str  # the relay that has the HTTP request
    b: str | None = None  # the browser it came from (its cookie), if any

    def __post_init__(self) -> None:
        _hex(self.s, _HEX16, "stream id")
        _hex(self.t, _HEX32, "token")
        _hex(self.r, _HEX16, "relay id")
        if self.b is not None:
            _hex(self.b, _HEX32, "browser")
        if type(self.i) is not int or not 0 <= self.i < 2**63:
            raise ProtocolError("relay message: file index is out of range")


@dataclass(frozen=True)
class DownloadHead(RelayMessage):
    kind: ClassVar[bytes] = b"H"
    s: str
    status: int
    name: str | None = None
    size: int | None = None

    def __post_init__(self) -> None:
        _hex(self.s, _HEX16, "stream id")
        if type(self.status) is not int or not 100 <= self.status <= 599:
            raise ProtocolError("relay message: HTTP status is out of range")
        if self.name is not None and (type(self.name) is not str or len(self.name) > MAX_NAME_CHARS):
            raise ProtocolError("relay message: file name is malformed")
        if self.size is not None and (type(self.size) is not int or self.size < 0):
            raise ProtocolError("relay message: file size is malformed")


@dataclass(frozen=True)
class DownloadBody(RelayMessage):
    kind: ClassVar[bytes] = b"Y"
    s: str
    more: bool
    body: bytes

    def __post_init__(self) -> None:
        _hex(self.s, _HEX16, "stream id")


@dataclass(frozen=True)
class _StreamNote(RelayMessage):
    s: str

    def __post_init__(self) -> None:
        _hex(self.s, _HEX16, "stream id")


@dataclass(frozen=True)
class DownloadWritten(_StreamNote):
    kind: ClassVar[bytes] = b"W"


@dataclass(frozen=True)
class DownloadAbort(_StreamNote):
    kind: ClassVar[bytes] = b"X"


@dataclass(frozen=True)
class DownloadCancelled(_StreamNote):
    kind: ClassVar[bytes] = b"Z"


_JSON_KINDS: dict[bytes, type[RelayMessage]] = {
    cls.kind: cls
    for cls in (
        RemoteJoined,
        RemoteLeft,
        Evict,
        DownloadGet,
        DownloadHead,
        DownloadWritten,
        DownloadAbort,
        DownloadCancelled,
    )
}
DOWNLOAD_KINDS = frozenset((b"G", b"H", b"Y", b"W", b"X", b"Z"))


def _build(cls: type[RelayMessage], obj: dict[str, Any]) -> RelayMessage:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    try:
        if cls is RemoteJoined:
            peer: Any = obj.get("peer")
            if type(peer) is not dict:
                raise ProtocolError("relay message: peer must be an object")
            info = PeerInfo(**{k: peer[k] for k in ("id", "name", "role", "client") if k in peer})
            room: Any = obj.get("room")
            relay: Any = obj.get("relay")
            return RemoteJoined(room=room, relay=relay, peer=info)
        return cls(**{k: v for k, v in obj.items() if k in names})
    except TypeError as exc:  # a required field is missing
        raise ProtocolError(f"relay message {cls.kind!r}: missing fields") from exc


def parse_relay_message(data: bytes, *, max_size: int = MAX_RELAY_MESSAGE) -> RelayMessage:
    """Decode one message from a relay's channel. Raises only ``ProtocolError``."""
    if type(data) is not bytes:
        raise ProtocolError("relay message: must be bytes")
    if len(data) > max_size:
        raise FrameTooLarge(f"relay message of {len(data)} bytes is over the {max_size} byte limit")
    kind, rest = data[:1], data[1:]
    if kind == b"D":
        head = _ROOM.size + _COUNT.size
        if len(rest) < head + 1:
            raise ProtocolError("relay message: deliver is too short")
        (nameplate,) = _ROOM.unpack_from(rest)
        if not 1 <= nameplate <= MAX_NAMEPLATE:
            raise ProtocolError("relay message: room nameplate is malformed")
        room = str(nameplate)
        (count,) = _COUNT.unpack_from(rest, _ROOM.size)
        if count > MAX_DELIVER_IDS or len(rest) < head + 4 * count + 1:
            raise ProtocolError("relay message: deliver names more receivers than it holds")
        ids = tuple(_IDS.unpack_from(rest, head + 4 * i)[0] for i in range(count))
        start = head + 4 * count
        frame_kind, body = rest[start : start + 1], rest[start + 1 :]
        if frame_kind == b"t":
            try:
                frame: str | bytes = body.decode("utf-8")
            except UnicodeDecodeError:
                raise ProtocolError("relay message: a text frame is not UTF-8") from None
        elif frame_kind == b"b":
            frame = body
        else:
            raise ProtocolError("relay message: a frame is t(ext) or b(inary)")
        return Deliver(room, ids, frame)
    if kind == b"Y":
        if len(rest) < _STREAM_CHARS + 1 or rest[_STREAM_CHARS : _STREAM_CHARS + 1] not in (b"0", b"1"):
            raise ProtocolError("relay message: download body is malformed")
        stream = rest[:_STREAM_CHARS].decode("ascii", "replace")
        return DownloadBody(stream, rest[_STREAM_CHARS : _STREAM_CHARS + 1] == b"1", rest[_STREAM_CHARS + 1 :])
    cls = _JSON_KINDS.get(kind)
    if cls is None:
        raise ProtocolError(f"relay message: unknown kind {kind!r}")
    try:
        obj = json.loads(rest)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError("relay message: not valid JSON") from exc
    if type(obj) is not dict:
        raise ProtocolError("relay message: must be an object")
    return _build(cls, obj)


def serialize_relay(message: RelayMessage) -> bytes:
    """The bytes ``parse_relay_message`` reads back as ``message``."""
    if isinstance(message, Deliver):
        ids = b"".join(_IDS.pack(i) for i in message.ids)
        frame = message.frame
        body = b"t" + frame.encode() if isinstance(frame, str) else b"b" + frame
        return b"D" + _ROOM.pack(int(message.room)) + _COUNT.pack(len(message.ids)) + ids + body
    if isinstance(message, DownloadBody):
        return b"Y" + message.s.encode("ascii") + (b"1" if message.more else b"0") + message.body
    if isinstance(message, RemoteJoined):
        p = message.peer
        obj: dict[str, Any] = {
            "room": message.room,
            "relay": message.relay,
            "peer": {"id": p.id, "name": p.name, "role": p.role, "client": p.client},
        }
    else:
        obj = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}  # type: ignore[arg-type]
        if isinstance(message, DownloadHead):
            obj = {k: v for k, v in obj.items() if v is not None}
    return message.kind + json.dumps(obj, separators=(",", ":")).encode()


def download_message(kind: bytes, body: bytes | dict[str, Any]) -> RelayMessage:
    """A download message from the bridge's (kind, JSON object or raw body), validated."""
    if isinstance(body, dict):
        body = json.dumps(body).encode()
    if kind not in DOWNLOAD_KINDS:
        raise ProtocolError(f"relay message: {kind!r} is not a download message")
    return parse_relay_message(kind + body)
