"""The control messages and the values nested in them: frozen dataclasses that check
every field when built (against the ceilings of ``message_fields``), so that no
message object exists that the protocol does not allow.

Messages between peers carry ``to`` (a peer id, or absent for everyone else in
the room) and ``from`` (set by the relay, never trusted from the sender).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .message_fields import (
    ERROR_CODE_PATTERN,
    HEX32,
    HEX64,
    MAX_FILE_SIZE,
    MAX_FILES_PER_OFFER,
    MAX_ID,
    MAX_NAME_CHARS,
    MAX_PEER_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_RESUME_POINTS_PER_FILE,
    MAX_TEXT_CHARS,
    NAMEPLATE,
    ROLES,
    VERSION_PATTERN,
    check_bool,
    check_float,
    check_int,
    check_pattern,
    check_per_index,
    check_str,
    check_tuple,
    fail,
)

# -- nested values ------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PeerInfo:
    type: ClassVar[str] = "peer"
    id: int
    name: str
    role: str
    client: str = ""

    def __post_init__(self) -> None:
        check_int(self, "id", 1, MAX_ID)
        check_str(self, "name", MAX_PEER_NAME_CHARS)
        check_str(self, "client", MAX_PEER_NAME_CHARS)
        if self.role not in ROLES:
            raise fail("peer", "role", f"must be one of {', '.join(ROLES)}")


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
        check_str(self, "name", MAX_NAME_CHARS, empty=False)
        check_int(self, "size", 0, MAX_FILE_SIZE, optional=True)
        check_str(self, "mime", 200, optional=True)
        check_float(self, "mtime", optional=True)
        if self.kind not in ("file", "dir"):
            raise fail("file", "kind", "must be file or dir")
        if self.kind == "dir" and self.size not in (0, None):
            raise fail("file", "size", "of a folder must be 0")

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
        check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        check_int(self, "offset", 0, MAX_FILE_SIZE)
        check_pattern(self, "sha256", HEX64, "64 lowercase hex digits")


# -- messages -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Message:
    type: ClassVar[str]
    routed: ClassVar[bool] = False  # forwarded by the relay between peers
    to: int | None = None
    sender: int | None = None  # "from" on the wire; stamped by the relay

    def __post_init__(self) -> None:
        check_int(self, "to", 1, MAX_ID, optional=True)
        check_int(self, "sender", 1, MAX_ID, optional=True)
        self.check()

    def check(self) -> None:  # overridden by messages with fields
        pass


@dataclass(frozen=True, kw_only=True)
class Hello(Message):
    """First message from a peer to the relay."""

    type: ClassVar[str] = "hello"
    version: str
    room: str  # the nameplate (the number of a code, never its words); empty with create: the relay picks one
    role: str
    name: str
    client: str = ""
    create: bool = False  # open the room if it is not open (a reconnecting peer sets it too)
    session: str | None = None  # secret per peer process: a reconnect with it evicts the stale connection

    def check(self) -> None:
        check_pattern(self, "version", VERSION_PATTERN, "a version like 1.0")
        if self.room or not self.create:
            check_pattern(self, "room", NAMEPLATE, "a nameplate: a number from 1 to 999999")
        if self.session is not None:
            check_pattern(self, "session", HEX32, "32 hex digits")
        if self.role not in ROLES:
            raise fail(self.type, "role", f"must be one of {', '.join(ROLES)}")
        check_str(self, "name", MAX_PEER_NAME_CHARS)
        check_str(self, "client", MAX_PEER_NAME_CHARS)
        check_bool(self, "create")


@dataclass(frozen=True, kw_only=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    version: str
    peer_id: int
    peers: tuple[PeerInfo, ...] = ()
    room: str | None = None  # the nameplate of the room joined (the one the relay picked, if asked to)

    def check(self) -> None:
        check_pattern(self, "version", VERSION_PATTERN, "a version like 1.0")
        check_int(self, "peer_id", 1, MAX_ID)
        if self.room is not None:
            check_pattern(self, "room", NAMEPLATE, "a nameplate: a number from 1 to 999999")
        check_tuple(self, "peers", PeerInfo, 1000)


@dataclass(frozen=True, kw_only=True)
class PeerJoined(Message):
    type: ClassVar[str] = "peer-joined"
    peer: PeerInfo

    def check(self) -> None:
        if type(self.peer) is not PeerInfo:
            raise fail(self.type, "peer", "must be a peer")


@dataclass(frozen=True, kw_only=True)
class PeerLeft(Message):
    type: ClassVar[str] = "peer-left"
    peer_id: int

    def check(self) -> None:
        check_int(self, "peer_id", 1, MAX_ID)


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
        check_pattern(self, "code", ERROR_CODE_PATTERN, "a short lowercase code")
        check_str(self, "message", MAX_REASON_CHARS)
        check_int(self, "transfer", 1, MAX_ID, optional=True)
        check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1, optional=True)


@dataclass(frozen=True, kw_only=True)
class Offer(Message):
    type: ClassVar[str] = "offer"
    routed: ClassVar[bool] = True
    transfer: int
    files: tuple[FileInfo, ...]
    window: int | None = None  # the sender's credit window; receivers ack at least 4 times per window

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_tuple(self, "files", FileInfo, MAX_FILES_PER_OFFER, min_items=1)
        check_int(self, "window", 1024, 1 << 30, optional=True)

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
        check_int(self, "transfer", 1, MAX_ID)
        check_tuple(self, "resume", ResumePoint, MAX_FILES_PER_OFFER)
        check_per_index(self, "resume", MAX_RESUME_POINTS_PER_FILE)
        if self.download is not None:
            check_pattern(self, "download", HEX32, "a token of 32 hex digits")


@dataclass(frozen=True, kw_only=True)
class Reject(Message):
    type: ClassVar[str] = "reject"
    routed: ClassVar[bool] = True
    transfer: int
    reason: str = ""
    code: str = "declined"

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_str(self, "reason", MAX_REASON_CHARS)
        check_pattern(self, "code", ERROR_CODE_PATTERN, "a short lowercase code")


@dataclass(frozen=True, kw_only=True)
class FileStart(Message):
    type: ClassVar[str] = "file-start"
    routed: ClassVar[bool] = True
    transfer: int
    index: int
    offset: int = 0

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        check_int(self, "offset", 0, MAX_FILE_SIZE)


@dataclass(frozen=True, kw_only=True)
class FileEnd(Message):
    type: ClassVar[str] = "file-end"
    routed: ClassVar[bool] = True
    transfer: int
    index: int
    size: int
    sha256: str

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        check_int(self, "size", 0, MAX_FILE_SIZE)
        check_pattern(self, "sha256", HEX64, "64 lowercase hex digits")


@dataclass(frozen=True, kw_only=True)
class Ack(Message):
    """Bytes of the transfer durably written by the receiver, counted from its start."""

    type: ClassVar[str] = "ack"
    routed: ClassVar[bool] = True
    transfer: int
    bytes: int

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_int(self, "bytes", 0, MAX_FILE_SIZE)


@dataclass(frozen=True, kw_only=True)
class Verified(Message):
    """The receiver hashed what it wrote, it matched, and the file has its final name."""

    type: ClassVar[str] = "verified"
    routed: ClassVar[bool] = True
    transfer: int
    index: int
    sha256: str

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_int(self, "index", 0, MAX_FILES_PER_OFFER - 1)
        check_pattern(self, "sha256", HEX64, "64 lowercase hex digits")


@dataclass(frozen=True, kw_only=True)
class Done(Message):
    type: ClassVar[str] = "done"
    routed: ClassVar[bool] = True
    transfer: int

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)


@dataclass(frozen=True, kw_only=True)
class Cancel(Message):
    type: ClassVar[str] = "cancel"
    routed: ClassVar[bool] = True
    transfer: int
    reason: str = ""

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)
        check_str(self, "reason", MAX_REASON_CHARS)


@dataclass(frozen=True, kw_only=True)
class Text(Message):
    type: ClassVar[str] = "text"
    routed: ClassVar[bool] = True
    text: str

    def check(self) -> None:
        check_str(self, "text", MAX_TEXT_CHARS, empty=False)


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
