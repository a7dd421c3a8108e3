"""Peer-supplied names: turning them into safe local files and safe terminal text.

Every file name that arrives over the relay is attacker-controlled. Other
peer-to-peer transfer tools show what goes wrong when it is trusted:

* Traversal. qrcp's receive mode joined the multipart ``filename`` ("../x")
  onto its folder (qrcp#223); croc let a sender choose ``FolderRemote: "../"``
  and write anywhere the receiver can (croc#593, GHSA-ppjh-xp5v-46wc, e.g. a
  new ``~/.ssh/authorized_keys``) and overwrite files through ZIP extraction
  (CVE-2023-43616); magic-wormhole must reject ``..``/absolute zip entries;
  LocalSend had to sanitise names with ``<>:"|?*``, reserved and trailing-dot
  names that fail or alias on Windows/FAT. So ``safe_name`` keeps only the
  last component split on *both* ``/`` and ``\\`` (peers may be Windows), drops
  drive prefixes, maps ``.``/``..``/empty to ``file``, replaces Windows-invalid
  characters, and prefixes reserved device names (``CON``, ``COM1``, ``LPT¹``)
  which would otherwise open a device instead of a file on Windows.
* Terminal injection. croc printed names verbatim, so ESC/CSI/OSC sequences
  could rewrite the receiver's screen or plant OSC 8 links
  (GHSA-364c-vvqx-446c). Control characters and Unicode format characters
  (bidi overrides such as U+202E make ``gpj.exe`` look like ``exe.jpg``;
  zero-width characters make two names look identical) are removed from
  file names and shown escaped by ``display_name``, which is also escaped for
  rich markup so ``[link=...]`` in a name prints literally.
* Aliasing. NFC normalisation makes the NFD and NFC spellings of ``é.txt`` one
  name (macOS would otherwise collide them silently); trailing dots/spaces are
  stripped because Windows does; names are capped at 255 UTF-8 bytes (the
  usual NAME_MAX) without splitting a character and keeping the extension.
* Clobbering and symlinks. A received file never replaces anything unless
  asked, and never writes *through* a symlink planted in the folder: it is
  placed with ``link()`` (fails if anything, even a dangling symlink, exists)
  or ``O_CREAT|O_EXCL|O_NOFOLLOW`` + ``rename()``, both of which act on the
  directory entry, never on what it points to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import unicodedata
from pathlib import Path

NAME_MAX = 255
MAX_NUMBERED = 10_000
_INVALID = re.compile(r'[<>:"|?*]')
_DRIVE = re.compile(r"^[A-Za-z]:")
_SEPARATORS = re.compile(r"[/\\]")
_RESERVED = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{d}" for dev in ("COM", "LPT") for d in "0123456789¹²³"]
)
_EXT = re.compile(r"\.[^.\s]{1,16}")
_COMPRESSED = frozenset([".gz", ".bz2", ".xz", ".zst", ".lz", ".lzma", ".lz4", ".br", ".z"])
_INNER_EXT = re.compile(r"\.[A-Za-z0-9]{1,5}")
_LINK_UNSUPPORTED = {
    errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP,
}
# rich replaces ":name:" emoji codes; the same pattern rich uses.
_EMOJI_CODE = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")


def _hostile(ch: str) -> bool:
    """Control (C0, C1, DEL), format/bidi, surrogate, line/paragraph separator."""
    return unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp")


def _blen(s: str) -> int:
    return len(s.encode("utf-8", "surrogatepass"))


def _truncate(s: str, limit: int) -> str:
    """Longest prefix of *s* that fits in *limit* UTF-8 bytes (whole characters)."""
    return s.encode("utf-8", "surrogatepass")[: max(limit, 0)].decode("utf-8", "ignore")


def _split_ext(name: str) -> tuple[str, str]:
    """``archive.tar.gz`` -> (``archive``, ``.tar.gz``); ``.bashrc`` -> (``.bashrc``, ``)."""
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


def _fit(stem: str, ext: str, limit: int = NAME_MAX) -> str:
    return _truncate(stem, limit - _blen(ext)) + ext


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
        s = _fit(stem, ext) if stem and _blen(ext) <= 64 else _truncate(s, NAME_MAX).rstrip(". ")
    return s if s not in ("", ".", "..") else "file"


def display_name(raw: str, limit: int = 200) -> str:
    """Printable, rich-markup-safe rendering of a peer-supplied string (never raises)."""
    from rich.markup import escape

    s = raw if isinstance(raw, str) else str(raw)
    tokens = []
    for ch in s:
        if _hostile(ch):
            o = ord(ch)
            ch = f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"
        tokens.append(ch)
    limit = max(int(limit), 1)
    if sum(map(len, tokens)) > limit:
        budget_head, budget_tail = limit // 2, (limit - 1) // 2
        head, tail = [], []
        for t in tokens:
            if len(t) > budget_head:
                break
            head.append(t)
            budget_head -= len(t)
        for t in reversed(tokens[len(head):]):
            if len(t) > budget_tail:
                break
            tail.append(t)
            budget_tail -= len(t)
        tokens = head + ["…"] + tail[::-1]
    text = "".join(tokens)
    try:
        from rich._emoji_codes import EMOJI
    except ImportError:  # pragma: no cover - private rich module moved
        EMOJI = None

    def _defuse(m: re.Match[str]) -> str:
        if EMOJI is not None and m.group(2).lower() not in EMOJI:
            return m.group(1)
        return "\\x3a" + m.group(1)[1:]

    while (defused := _EMOJI_CODE.sub(_defuse, text)) != text:
        text = defused  # each pass escapes a colon, so this terminates
    return escape(text)


def _check_component(name: str) -> None:
    if not name or name in (".", "..") or _SEPARATORS.search(name) or "\0" in name:
        raise ValueError(f"not a single safe path component: {name!r}")


def partial_path(folder: Path, name: str, transfer: int, index: int) -> Path:
    """Hidden in-progress file for *name*; the component stays <= 255 bytes."""
    _check_component(name)
    suffix = f".{transfer:08x}-{index}.xfer-part"
    return Path(folder) / f".{_truncate(name, NAME_MAX - 1 - _blen(suffix))}{suffix}"


def _numbered(name: str, n: int) -> str:
    if n == 0:
        return name
    stem, ext = _split_ext(name)
    return _fit(stem, f" ({n}){ext}")


def _place(partial: Path, folder: Path, name: str, *, link: bool = True) -> Path:
    """Move *partial* to the first free ``name``, ``name (1)``, ... without clobbering."""
    for n in range(MAX_NUMBERED + 1):
        candidate = folder / _numbered(name, n)
        if link:
            try:
                os.link(partial, candidate)  # EEXIST for anything there, links included
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _LINK_UNSUPPORTED:
                    raise
                link = False  # filesystem without hard links: reserve + rename
            else:
                os.unlink(partial)
                return candidate
        flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0)
        try:
            os.close(os.open(candidate, flags | getattr(os, "O_CLOEXEC", 0), 0o600))
        except FileExistsError:
            continue
        try:
            os.replace(partial, candidate)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(candidate)
            raise
        return candidate
    raise FileExistsError(errno.EEXIST, f"no free name for {name!r} in {folder}")


def finalize(partial: Path, folder: Path, name: str, *, overwrite: bool) -> Path:
    """Atomically move the verified *partial* (inside *folder*) to ``folder/name``.

    Without *overwrite* nothing existing is replaced (numbered names instead);
    with it a regular file or a symlink *entry* is replaced, never its target.
    """
    _check_component(name)
    partial, folder = Path(partial), Path(folder)
    if not stat.S_ISREG(os.lstat(partial).st_mode):
        raise ValueError(f"partial file is not a regular file: {partial}")
    if overwrite:
        target = folder / name
        try:
            mode = os.lstat(target).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            try:
                os.replace(partial, target)
                return target
            except (IsADirectoryError, NotADirectoryError):
                pass  # swapped for a directory meanwhile: fall back to a new name
    return _place(partial, folder, name)
