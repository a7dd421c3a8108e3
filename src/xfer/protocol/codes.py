"""Room codes and the room ids that the relay sees.

A room code is 16 characters of Crockford base32 (80 bits from ``secrets``),
printed in four groups: ``7KQ2-M9XD-41TR-PZ8H``. People type it, so parsing
forgives case, spaces, hyphens and the look-alikes O/0 and I/L/1.

The relay never sees the code. Peers send ``room_id(code)``, a SHA-256 of the
code under a fixed context string, so that a later version can derive an
encryption key from the same code without the relay knowing it, and so that no
relay log can ever contain a code.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from .errors import ProtocolError

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford: no I, L, O, U
CODE_CHARS = 16  # 16 x 5 bits = 80 bits
GROUP = 4
ROOM_ID_CONTEXT = b"xfer room id v1\x00"
ROOM_ID_RE = re.compile(r"^[0-9a-f]{32}$")

_LOOKALIKES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_SEPARATORS = re.compile(r"[\s\-_.]+")


def new_code() -> str:
    """A fresh room code with 80 bits of randomness, grouped for reading."""
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
    return format_code(raw)


def format_code(raw: str) -> str:
    return "-".join(raw[i : i + GROUP] for i in range(0, len(raw), GROUP))


def parse_code(text: str) -> str:
    """Normalise what a person typed into the canonical grouped form.

    Raises ``ProtocolError`` (code ``bad-code``) when it cannot be a room code.
    """
    if not isinstance(text, str) or len(text) > 64:
        raise ProtocolError("a room code has 16 letters and digits", code="bad-code")
    raw = _SEPARATORS.sub("", text).upper().translate(_LOOKALIKES)
    if len(raw) != CODE_CHARS or any(c not in ALPHABET for c in raw):
        raise ProtocolError(
            "a room code has 16 letters and digits, like 7KQ2-M9XD-41TR-PZ8H",
            code="bad-code",
        )
    return format_code(raw)


def room_id(code: str) -> str:
    """The id that peers send to the relay for ``code`` (32 hex digits)."""
    canonical = parse_code(code).replace("-", "")
    return hashlib.sha256(ROOM_ID_CONTEXT + canonical.encode("ascii")).hexdigest()[:32]


def short_code(code: str) -> str:
    """The code abbreviated for repeated mentions: ``7KQ2-…-PZ8H``."""
    groups = code.split("-")
    return f"{groups[0]}-…-{groups[-1]}" if len(groups) > 2 else code
