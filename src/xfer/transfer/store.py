"""Where a receiver keeps what it has of each offered file, so that a transfer can resume.

Each offered file has a key derived from its identity as the sender described it
(name, size, modification time). Beside the hidden partial file
``.NAME.KEY.xfer-part`` lies a small state file ``.NAME.KEY.xfer-state`` (JSON)
that records that identity and, once the file is verified and renamed, where it
went. A receiver started again, or reconnected, offers the sender each file's
``offset`` and the SHA-256 of those bytes; the sender checks them against its own
file and starts from there or from zero. A finished offer removes every state file.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LocalFileError
from ..protocol import FileInfo, ResumePoint
from ..protocol.message_fields import HEX64
from ..protocol.names import MAX_NUMBERED, _numbered, recorded_relpath
from .names import fault_point, finalize, partial_path
from .tree import Placement

STATE_SUFFIX = ".xfer-state"
MAX_STATE_BYTES = 64 * 1024


def file_key(info: FileInfo) -> str:
    """A short, stable key for one offered file's identity."""
    identity = json.dumps([info.name, info.size, info.mtime], ensure_ascii=False)
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class Slot:
    """One offered entry's places on disk. Partial and state files stay at the top of
    the target folder whatever the entry's path; the file moves into place when verified."""

    info: FileInfo
    parts: list[str]  # the safe relative path
    partial: Path
    state: Path

    @property
    def name(self) -> str:
        return "/".join(self.parts)

    def identity(self) -> dict[str, Any]:
        return {"v": 1, "name": self.info.name, "size": self.info.size, "mtime": self.info.mtime}

    def recorded_top(self) -> tuple[str, str] | None:
        """The top-level folder an interrupted run chose for this entry, if it recorded one."""
        state = _read_state(self)
        dest = recorded_relpath(state.get("dest")) if state else None
        if len(self.parts) > 1 and dest:
            return self.parts[0], dest[0]
        return None


def hidden(parts: list[str]) -> bool:
    """An entry named with a leading dot at any depth (``.bashrc``, ``.ssh/authorized_keys``)."""
    return any(part.startswith(".") for part in parts)


def folders_of(slots: list[Slot], *, past: int) -> int:
    """How many folders the offer's paths make (every entry's parents, and its folders),
    counted up to ``past + 1``: a tree of them, as long as the limit and no longer."""
    tree: dict[str, Any] = {}
    count = 0
    for slot in slots:
        node = tree
        for part in slot.parts if slot.info.kind == "dir" else slot.parts[:-1]:
            if part not in node:
                node[part] = {}
                count += 1
                if count > past:
                    return count
            node = node[part]
    return count


def free_inodes(folder: Path) -> int | None:
    """Inodes left for us where the file system counts them (None: it does not, as btrfs)."""
    try:
        found = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    return found.f_favail if found.f_files else None


def slot_for(folder: Path, info: FileInfo, parts: list[str]) -> Slot:
    partial = partial_path(folder, parts[-1], file_key(info))
    return Slot(info, parts, partial, partial.with_name(partial.name[: -len(".xfer-part")] + STATE_SUFFIX))


