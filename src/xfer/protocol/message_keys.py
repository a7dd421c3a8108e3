"""Protocol 2.0's messages for keys and sealing (docs/protocol.md).

Clear, routed by the relay between two peers:

- ``pake``: one side's SPAKE2 message (``msg``) and fresh ``nonce``; a page that holds the
  QR link's secret sends ``link: true`` and no ``msg``.
- ``confirm``: the tag that proves the sender of it holds the same key.
- ``sealed``: every other message between peers, sealed in the control channel of its
  direction (``box``); the relay routes it on ``to`` like any other.
- ``subscribe`` / ``unsubscribe``: what the relay needs for fan-out, now that it cannot
  read ``accept``: this receiver takes (or no longer takes) the chunks of ``transfer``.

Only inside a ``sealed``:

- ``hi``: the device name, which the relay no longer learns from ``hello``.

Binary values travel as standard base64 with padding (what ``btoa`` makes on the page).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, ClassVar

from .message_fields import MAX_CONTROL_FRAME, MAX_ID, MAX_PEER_NAME_CHARS, check_bool, check_int, check_str, fail
from .message_types import Message

B64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")
PAKE_MESSAGE_BYTES = 33  # SPAKE2 on Ed25519: a side byte and a point
NONCE_BYTES = 16
TAG_BYTES = 32  # an HKDF-SHA256 output


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    """Bytes of a field that passed ``check_b64``."""
    return base64.b64decode(text.encode("ascii"), validate=True)


def check_b64(
    obj: Any, field: str, *, size: int | None = None, max_size: int = MAX_CONTROL_FRAME, optional: bool = False
) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    what = f"{size} bytes in base64" if size is not None else "base64"
    if type(value) is not str or len(value) > max_size * 4 // 3 + 4 or not B64.match(value) or len(value) % 4:
        raise fail(obj.type, field, f"must be {what}")
    try:
        data = b64decode(value)
    except (binascii.Error, ValueError):
        raise fail(obj.type, field, f"must be {what}") from None
    if size is not None and len(data) != size:
        raise fail(obj.type, field, f"must be {what}")


@dataclass(frozen=True, kw_only=True)
class Pake(Message):
    type: ClassVar[str] = "pake"
    routed: ClassVar[bool] = True
    nonce: str
    msg: str | None = None
    link: bool = False

    def check(self) -> None:
        check_b64(self, "nonce", size=NONCE_BYTES)
        check_b64(self, "msg", size=PAKE_MESSAGE_BYTES, optional=True)
        check_bool(self, "link")
        if not self.link and self.msg is None:
            raise fail(self.type, "msg", "is needed unless link is true")


@dataclass(frozen=True, kw_only=True)
class Confirm(Message):
    type: ClassVar[str] = "confirm"
    routed: ClassVar[bool] = True
    tag: str

    def check(self) -> None:
        check_b64(self, "tag", size=TAG_BYTES)


@dataclass(frozen=True, kw_only=True)
class Sealed(Message):
    type: ClassVar[str] = "sealed"
    routed: ClassVar[bool] = True
    box: str

    def check(self) -> None:
        check_b64(self, "box")
        if len(self.box) < 24:  # a 16-byte tag and at least a few bytes of JSON
            raise fail(self.type, "box", "is too short to be sealed")


@dataclass(frozen=True, kw_only=True)
class Subscribe(Message):
    """To the sender: this receiver takes the chunks of ``transfer`` (the relay fans them out)."""

    type: ClassVar[str] = "subscribe"
    routed: ClassVar[bool] = True
    transfer: int

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)


@dataclass(frozen=True, kw_only=True)
class Unsubscribe(Message):
    type: ClassVar[str] = "unsubscribe"
    routed: ClassVar[bool] = True
    transfer: int

    def check(self) -> None:
        check_int(self, "transfer", 1, MAX_ID)


@dataclass(frozen=True, kw_only=True)
class Hi(Message):
    """Sealed only: the device name of the peer that sealed it. A page that receives files
    through the relay's download bridge says ``download: "relay"``: its transfers then
    travel in clear between the sender and the relay (the page told its user so first)."""

    type: ClassVar[str] = "hi"
    routed: ClassVar[bool] = True
    name: str
    download: str | None = None

    def check(self) -> None:
        check_str(self, "name", MAX_PEER_NAME_CHARS)
        if self.download not in (None, "relay"):
            raise fail(self.type, "download", "must be relay or absent")


KEY_MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.type: cls for cls in (Pake, Confirm, Sealed, Subscribe, Unsubscribe, Hi)
}
CLEAR_BETWEEN_PEERS = frozenset({"pake", "confirm", "subscribe", "unsubscribe"})  # routed, never sealed
