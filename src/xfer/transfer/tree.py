"""Where the entries of an offer land inside the receiver's folder.

A folder transfer keeps its relative paths. Every component was made safe by
``names.safe_relpath``; here folders are created without ever following a
symlink: a component that exists as anything but a real folder (a file, a
symlink, a device) is not entered, and a numbered sibling (``name (1)``) is
used instead. A top-level folder that already exists is merged only with
``overwrite``; otherwise the tree lands in ``name (1)/``.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..protocol.names import MAX_NUMBERED, _numbered


class Placement:
    def __init__(self, folder: Path, *, overwrite: bool, reuse: dict[str, str] | None = None) -> None:
        self.folder = folder
        self.overwrite = overwrite
        self._chosen: dict[tuple[str, str], str] = {}  # (parent, component) -> name used
        for top, used in (reuse or {}).items():  # what an interrupted run of this offer chose
            self._chosen[(str(folder), top)] = used

    def folder_for(self, parts: list[str]) -> Path:
        """The folder (created as needed) that holds an entry whose path is ``parts``."""
        current = self.folder
        for depth, part in enumerate(parts):
            current = current / self._enter(current, part, top=depth == 0)
        return current

    def _enter(self, parent: Path, part: str, *, top: bool) -> str:
        key = (str(parent), part)
        if key in self._chosen:
            used = self._chosen[key]
            if _is_real_dir(parent / used):
                return used
            if not os.path.lexists(parent / used):
                os.mkdir(parent / used)
                return used
        merge_existing = not top or self.overwrite
        for n in range(MAX_NUMBERED + 1):
            name = _numbered(part, n)
            path = parent / name
            try:
                os.mkdir(path)
            except FileExistsError:
                if merge_existing and _is_real_dir(path):
                    break
                continue
            break
        else:
            raise FileExistsError(f"no free folder name for {part!r} in {parent}")
        self._chosen[key] = name
        return name


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)  # lstat: a symlink to a folder is not one
    except OSError:
        return False
