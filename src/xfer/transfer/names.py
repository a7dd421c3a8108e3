"""Peer-supplied names: turning them into safe local files and safe terminal text.

Every name that arrives over the relay is attacker-controlled; other
peer-to-peer transfer tools show what goes wrong when it is trusted:

* Traversal. qrcp's receive mode joined a multipart ``filename`` of "../x"
  onto its folder (qrcp#223); croc let a sender pick ``FolderRemote: "../"``
  and create files such as ``~/.ssh/authorized_keys`` (croc#593,
  GHSA-ppjh-xp5v-46wc) or overwrite them via ZIP extraction (CVE-2023-43616);
  magic-wormhole has to vet ``..``/absolute entries of received zips. So
  ``safe_name`` keeps only the last component, split on *both* ``/`` and
  ``\\`` (peers may run Windows), drops ``C:`` prefixes and maps ``.``, ``..``
  and empty names to ``file``.
* Windows/FAT. LocalSend failed or aliased on names with ``<>:"|?*``, device
  names and trailing dots: those characters become ``_``, trailing dots and
  spaces go (Windows drops them), and ``CON``, ``COM1``, ``LPT¹`` ... get a
  ``_`` prefix, since opening them opens a device, not a file.
* Terminal injection. croc printed names verbatim, so ESC/CSI/OSC sequences
  could rewrite the receiver's screen or plant OSC 8 links
  (GHSA-364c-vvqx-446c). Control and format characters (U+202E makes
  ``gpj.exe`` read ``exe.jpg``; zero-width ones make two names look alike)
  are dropped from file names and shown escaped by ``display_name``, whose
  output is also rich-markup-escaped so ``[link=...]`` prints literally.
* Aliasing and limits. NFC makes the NFD and NFC spellings of ``é.txt`` one
  name (macOS treats them as one file anyway); names are capped at 255 UTF-8
  bytes (NAME_MAX) without splitting a character, keeping the extension.
* Clobbering and symlinks. ``finalize`` never replaces anything unless asked
  and never writes *through* a symlink planted in the folder: ``link()`` and
  ``O_CREAT|O_EXCL|O_NOFOLLOW`` + ``rename()`` fail on, or replace, the
  directory entry itself (even a dangling link), never what it points to.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
from pathlib import Path

from ..protocol.names import (
    MAX_DEPTH,
    MAX_NUMBERED,
    NAME_MAX,
    PARTIAL_SUFFIX,
    STATE_SUFFIX,
    _check_component,
    _numbered,
    _truncate,
    escape_hostile,
    safe_name,
    safe_relpath,
)

# link() failures meaning "this filesystem has no hard links", not "name taken"
_NO_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP}

# Fault injection for the tests of placement (tests/faults/test_reliability.py): with
# XFER_TEST_KILL_AT=STEP in the environment the process ends at that step of placing a
# file, at once and without clean-up, as a kill -9 would. Unset (always, outside the
# tests), ``fault_point`` does nothing.
_KILL_AT = os.environ.get("XFER_TEST_KILL_AT", "")
KILLED_STATUS = 86


def fault_point(step: str) -> None:
    if step == _KILL_AT:
        os._exit(KILLED_STATUS)


def _ellipsize(tokens: list[str], limit: int) -> list[int | None]:
    """Indices of the tokens shown, ``None`` marking the middle ellipsis."""
    if sum(map(len, tokens)) <= limit:
        return list(range(len(tokens)))
    head: list[int | None] = []
    tail: list[int | None] = []
    for out, order, budget in (
        (head, range(len(tokens)), limit // 2),
        (tail, range(len(tokens) - 1, -1, -1), (limit - 1) // 2),
    ):
        for i in order:
            if len(tokens[i]) > budget:
                break
            out.append(i)
            budget -= len(tokens[i])
    return head + [None] + tail[::-1]


def display_name(raw: str, limit: int = 200) -> str:
    """Printable, rich-markup-safe rendering of a peer-supplied string (never raises)."""
    from rich.markup import escape

    emoji: dict[str, str] | None
    try:
        from rich._emoji_codes import EMOJI as emoji
    except ImportError:  # pragma: no cover - private rich module moved: defuse all
        emoji = None
    s = raw if isinstance(raw, str) else str(raw)
    limit = max(int(limit), 1)
    if len(s) > 2 * limit + 2:  # every char shows as >= 1 char: the middle is never shown
        s = s[: limit + 1] + s[-(limit + 1) :]
    tokens = [escape_hostile(ch) for ch in s]  # one token per character, for the ellipsis
    if tokens and tokens[-1] == "\\":  # would escape whatever tag the caller puts next
        tokens[-1] = "\\x5c"
    # rich turns ":smile:" into an emoji. Escape the opening colon of *every* ":code:"
    # substring, so no pairing of colons, before or after truncation, yields one.
    colons = [i for i, t in enumerate(tokens) if t == ":"]
    for i, j in zip(colons, colons[1:]):
        code = "".join(tokens[i + 1 : j])
        if any(ch.isspace() for ch in code):
            continue
        bare = re.sub(r"-(emoji|text)$", "", code).lower()
        if emoji is None or code.lower() in emoji or bare in emoji:
            tokens[i] = "\\x3a"
    return escape("".join("…" if i is None else tokens[i] for i in _ellipsize(tokens, limit)))


def display_text(raw: str, limit: int = 100_000) -> str:
    """A peer's text for people: ``display_name`` line by line, so its line breaks stay line
    breaks (each line after the first indented by two spaces) while every other control
    character is still shown escaped."""
    lines = str(raw).replace("\r\n", "\n").split("\n")
    return "\n  ".join(display_name(line, limit) for line in lines)


# How much of a name the hidden files beside it show. Every name up to NAME_MAX must
# arrive, so these files cannot hold a whole name and their suffixes too: they take its
# first bytes (to tell a person what they are) and the key (which keeps them apart),
# about 100 bytes in all, whatever the name's length and within what any file system takes.
TEMP_NAME_BYTES = 64


def partial_path(folder: Path, name: str, key: str) -> Path:
    """Hidden in-progress file ``.NAME.KEY.xfer-part`` for *name*, ``NAME`` cut to its
    first ``TEMP_NAME_BYTES`` bytes (whole characters): with its state file beside it
    (``.xfer-state``, and ``.xfer-state.tmp`` while it is rewritten) far below 255 bytes."""
    _check_component(name)
    if not key or not key.isalnum() or len(key) > 32:
        raise ValueError(f"not a partial-file key: {key!r}")
    return Path(folder) / f".{_truncate(name, TEMP_NAME_BYTES)}.{key}{PARTIAL_SUFFIX}"


def _place(partial: Path, folder: Path, name: str, *, link: bool = True, max_numbered: int = MAX_NUMBERED) -> Path:
    """Move *partial* to the first free ``name``, ``name (1)``, ... ``name (max_numbered)``,
    without clobbering."""
    for n in range(max_numbered + 1):
        candidate = folder / _numbered(name, n)
        if link:
            try:
                os.link(partial, candidate)  # EEXIST for anything there, links included
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                link = False  # filesystem without hard links: reserve + rename
            else:
                fault_point("linked")  # two names for one file until the next line
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


def finalize(partial: Path, folder: Path, name: str, *, overwrite: bool, max_numbered: int = MAX_NUMBERED) -> Path:
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
            mode = 0
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            try:
                os.replace(partial, target)
                return target
            except (IsADirectoryError, NotADirectoryError):
                pass  # swapped for a directory meanwhile: fall back to a new name
    return _place(partial, folder, name, max_numbered=max_numbered)


__all__ = [
    "MAX_DEPTH",
    "MAX_NUMBERED",
    "NAME_MAX",
    "PARTIAL_SUFFIX",
    "STATE_SUFFIX",
    "display_name",
    "fault_point",
    "finalize",
    "partial_path",
    "safe_name",
    "safe_relpath",
]
