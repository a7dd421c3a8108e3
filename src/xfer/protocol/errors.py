"""The protocol's error tree.

``ProtocolError`` is the only exception that parsing bytes from the network may
raise. Every subclass carries a short machine-readable ``code`` that travels in
``error`` messages and a message fit for a person.

- ``ProtocolError``: a peer or the relay sent something that breaks the protocol.
  - ``VersionMismatch``: the peer speaks another major version.
  - ``FrameTooLarge``: a frame is larger than the limit for its kind.
"""

from __future__ import annotations


class ProtocolError(ValueError):
    """A message from the network is malformed or breaks a limit."""

    code = "protocol"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class VersionMismatch(ProtocolError):
    """The other side speaks a protocol major version that this one does not."""

    code = "version"


class FrameTooLarge(ProtocolError):
    """A frame is larger than the limit for its kind."""

    code = "too-large"
