"""The xfer wire protocol, sans I/O: bytes in, validated messages out, and back.

No sockets, files or asyncio here. Every byte from the network passes through
``parse_message`` (text frames) or ``parse_chunk`` / ``parse_header`` (binary
frames) first, and those raise nothing but ``ProtocolError``.
"""

from .codes import new_code, parse_code, room_id, short_code
from .errors import FrameTooLarge, ProtocolError, VersionMismatch
from .frames import (
    DEFAULT_CHUNK_SIZE,
    HEADER_SIZE,
    MAX_BINARY_FRAME,
    MAX_CHUNK_PAYLOAD,
    Chunk,
    chunk_header,
    encode_chunk,
    parse_chunk,
    parse_header,
)
from .messages import (
    MAX_CONTROL_FRAME,
    PROTOCOL_VERSION,
    Accept,
    Ack,
    Cancel,
    Done,
    Error,
    FileEnd,
    FileInfo,
    FileStart,
    Hello,
    Message,
    Offer,
    PeerInfo,
    PeerJoined,
    PeerLeft,
    Reject,
    ResumePoint,
    Text,
    Verified,
    Welcome,
    check_version,
    parse_message,
    serialize,
    to_dict,
)

__all__ = [name for name in dir() if not name.startswith("_")]
