"""The one exception tree of xfer, as h11 and websockets keep theirs: our own misuse of
the protocol apart from a peer's, and every error a person may meet under ``XferError``.

Each class carries the message a person reads, an ``exit_code`` (the CLI's exit status)
and a short machine-readable ``code`` (for ``error`` messages and ``--json``), which an
instance may make more precise: ``LocalFileError(msg, "no-space")``.

- ``XferError`` (exit 1): base of every error that ends a command with a clear message.
  - ``UsageError`` (2): a bad option, room code or relay address.
  - ``LocalProtocolError`` (1): this program broke the protocol (a machine was driven
    in a state where that is not allowed); a bug, never a peer's doing.
  - ``RemoteProtocolError`` (9): a peer or the relay broke the protocol; ``code`` says how.
    - ``ProtocolError``: bytes from the network that do not parse or break a limit
      (the only exception that parsing raises).
      - ``VersionMismatch``: the other side speaks another major version.
      - ``FrameTooLarge``: a frame is larger than the limit for its kind.
  - ``RelayUnreachable`` (3), ``RelayGone`` (3): the relay cannot be reached, or went away.
  - ``RoomError`` (4): room not found, full, or the relay refused the join.
  - ``PeerGone`` (5): the peer left or cancelled during the transfer.
  - ``Declined`` (6): the offer was declined.
  - ``IntegrityFailure`` (7): a file's SHA-256 did not match.
  - ``LocalFileError`` (8): local files missing, unreadable, no space, no permission.
  - ``Interrupted`` (130): Ctrl-C.

Exit statuses are also listed in docs/cli.md.
"""

from __future__ import annotations


class XferError(Exception):
    """Base of every error that ends a command with a clear message."""

    exit_code = 1
    code = "error"
    from_peer = False  # the other side failed (its disk, its checks, its messages), not this one

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def of_peer(self) -> XferError:
        """This error, marked as the other side's."""
        self.from_peer = True
        return self


class UsageError(XferError):
    exit_code = 2
    code = "usage"


class LocalProtocolError(XferError):
    """This side broke the protocol: an event that its own state does not allow (a bug)."""

    exit_code = 1
    code = "local-protocol"


class RemoteProtocolError(XferError):
    """A peer or the relay broke the protocol."""

    exit_code = 9
    code = "protocol"


class ProtocolError(RemoteProtocolError, ValueError):
    """A message from the network is malformed or breaks a limit."""


class VersionMismatch(ProtocolError):
    """The other side speaks a protocol major version that this one does not."""

    code = "version"


class FrameTooLarge(ProtocolError):
    """A frame is larger than the limit for its kind."""

    code = "too-large"


class RelayUnreachable(XferError):
    exit_code = 3
    code = "relay-unreachable"


class RelayGone(XferError):
    """The relay closed the connection: restarting, or lost."""

    exit_code = 3
    code = "relay-gone"


class RoomError(XferError):
    exit_code = 4
    code = "room"


class PeerGone(XferError):
    exit_code = 5
    code = "peer-left"


class Declined(XferError):
    exit_code = 6
    code = "declined"


class IntegrityFailure(XferError):
    exit_code = 7
    code = "hash-mismatch"


class LocalFileError(XferError):
    exit_code = 8
    code = "local-file"


class Interrupted(XferError):
    exit_code = 130
    code = "interrupted"


PeerProtocolError = RemoteProtocolError  # the name the transfer layer has used
