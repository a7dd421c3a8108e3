"""What every control message's fields must be: the protocol's ceilings and one check
per kind of field. A failed check raises ``ProtocolError`` naming the message and field.

The ceilings are what the wire format allows at most; a relay or peer may hold its
peers to less through ``Limits`` (``parse_message`` applies those), never to more.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import ProtocolError

PROTOCOL_VERSION = "2.0"
PROTOCOL_MAJOR = 2

# The ceilings (``Limits`` takes its defaults from them and may only lower them).
MAX_CONTROL_FRAME = 1024 * 1024  # bytes of JSON in one text frame (an offer of many files)
MAX_FILES_PER_OFFER = 10_000
# What an accept may say it holds: one resume point per file, so at most one per offered file
# in all. Each costs the sender a hash of that much of its file (9,000 for one file took minutes).
MAX_RESUME_POINTS_PER_FILE = 1
MAX_NAME_CHARS = 4096  # a file's relative path as sent, before the receiver makes it safe
MAX_PEER_NAME_CHARS = 64
MAX_TEXT_CHARS = 64 * 1024
MAX_REASON_CHARS = 500
MAX_ID = 2**32 - 1
MAX_FILE_SIZE = 2**53 - 1  # the largest integer JSON carries exactly
ROLES = ("sender", "receiver", "peer")
ROOM_CLOSED = "room-closed"  # the error code of a receiver turned away from a full room

HEX64 = re.compile(r"^[0-9a-f]{64}$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
NAMEPLATE = re.compile(r"^[1-9][0-9]{0,5}$")  # 1 ... 999999: a room, as the relay knows it
MAX_NAMEPLATE = 999_999
VERSION_PATTERN = re.compile(r"^(\d{1,4})\.(\d{1,4})$")
ERROR_CODE_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,39}$")


# -- field checks -----------------------------------------------------------


def fail(cls_name: str, field: str, why: str) -> ProtocolError:
    return ProtocolError(f"{cls_name}.{field}: {why}")


def check_int(obj: Any, field: str, lo: int, hi: int, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if type(value) is not int or not lo <= value <= hi:
        raise fail(obj.type, field, f"must be a whole number from {lo} to {hi}")


def check_str(obj: Any, field: str, max_chars: int, *, empty: bool = True, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if type(value) is not str or len(value) > max_chars or (not empty and not value):
        raise fail(obj.type, field, f"must be text of at most {max_chars} characters")


def check_pattern(obj: Any, field: str, pattern: re.Pattern[str], what: str) -> None:
    value = getattr(obj, field)
    if type(value) is not str or not pattern.match(value):
        raise fail(obj.type, field, f"must be {what}")


def check_per_index(obj: Any, field: str, most: int) -> None:
    """No more than ``most`` items of the tuple ``field`` name the same ``index``."""
    counts: dict[int, int] = {}
    for item in getattr(obj, field):
        counts[item.index] = counts.get(item.index, 0) + 1
        if counts[item.index] > most:
            raise fail(obj.type, field, f"more than {most} point(s) for file {item.index}")


def check_bool(obj: Any, field: str) -> None:
    if type(getattr(obj, field)) is not bool:
        raise fail(obj.type, field, "must be true or false")


def check_tuple(obj: Any, field: str, item: type, max_items: int, min_items: int = 0) -> None:
    value = getattr(obj, field)
    if type(value) is not tuple or not min_items <= len(value) <= max_items:
        raise fail(obj.type, field, f"must be a list of {min_items} to {max_items} items")
    if any(type(v) is not item for v in value):
        raise fail(obj.type, field, f"items must be {item.__name__}")


def check_float(obj: Any, field: str, optional: bool = False) -> None:
    value = getattr(obj, field)
    if value is None and optional:
        return
    if type(value) not in (int, float) or not -1e12 < value < 1e12:
        raise fail(obj.type, field, "must be a number")
