"""What a sender offers: the files, folders and standard input named on the command line,
checked before any room is opened (they touch the file system, so they live here and
not in the sender machine)."""

from __future__ import annotations

import os
import stat as stat_mod
from collections.abc import Callable
from pathlib import Path

from ..errors import LocalFileError
from ..protocol.messages import MAX_FILES_PER_OFFER
from .base import SourceFile

Warn = Callable[[str], None]


def check_sources(
    paths: list[Path], *, follow_symlinks: bool = False, warn: Warn | None = None, stdin_name: str = "stdin"
) -> list[SourceFile]:
    """Every entry to offer, checked up front so that a missing file fails before a room opens.

    ``-`` is standard input (offered as ``stdin_name``); a folder is walked (streamed later file by file, never
    archived), keeping empty folders; symlinks inside it are skipped with a warning
    unless ``follow_symlinks``.
    """
    if warn is None:
        warn = _ignore
    entries: list[SourceFile] = []
    for path in paths:
        if str(path) == "-":
            entries.append(SourceFile(path=None, name=stdin_name, size=None, mtime=None))
            continue
        st = _stat(path, follow=True)
        if stat_mod.S_ISDIR(st.st_mode):
            entries.extend(_walk(path, follow_symlinks, warn))
        else:
            entries.append(_source_file(path, path.name, st))
    if not entries:
        raise LocalFileError("nothing to send")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[0]
        raise LocalFileError(f"{twice} would be sent twice; send the files from different folders one by one")
    if len(entries) > MAX_FILES_PER_OFFER:
        raise LocalFileError(
            f"{len(entries)} files is more than one offer takes ({MAX_FILES_PER_OFFER}); "
            "send the folder in parts, or as an archive"
        )
    return entries


def _ignore(message: str) -> None:
    pass


def _stat(path: Path, *, follow: bool) -> os.stat_result:
    try:
        return path.stat() if follow else path.lstat()
    except FileNotFoundError:
        raise LocalFileError(f"{path}: no such file") from None
    except PermissionError:
        raise LocalFileError(f"{path}: permission denied", "permission-denied") from None
    except OSError as exc:
        raise LocalFileError(f"{path}: {exc.strerror or exc}") from None


def _source_file(path: Path, name: str, st: os.stat_result) -> SourceFile:
    if not stat_mod.S_ISREG(st.st_mode):
        raise LocalFileError(f"{path} is not a regular file")
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        code = "permission-denied" if isinstance(exc, PermissionError) else "local-file"
        raise LocalFileError(f"{path}: {exc.strerror or exc}", code) from None
    return SourceFile(path=path, name=name, size=st.st_size, mtime=st.st_mtime)


def _walk(root: Path, follow_symlinks: bool, warn: Warn) -> list[SourceFile]:
    """The tree under ``root`` in a stable order: each folder, then its files, then its subfolders."""
    out: list[SourceFile] = []
    seen: set[tuple[int, int]] = set()  # folders entered, against symlink loops

    def visit(folder: Path, rel: str) -> None:
        st = _stat(folder, follow=True)
        if (st.st_dev, st.st_ino) in seen:
            warn(f"skipped {folder}: a symlink loop")
            return
        seen.add((st.st_dev, st.st_ino))
        out.append(SourceFile(path=folder, name=rel, size=0, mtime=st.st_mtime, kind="dir"))
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise LocalFileError(f"cannot read the folder {folder}: {exc.strerror or exc}") from None
        subfolders = []
        for child in children:
            path, name = Path(child.path), f"{rel}/{child.name}"
            if child.is_symlink() and not follow_symlinks:
                warn(f"skipped the symlink {path} (use --follow-symlinks to send what it points to)")
                continue
            try:
                child_st = path.stat()
            except OSError:
                warn(f"skipped {path}: it points nowhere")
                continue
            if stat_mod.S_ISDIR(child_st.st_mode):
                subfolders.append((path, name))
            elif stat_mod.S_ISREG(child_st.st_mode):
                out.append(_source_file(path, name, child_st))
            else:
                warn(f"skipped {path}: not a regular file")
        for path, name in subfolders:
            visit(path, name)

    visit(root, root.resolve().name or "folder")
    return out


__all__ = ["check_sources"]
