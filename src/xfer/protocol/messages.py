"""Control messages: frozen dataclasses that validate when built.

A control message travels as one WebSocket text frame holding a JSON object
with a ``type`` key. ``parse_message`` is the only way in from the network and
raises nothing but ``ProtocolError``; ``serialize`` is the only way out.

This module gathers the three parts under the names they always had:
``message_fields`` (the protocol's ceilings and the field checks), ``message_types``
(the message classes) and ``message_wire`` (parse and serialize).
"""

from __future__ import annotations

from .message_fields import (
    MAX_CONTROL_FRAME,
    MAX_FILE_SIZE,
    MAX_FILES_PER_OFFER,
    MAX_ID,
    MAX_NAME_CHARS,
    MAX_PEER_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_TEXT_CHARS,
    PROTOCOL_MAJOR,
    PROTOCOL_VERSION,
    ROLES,
)
from .message_keys import Confirm, Hi, Pake, Sealed, Subscribe, Unsubscribe
from .message_types import (
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
)
from .message_wire import MESSAGE_TYPES, check_version, parse_message, serialize, to_dict

__all__ = [
    "MAX_CONTROL_FRAME",
    "MAX_FILE_SIZE",
    "MAX_FILES_PER_OFFER",
    "MAX_ID",
    "MAX_NAME_CHARS",
    "MAX_PEER_NAME_CHARS",
    "MAX_REASON_CHARS",
    "MAX_TEXT_CHARS",
    "MESSAGE_TYPES",
    "PROTOCOL_MAJOR",
    "PROTOCOL_VERSION",
    "ROLES",
    "Accept",
    "Ack",
    "Cancel",
    "Confirm",
    "Done",
    "Error",
    "FileEnd",
    "FileInfo",
    "FileStart",
    "Hello",
    "Hi",
    "Message",
    "Offer",
    "Pake",
    "PeerInfo",
    "PeerJoined",
    "PeerLeft",
    "Reject",
    "ResumePoint",
    "Sealed",
    "Subscribe",
    "Text",
    "Unsubscribe",
    "Verified",
    "Welcome",
    "check_version",
    "parse_message",
    "serialize",
    "to_dict",
]
