"""What a receiver remembers of a room it finished, so that running the same command
again says "already here" instead of "room not found".

When a transfer ends, nothing of it is left in the folder (the state files go with it),
and the room closes once everyone leaves. What stays reliably knowable afterwards is only
what the receiver wrote down itself: a receipt per finished room, in the user's state
folder (``$XDG_STATE_HOME/xfer/received``, by default ``~/.local/state/xfer/received``),
keyed by a hash of the room's id, with the target folder and each file's path, size,
modification time and SHA-256. A rerun whose room is gone finds the receipt for that
room and folder, and reports the files as already here if every one still has the size
and modification time it had when it was verified; any other case is the usual "room not
found". Receipts older than ``Limits.receipts_for`` are removed when a new one is written.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

MAX_RECEIPT_BYTES = 4 * 1024 * 1024  # a receipt of a large folder; anything bigger is not ours


def receipts_folder(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "xfer" / "received"


def _path(room: str, folder: Path) -> Path:
    key = hashlib.sha256(f"xfer-receipt\0{room}".encode()).hexdigest()[:32]
    return folder / f"{key}.json"


def record(room: str, target: Path, saved: list[dict[str, Any]], *, keep_for: float, where: Path) -> None:
    """Write the receipt of a finished room (best effort: a receipt is a courtesy, never a failure)."""
    files = []
    for entry in saved:
        if entry.get("kind") == "dir" or "sha256" not in entry:
            continue
        try:
            st = os.stat(entry["path"])
        except (OSError, KeyError):
            continue
        files.append({"path": entry["path"], "name": entry.get("name"), "size": st.st_size, "mtime_ns": st.st_mtime_ns})
    receipt = {"v": 1, "folder": str(target), "finished": time.time(), "files": files}
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = _path(room, where)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(receipt, ensure_ascii=False), "utf-8")
        os.replace(tmp, path)
        _prune(where, keep_for)
    except OSError:
        pass


def _prune(where: Path, keep_for: float) -> None:
    cutoff = time.time() - keep_for
    for old in where.glob("*.json"):
        try:
            if old.stat().st_mtime < cutoff:
                old.unlink()
        except OSError:
            pass


def already_here(room: str, target: Path, *, where: Path) -> list[dict[str, Any]] | None:
    """The files of ``room`` if this folder received them all and they are still as they
    were (size and modification time); else None."""
    try:
        path = _path(room, where)
        if path.stat().st_size > MAX_RECEIPT_BYTES:
            return None
        receipt = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(receipt, dict) or receipt.get("folder") != str(target):
        return None
    files = receipt.get("files")
    if not isinstance(files, list) or not files:
        return None
    for entry in files:
        try:
            st = os.stat(entry["path"])
            if (st.st_size, st.st_mtime_ns) != (entry["size"], entry["mtime_ns"]):
                return None
        except (OSError, KeyError, TypeError):
            return None
    return [{"name": e.get("name"), "path": e["path"], "size": e["size"]} for e in files]
