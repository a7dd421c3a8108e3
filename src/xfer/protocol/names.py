"""Names from a peer, made safe: pure functions, no file system (that is ``transfer.names``).

Every name that arrives over the relay is attacker-controlled. The receiver (``transfer``)
and the relay's download bridge (``relay``) both turn them into safe path components here;
``transfer/names.py`` tells the story of what goes wrong when they are trusted (traversal,
Windows device names, terminal injection, aliasing) and places files without clobbering.
"""

from __future__ import annotations

import re
import unicodedata

NAME_MAX = 255
PARTIAL_SUFFIX = ".xfer-part"
STATE_SUFFIX = ".xfer-state"
MAX_NUMBERED = 10_000
_INVALID = re.compile(r'[<>:"|?*]')
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"] + [f"{dev}{d}" for dev in ("COM", "LPT") for d in "0123456789¹²³"]
)
_EXT = re.compile(r"\.[^.\s]{1,16}")
_COMPRESSED = frozenset([".gz", ".bz2", ".xz", ".zst", ".lz", ".lzma", ".lz4", ".br", ".z"])
_INNER_EXT = re.compile(r"\.[A-Za-z0-9]{1,5}")


def _hostile(ch: str) -> bool:
    """Control (C0, C1, DEL), format/bidi, surrogate, line/paragraph separator."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def escape_hostile(s: str, *, json: bool = False) -> str:
    """What a peer wrote, with every ``_hostile`` character made visible: the one escaping
    of peer-written strings (names, texts, reasons, device names) before any output.

    For people ``\\x1b``, ``\\u202e``, ``\\U000e0001``; with ``json`` the same characters
    as JSON's own ``\\uXXXX`` escapes (a surrogate pair above U+FFFF), so a JSON line
    decodes to exactly what the peer wrote while none of them reaches a terminal raw.
    """
    return "".join(_visible(ch, json) if _hostile(ch) else ch for ch in s)


def _visible(ch: str, json: bool = False) -> str:
    code = ord(ch)
    if json:
        if code < 0x10000:
            return f"\\u{code:04x}"
        high, low = divmod(code - 0x10000, 0x400)
        return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _blen(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _truncate(s: str, limit: int) -> str:
    """Longest prefix of *s* that fits in *limit* UTF-8 bytes (whole characters)."""
    return s.encode("utf-8", "surrogatepass")[: max(limit, 0)].decode("utf-8", "ignore")


def _split_ext(name: str) -> tuple[str, str]:
    """``archive.tar.gz`` -> (``archive``, ``.tar.gz``); ``.bashrc`` -> (``.bashrc``, ``''``)."""
    body = name.lstrip(".")
    lead = name[: len(name) - len(body)]
    i = body.rfind(".")
    if i <= 0 or not _EXT.fullmatch(body[i:]):
        return name, ""
    stem, ext = body[:i], body[i:]
    j = stem.rfind(".")
    if ext.lower() in _COMPRESSED and j > 0 and _INNER_EXT.fullmatch(stem[j:]):
        stem, ext = stem[:j], stem[j:] + ext
    return lead + stem, ext


def safe_name(raw: str) -> str:
    """Turn a peer-supplied file name into one safe path component (never raises)."""
    s = raw if isinstance(raw, str) else str(raw)
    s = "".join(ch for ch in s if not _hostile(ch))
    s = unicodedata.normalize("NFC", s)
    s = "".join(ch for ch in s if not _hostile(ch))
    parts = [p for p in _SEPARATORS.split(s) if p]
    s = parts[-1] if parts else ""
    s = _DRIVE.sub("", s)
    s = _INVALID.sub("_", s)
    s = s.lstrip(" ").rstrip(". ")
    if s.split(".", 1)[0].rstrip(" ").upper() in _RESERVED:
        s = "_" + s
    if _blen(s) > NAME_MAX:
        stem, ext = _split_ext(s)
        if ext:
            s = _truncate(stem, NAME_MAX - _blen(ext)) + ext
        else:
            s = _truncate(s, NAME_MAX).rstrip(". ")
    if s.endswith((PARTIAL_SUFFIX, STATE_SUFFIX)):  # a peer must not name a file like a partial or its state
        s = _truncate(s, NAME_MAX - 1) + "_"
    return s if s not in ("", ".", "..") else "file"


MAX_DEPTH = 64


def safe_relpath(raw: str) -> list[str]:
    """A peer-supplied relative path (``photos/2024/a.jpg``) as safe components.

    Split on ``/`` and ``\\``; empty, ``.`` and ``..`` parts are dropped (so nothing
    climbs out), each remaining part goes through ``safe_name``, and the depth is
    capped. Always at least one component.
    """
    parts = [p for p in _SEPARATORS.split(raw if isinstance(raw, str) else str(raw)) if p not in ("", ".", "..")]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]  # a drive, as in C:\\Windows
    safe = [safe_name(p) for p in parts[-MAX_DEPTH:]]
    return safe or ["file"]


def recorded_relpath(raw: object) -> list[str] | None:
    """A relative path read back from the receiver's own state file (``.xfer-state``), as
    components, trusted no more than a peer's name: only a path that ``safe_relpath`` would
    make, every component already safe (no ``..``, nothing absolute, no ``\\``); ``"."``
    is the target folder itself (``[]``). Anything else: ``None``."""
    if not isinstance(raw, str):
        return None
    if raw == ".":
        return []
    parts = raw.split("/")
    if len(parts) > MAX_DEPTH or any(part != safe_name(part) for part in parts):
        return None
    return parts


def _check_component(name: str) -> None:
    if not name or name in (".", "..") or _SEPARATORS.search(name) or "\0" in name:
        raise ValueError(f"not a single safe path component: {name!r}")


def _numbered(name: str, n: int) -> str:
    if n == 0:
        return name
    stem, ext = _split_ext(name)
    ext = f" ({n}){ext}"
    return _truncate(stem, NAME_MAX - _blen(ext)) + ext
