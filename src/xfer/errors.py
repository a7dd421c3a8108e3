"""The errors people meet: the tree lives in ``xfer.protocol.errors`` (the protocol
package imports nothing of ours), and is named here for the layers above it."""

from __future__ import annotations

from .protocol.errors import (
    Declined,
    FrameTooLarge,
    IntegrityFailure,
    Interrupted,
    LocalFileError,
    LocalProtocolError,
    PeerGone,
    PeerProtocolError,
    ProtocolError,
    RelayGone,
    RelayUnreachable,
    RemoteProtocolError,
    RoomError,
    UsageError,
    VersionMismatch,
    XferError,
)

__all__ = [
    "Declined",
    "FrameTooLarge",
    "IntegrityFailure",
    "Interrupted",
    "LocalFileError",
    "LocalProtocolError",
    "PeerGone",
    "PeerProtocolError",
    "ProtocolError",
    "RelayGone",
    "RelayUnreachable",
    "RemoteProtocolError",
    "RoomError",
    "UsageError",
    "VersionMismatch",
    "XferError",
]
