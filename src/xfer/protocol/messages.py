"""Control messages: frozen dataclasses that validate when built.

A control message travels as one WebSocket text frame holding a JSON object
with a ``type`` key. ``parse_message`` is the only way in from the network and
raises nothing but ``ProtocolError``; ``serialize`` is the only way out.

Messages between peers carry ``to`` (a peer id, or absent for everyone else in
the room) and ``from`` (set by the relay, never trusted from the sender).
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from .errors import FrameTooLarge, ProtocolError, VersionMismatch

PROTOCOL_VERSION = "1.0"
PROTOCOL_MAJOR = 1

# Limits, each named so that the relay and peers can be configured alike.
MAX_CONTROL_FRAME = 1024 * 1024  # bytes of JSON in one text frame (an offer of many files)
MAX_FILES_PER_OFFER = 10_000
MAX_NAME_CHARS = 4096  # a file's relative path as sent, before the receiver makes it safe
MAX_PEER_NAME_CHARS = 64
MAX_TEXT_CHARS = 64 * 1024
MAX_REASON_CHARS = 500
MAX_ID = 2**32 - 1
MAX_FILE_SIZE = 2**53 - 1  # the largest integer JSON carries exactly
ROLES = ("sender", "receiver", "peer")

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_ROOM_ID = re.compile(r"^[0-9a-f]{32}$")
_VERSION = re.compile(r"^(\d{1,4})\.(\d{1,4})$")
_ERROR_CODE = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


# -- field checks -----------------------------------------------------------


def _fail(cls_name: str, field: str, why: str) -> ProtocolError:
    return ProtocolError(f"{cls_name}.{field}: {why}")


def _check_int(obj: Any, field: str, lo: int, hi: int, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if type(value) is not int or not lo <= value <= hi:
        raise _fail(obj.type, field, f"must be a whole number from {lo} to {hi}")


def _check_str(obj: Any, field: str, max_chars: int, *, empty: bool = True, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if type(value) is not str or len(value) > max_chars or (not empty and not value):
        raise _fail(obj.type, field, f"must be text of at most {max_chars} characters")


def _check_pattern(obj: Any, field: str, pattern: re.Pattern[str], what: str) -> None:
    value = getattr(obj, field)
    if type(value) is not str or not pattern.match(value):
        raise _fail(obj.type, field, f"must be {what}")


def _check_bool(obj: Any, field: str) -> None:
    if type(getattr(obj, field)) is not bool:
        raise _fail(obj.type, field, "must be true or false")


def _check_tuple(obj: Any, field: str, item: type, max_items: int, min_items: int = 0) -> None:
    value = getattr(obj, field)
    if type(value) is not tuple or not min_items <= len(value) <= max_items:
        raise _fail(obj.type, field, f"must be a list of {min_items} to {max_items} items")
    if any(type(v) is not item for v in value):
        raise _fail(obj.type, field, f"items must be {item.__name__}")


def _check_float(obj: Any, field: str, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if type(value) not in (int, float) or not -1e12 < value < 1e12:
        raise _fail(obj.type, field, "must be a number")


# -- nested values ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PeerInfo:
    type: ClassVar[str] = "peer"
    id: int
    name: str
    role: str
    client: str = ""

    def __post_init__(self) -> None:
        _check_int(self, "id", 1, MAX_ID)
        _check_str(self, "name", MAX_PEER_NAME_CHARS)
        _check_str(self, "client", MAX_PEER_NAME_CHARS)
        if self.role not in ROLES:
            raise _fail("peer", "role", f"must be one of {', '.join(ROLES)}")


@dataclass(frozen=True, kw_only=True)
class FileInfo:
    """One entry of an offer: a file, or a folder (``kind: "dir"``) of a folder transfer.

    ``name`` is a relative path with ``/`` between its parts, as the sender wrote it:
    untrusted. ``size`` is absent for a stream whose length is known only at its
    end (``xfer send -``); its ``file-end`` carries the size.
    """

    type: ClassVar[str] = "file"
    name: str
    size: int | None = None
    mime: str | None = None
    mtime: float | None = None
    kind: str = "file"

    def __post_init__(self) -> None:
        _check_str(self, "name", MAX_NAME_CHARS, empty=False)
        _check_int(self, "size", 0, MAX_FILE_SIZE, optional=True)
        _check_str(self, "mime", 200, optional=True)
        _check_float(self, "mtime", optional=True)
        if self.kind not in ("file", "dir"):
            raise _fail("file", "kind", "must be file or dir")
        if self.kind == "dir" and self.size not in (0, None):
            raise _fail("file", "size", "of a folder must be 0")

    @property
    def stream(self) -> bool:
        return self.size is None


@dataclass(frozen=True, kw_only=True)
class ResumePoint:
    """What a receiver already holds of one offered file: ``offset`` bytes whose SHA-256 is ``sha256``."""

    type: ClassVar[str] = "resume"
    index: int
    offset: int
    sha256: str

    def __post_init__(self) -> None:
        _check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        _check_int(self, "offset", 0, MAX_FILE_SIZE)
        _check_pattern(self, "sha256", _HEX64, "64 lowercase hex digits")


# -- messages -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Message:
    type: ClassVar[str]
    routed: ClassVar[bool] = False  # forwarded by the relay between peers
    to: int | None = None
    sender: int | None = None  # "from" on the wire; stamped by the relay

    def __post_init__(self) -> None:
        _check_int(self, "to", 1, MAX_ID, optional=True)
        _check_int(self, "sender", 1, MAX_ID, optional=True)
        self.check()

    def check(self) -> None:  # overridden by messages with fields
        pass


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """First message from a peer to the relay."""

    type: ClassVar[str] = "hello"
    version: str
    room: str  # room id: 32 hex digits derived from the code, never the code
    role: str
    name: str
    client: str = ""
    create: bool = False  # open the room if it is not open (a reconnecting peer sets it too)
    session: str | None = None  # secret per peer process: a reconnect with it evicts the stale connection

    def check(self) -> None:
        _check_pattern(self, "version", _VERSION, "a version like 1.0")
        _check_pattern(self, "room", _ROOM_ID, "a room id of 32 hex digits")
        if self.session is not None:
            _check_pattern(self, "session", _ROOM_ID, "32 hex digits")
        if self.role not in ROLES:
            raise _fail(self.type, "role", f"must be one of {', '.join(ROLES)}")
        _check_str(self, "name", MAX_PEER_NAME_CHARS)
        _check_str(self, "client", MAX_PEER_NAME_CHARS)
        _check_bool(self, "create")


@dataclass(frozen=True, kw_only=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    version: str
    peer_id: int
    peers: tuple[PeerInfo, ...] = ()

    def check(self) -> None:
        _check_pattern(self, "version", _VERSION, "a version like 1.0")
        _check_int(self, "peer_id", 1, MAX_ID)
        _check_tuple(self, "peers", PeerInfo, 1000)


@dataclass(frozen=True, kw_only=True)
class PeerJoined(Message):
    type: ClassVar[str] = "peer-joined"
    peer: PeerInfo

    def check(self) -> None:
        if type(self.peer) is not PeerInfo:
            raise _fail(self.type, "peer", "must be a peer")


@dataclass(frozen=True, kw_only=True)
class PeerLeft(Message):
    type: ClassVar[str] = "peer-left"
    peer_id: int

    def check(self) -> None:
        _check_int(self, "peer_id", 1, MAX_ID)


@dataclass(frozen=True, kw_only=True)
class Error(Message):
    """From the relay or a peer. ``code`` is for programs, ``message`` for people."""

    type: ClassVar[str] = "error"
    routed: ClassVar[bool] = True
    code: str
    message: str = ""
    transfer: int | None = None
    index: int | None = None

    def check(self) -> None:
        _check_pattern(self, "code", _ERROR_CODE, "a short lowercase code")
        _check_str(self, "message", MAX_REASON_CHARS)
        _check_int(self, "transfer", 1, MAX_ID, optional=True)
        _check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1, optional=True)


@dataclass(frozen=True, kw_only=True)
class Offer(Message):
    type: ClassVar[str] = "offer"
    routed: ClassVar[bool] = True
    transfer: int
    files: tuple[FileInfo, ...]
    window: int | None = None  # the sender's credit window; receivers ack at least 4 times per window

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_tuple(self, "files", FileInfo, MAX_FILES_PER_OFFER, min_items=1)
        _check_int(self, "window", 1024, 1 << 30, optional=True)

    @property
    def total(self) -> int:
        """Bytes offered, not counting streams (whose size is known only at their end)."""
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True, kw_only=True)
class Accept(Message):
    type: ClassVar[str] = "accept"
    routed: ClassVar[bool] = True
    transfer: int
    resume: tuple[ResumePoint, ...] = ()  # files the receiver already holds in part or whole
    # Optional (older peers ignore it): a browser page asks the relay to stream the files to it over HTTP under this
    # secret token (32 hex digits), and to acknowledge on its behalf (see docs/page.md).
    download: str | None = None

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_tuple(self, "resume", ResumePoint, MAX_FILES_PER_OFFER)
        if self.download is not None:
            _check_pattern(self, "download", _ROOM_ID, "a token of 32 hex digits")


@dataclass(frozen=True, kw_only=True)
class Reject(Message):
    type: ClassVar[str] = "reject"
    routed: ClassVar[bool] = True
    transfer: int
    reason: str = ""
    code: str = "declined"

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_str(self, "reason", MAX_REASON_CHARS)
        _check_pattern(self, "code", _ERROR_CODE, "a short lowercase code")


@dataclass(frozen=True, kw_only=True)
class FileStart(Message):
    type: ClassVar[str] = "file-start"
    routed: ClassVar[bool] = True
    transfer: int
    index: int
    offset: int = 0

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        _check_int(self, "offset", 0, MAX_FILE_SIZE)


@dataclass(frozen=True, kw_only=True)
class FileEnd(Message):
    type: ClassVar[str] = "file-end"
    routed: ClassVar[bool] = True
    transfer: int
    index: int
    size: int
    sha256: str

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        _check_int(self, "size", 0, MAX_FILE_SIZE)
        _check_pattern(self, "sha256", _HEX64, "64 lowercase hex digits")


@dataclass(frozen=True, kw_only=True)
class Ack(Message):
    """Bytes of the transfer durably written by the receiver, counted from its start."""

    type: ClassVar[str] = "ack"
    routed: ClassVar[bool] = True
    transfer: int
    bytes: int

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_int(self, "bytes", 0, MAX_FILE_SIZE)


@dataclass(frozen=True, kw_only=True)
class Verified(Message):
    """The receiver hashed what it wrote, it matched, and the file has its final name."""

    type: ClassVar[str] = "verified"
    routed: ClassVar[bool] = True
    transfer: int
    index: int
    sha256: str

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        _check_pattern(self, "sha256", _HEX64, "64 lowercase hex digits")


@dataclass(frozen=True, kw_only=True)
class Done(Message):
    type: ClassVar[str] = "done"
    routed: ClassVar[bool] = True
    transfer: int

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)


@dataclass(frozen=True, kw_only=True)
class Cancel(Message):
    type: ClassVar[str] = "cancel"
    routed: ClassVar[bool] = True
    transfer: int
    reason: str = ""

    def check(self) -> None:
        _check_int(self, "transfer", 1, MAX_ID)
        _check_str(self, "reason", MAX_REASON_CHARS)


@dataclass(frozen=True, kw_only=True)
class Text(Message):
    type: ClassVar[str] = "text"
    routed: ClassVar[bool] = True
    text: str

    def check(self) -> None:
        _check_str(self, "text", MAX_TEXT_CHARS, empty=False)


MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.type: cls
    for cls in (
        Hello,
        Welcome,
        PeerJoined,
        PeerLeft,
        Error,
        Offer,
        Accept,
        Reject,
        FileStart,
        FileEnd,
        Ack,
        Verified,
        Done,
        Cancel,
        Text,
    )
}
_NESTED: dict[str, type] = {"peer": PeerInfo, "peers": PeerInfo, "files": FileInfo, "resume": ResumePoint}


# -- the way in and the way out ---------------------------------------------------


def _build(cls: type, data: dict[str, Any]) -> Any:
    """Build ``cls`` from a decoded JSON object, ignoring unknown keys (minor versions add fields)."""
    what: str = getattr(cls, "type", cls.__name__)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        key = "from" if field.name == "sender" else field.name
        if key not in data:
            continue
        value = data[key]
        nested = _NESTED.get(field.name)
        if nested is not None:
            if field.name == "peer":
                value = _build(nested, _expect_object(value, field.name))
            else:
                if type(value) is not list:
                    raise ProtocolError(f"{what}.{field.name}: must be a list")
                if len(value) > MAX_FILES_PER_OFFER:
                    raise ProtocolError(f"{what}.{field.name}: too many items")
                value = tuple(_build(nested, _expect_object(v, field.name)) for v in value)
        kwargs[field.name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs and f.default is dataclasses.MISSING]
        raise ProtocolError(f"{what}: missing {', '.join(missing) or 'fields'}") from exc


def _expect_object(value: Any, what: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise ProtocolError(f"{what}: must be an object")
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_message(data: str | bytes, *, max_size: int = MAX_CONTROL_FRAME) -> Message:
    """Decode one text frame into a validated message. Raises only ``ProtocolError``."""
    if len(data) > max_size:
        raise FrameTooLarge(f"control message of {len(data)} bytes is over the {max_size} byte limit")
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ProtocolError("control message is not valid JSON") from exc
    obj = _expect_object(obj, "message")
    kind = obj.get("type")
    cls = MESSAGE_TYPES.get(kind) if type(kind) is str else None
    if cls is None:
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}", code="unknown-type")
    message: Message = _build(cls, obj)
    return message


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {
            k: _plain(v)
            for k, v in ((f.name, getattr(value, f.name)) for f in dataclasses.fields(value))
            if v is not None
        }
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_dict(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"type": message.type}
    for key, value in _plain(message).items():
        out["from" if key == "sender" else key] = value
    return out


def serialize(message: Message) -> str:
    return json.dumps(to_dict(message), ensure_ascii=False, separators=(",", ":"))


def check_version(version: str) -> None:
    """Raise ``VersionMismatch`` unless ``version`` has our major number."""
    match = _VERSION.match(version) if type(version) is str else None
    if match is None or int(match.group(1)) != PROTOCOL_MAJOR:
        raise VersionMismatch(
            f"the other side speaks xfer protocol {str(version)[:12]}, this one speaks "
            f"{PROTOCOL_VERSION}; update the older side"
        )
