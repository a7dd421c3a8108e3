"""The errors people meet, each with its one-line message and exit status.

The CLI prints ``xfer: <message>`` and exits with ``exit_code``; ``--debug``
shows the traceback too. Exit statuses (also in docs/cli.md):

    0  success
    1  any other error
    2  usage error (bad option, bad room code, bad relay address)
    3  relay unreachable, or the relay went away
    4  room not found, full, or the relay refused the join
    5  the peer left or cancelled during the transfer
    6  the offer was declined
    7  integrity: a file's SHA-256 did not match
    8  local files: missing, unreadable, not enough space, permission denied
    9  protocol error or version mismatch with the other side
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations


class XferError(Exception):
    """Base of every error that ends a command with a clear message.

    ``code`` (for programs, in ``--json`` error events) defaults per class and can
    be made more precise per error: ``LocalFileError(msg, "no-space")``.
    """

    exit_code = 1
    code = "error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(XferError):
    exit_code = 2
    code = "usage"


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


class PeerProtocolError(XferError):
    exit_code = 9
    code = "protocol"


class Interrupted(XferError):
    exit_code = 130
    code = "interrupted"