def _read_state(slot: Slot) -> dict[str, Any] | None:
    """The state file, if it says nothing that could not be true: anyone who can write in
    the folder can plant one, so it is trusted no more than a peer (``_checked``)."""
    try:
        if slot.state.is_symlink() or slot.state.stat().st_size > MAX_STATE_BYTES:
            return None
        state = json.loads(slot.state.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and _checked(slot, state) else None


def _checked(slot: Slot, state: dict[str, Any]) -> bool:
    """``dest``: a path ``safe_relpath`` would make, through real folders (no symlink) of
    the target folder, named after the entry's own folders (``photos`` or ``photos (1)``);
    ``placing`` and ``done.sha256``: SHA-256s; ``done.path``: a file right in ``dest``
    named after the entry (its bytes are checked against that SHA-256 before it counts as
    received: ``inspect``). Only the identity is recorded before the partial opens."""
    if "dest" not in state and "done" not in state and "placing" not in state:
        return True
    folder = slot.partial.parent  # partial and state files live at the top of the target folder
    dest = recorded_relpath(state.get("dest", "."))  # none recorded: the top of the folder
    if dest is None or len(dest) != len(slot.parts) - 1 or not _real_folders(folder, dest):
        return False
    if not all(map(_named_after, dest, slot.parts)):
        return False
    if "placing" in state and not _is_sha256(state["placing"]):
        return False
    if "done" not in state:
        return True
    done = state["done"]
    if not isinstance(done, dict) or not _is_sha256(done.get("sha256")) or not isinstance(done.get("path"), str):
        return False
    path = Path(done["path"])
    return path.parent == folder.joinpath(*dest) and _named_after(path.name, slot.parts[-1])


def _named_after(recorded: str, offered: str) -> bool:
    """``recorded`` is a name placement gives an entry named ``offered``: it, or ``offered (N)``."""
    numbers = (int(n) for n in re.findall(r" \((\d{1,5})\)", recorded))
    return recorded == offered or any(0 < n <= MAX_NUMBERED and _numbered(offered, n) == recorded for n in numbers)


def _real_folders(folder: Path, parts: list[str]) -> bool:
    for depth in range(1, len(parts) + 1):
        found = _lstat(folder.joinpath(*parts[:depth]))
        if found is not None and not stat.S_ISDIR(found.st_mode):
            return False  # a symlink or a file where a folder was recorded
    return True


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and HEX64.fullmatch(value) is not None


def _state_tmp(slot: Slot) -> Path:
    return slot.state.with_name(slot.state.name + ".tmp")


def write_state(slot: Slot, *, fault: str = "", **extra: Any) -> None:
    """Record the file's identity (and ``extra``) atomically beside its partial file.
    (``fault``: the step between writing and renaming, for ``fault_point``.)"""
    tmp = _state_tmp(slot)
    data = json.dumps({**slot.identity(), **extra}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    if fault:
        fault_point(fault)
    os.replace(tmp, slot.state)


def inspect(slot: Slot, index: int) -> tuple[ResumePoint | None, str | None]:
    """What we hold of this file, as a resume point; and a note when old state was discarded.

    Only a state file whose identity matches the offer counts; a partial without
    one, or one that does not match, is discarded.
    """
    offered = slot.info.size
    if offered is None or slot.info.kind == "dir":
        return None, None  # a stream cannot be replayed; a folder has no bytes
    state = _read_state(slot)
    has_partial = slot.partial.exists() or slot.partial.is_symlink()
    if state is None and not has_partial:
        return None, None
    identity = slot.identity()
    if state is None or any(state.get(k) != v for k, v in identity.items()):
        discard(slot)
        return None, f"discarded an old partial {slot.name}: it does not match this offer"
    done = state.get("done")
    if isinstance(done, dict):
        path, sha = done.get("path"), done.get("sha256")
        if isinstance(path, str) and isinstance(sha, str) and _holds(Path(path), offered, sha):
            return ResumePoint(index=index, offset=offered, sha256=sha), None
        discard(slot)
        return None, None
    placing = state.get("placing")
    if isinstance(placing, str):  # a run was killed while it gave this verified file its name
        final = _placed_before(slot, state.get("dest"), placing, has_partial)
        if final is not None:
            write_state(slot, dest=state.get("dest"), done={"path": str(final), "sha256": placing})
            return ResumePoint(index=index, offset=offered, sha256=placing), None
    if not has_partial or slot.partial.is_symlink() or not slot.partial.is_file():
        discard(slot)
        return None, None
    size = slot.partial.stat().st_size
    if size > offered:
        discard(slot)
        return None, f"discarded an old partial {slot.name}: it is larger than the file"
    return ResumePoint(index=index, offset=size, sha256=prefix_digest(slot.partial, size).hexdigest()), None


def _placed_before(slot: Slot, dest: Any, sha: str, has_partial: bool) -> Path | None:
    """The file an interrupted placement gave a final name, if it is there: the same inode
    as the partial (killed between the hard link and the partial's removal), or else a
    regular file under one of the names placement would choose with the file's size and
    SHA-256 (killed after the move, before the state recorded it). None: not placed (the
    partial, whole and verified, is placed again) or no longer there as it was."""
    folder = slot.partial.parent  # partial and state files live at the top of the target folder
    if not isinstance(dest, str) or Path(dest).is_absolute() or ".." in Path(dest).parts:
        return None
    where = folder / dest
    candidates = (where / _numbered(slot.parts[-1], n) for n in range(MAX_NUMBERED + 1))
    try:
        if has_partial:
            partial = os.lstat(slot.partial)
            if not stat.S_ISREG(partial.st_mode) or partial.st_nlink < 2:
                return None  # never linked: the usual path places it
            for candidate in candidates:
                other = _lstat(candidate)
                if other is not None and (other.st_dev, other.st_ino) == (partial.st_dev, partial.st_ino):
                    os.unlink(slot.partial)  # finish the move that was cut short
                    return candidate
            return None
        size = slot.info.size
        for candidate in candidates:
            other = _lstat(candidate)
            if other is not None and stat.S_ISREG(other.st_mode) and other.st_size == size:
                if prefix_digest(candidate, other.st_size).hexdigest() == sha:
                    return candidate
    except OSError:
        return None
    return None


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def discard_stale(slot: Slot) -> list[str]:
    """Remove what an earlier offer of a file with this name but another size or
    modification time left behind (the file changed since); say what went."""
    key = file_key(slot.info)
    prefix = slot.partial.name[: -len(f"{key}.xfer-part")]
    notes = []
    for state_path in slot.partial.parent.glob(glob.escape(prefix) + "*" + STATE_SUFFIX):
        if state_path == slot.state or state_path.is_symlink():
            continue
        other_key = state_path.name[len(prefix) : -len(STATE_SUFFIX)]
        other = Slot(slot.info, slot.parts, state_path.with_name(f"{prefix}{other_key}.xfer-part"), state_path)
        state = _read_state(other)
        if not state or state.get("name") != slot.info.name or state.get("done"):
            continue
        discard(other)
        notes.append(f"discarded an old partial {slot.name}: the file changed since it was sent")
    return notes


def done_path(slot: Slot) -> Path | None:
    state = _read_state(slot)
    done = state.get("done") if state else None
    return Path(done["path"]) if isinstance(done, dict) and isinstance(done.get("path"), str) else None


def _holds(path: Path, size: int, sha: str) -> bool:
    """``path`` is a regular file (not a symlink) of ``size`` bytes whose SHA-256 is ``sha``:
    a file counts as received only when its bytes say so, not because a state file does."""
    try:
        found = os.lstat(path)
        return stat.S_ISREG(found.st_mode) and found.st_size == size and prefix_digest(path, size).hexdigest() == sha
    except OSError:
        return False


def prefix_digest(path: Path, length: int) -> hashlib._Hash:
    """A running SHA-256 over the first ``length`` bytes, to continue hashing from there."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        left = length
        while left > 0:
            block = f.read(min(left, 1 << 20))
            if not block:
                raise OSError(f"{path} is shorter than {length} bytes")
            digest.update(block)
            left -= len(block)
    return digest


def discard(slot: Slot) -> None:
    for path in (slot.partial, slot.state, _state_tmp(slot)):
        try:
            path.unlink()
        except FileNotFoundError:
            pass


# -- what the receiver does on disk (each call runs in a worker thread, or is one chunk's write) --


def inspect_offer(
    slots: list[Slot], held: dict[int, str], *, resume: bool
) -> tuple[dict[int, ResumePoint], dict[int, str], list[str]]:
    """What we hold of each offered file (resume points), which files an earlier run placed
    (index -> path), and notes on what was discarded. ``held``: files verified this run (their SHA-256)."""
    points: dict[int, ResumePoint] = {}
    placed: dict[int, str] = {}
    notes = []
    for index, slot in enumerate(slots):
        size = slot.info.size
        if index in held:
            if slot.info.kind == "file" and size is not None:
                points[index] = ResumePoint(index=index, offset=size, sha256=held[index])
            continue
        if not resume:
            discard(slot)
            continue
        notes.extend(discard_stale(slot))
        point, note = inspect(slot, index)
        if note:
            notes.append(note)
        if point is not None:
            points[index] = point
            done = done_path(slot) if point.offset == size else None
            if done is not None:
                placed[index] = str(done)
    return points, placed, notes


def open_partial(slot: Slot, offset: int, placement: Placement) -> tuple[int, hashlib._Hash | None]:
    """Open the partial file at ``offset`` (never through a symlink), and hash what precedes it."""
    dest = placement.folder_for(slot.parts[:-1])
    write_state(slot, dest=os.path.relpath(dest, placement.folder).replace(os.sep, "/"))
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(slot.partial, flags, 0o644)
    try:
        os.ftruncate(fd, offset)
        digest = prefix_digest(slot.partial, offset) if offset else None
        os.lseek(fd, offset, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd, digest


def write_all(fd: int, data: memoryview) -> None:
    """Write a whole chunk."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def place(slot: Slot, sha: str, placement: Placement) -> Path:
    """Give a verified partial file its time and final name, and note where it went
    (one trip to a worker thread: this runs once per file, and folders can hold thousands)."""
    mtime = slot.info.mtime
    if mtime is not None:
        try:
            os.utime(slot.partial, (mtime, mtime))
        except (OSError, ValueError, OverflowError):
            pass  # a modification time is nice to keep, not worth failing for
    dest = placement.folder_for(slot.parts[:-1])
    where = os.path.relpath(dest, placement.folder).replace(os.sep, "/")
    # Placing is several steps (link, unlink, record); the state names the verified file
    # first, so that a run killed between any two recognises it (``inspect``) instead of
    # placing a twin "f (1).bin" or fetching it again. Each ``fault_point`` is such a gap.
    write_state(slot, dest=where, placing=sha)
    fault_point("marked")
    final = finalize(slot.partial, dest, slot.parts[-1], overwrite=placement.overwrite)
    fault_point("moved")
    write_state(slot, dest=where, done={"path": str(final), "sha256": sha}, fault="recording")
    fault_point("recorded")
    return final


def write_error(exc: OSError, name: str, folder: Path) -> LocalFileError:
    """What a failed write means for the person (and its code for the sender)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return LocalFileError(f"the disk is full; could not write {name} in {folder}", "disk-full")
    if exc.errno == errno.EROFS:
        return LocalFileError(f"{folder} is on a read-only file system; could not write {name}", "read-only")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return LocalFileError(f"permission denied writing {name} in {folder}", "permission-denied")
    return LocalFileError(f"could not write {name} in {folder}: {exc.strerror or exc}", "io-error")


def set_folder_times(folders: list[tuple[str, float | None]]) -> None:
    """Folders get their modification times last (writing into them changed them), deepest first."""
    timed = [(path, mtime) for path, mtime in folders if mtime is not None]
    for path, mtime in sorted(timed, key=lambda item: -item[0].count(os.sep)):
        try:
            os.utime(path, (mtime, mtime), follow_symlinks=False)
        except (OSError, ValueError, OverflowError, NotImplementedError):
            pass
