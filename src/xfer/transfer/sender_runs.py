"""What a sender stopped by a signal keeps, so that the command it prints to resume comes
back as the same sender: its transfer id and the secrets its run gave its receivers
(``protocol.keys.Runs``). A receiver waiting for it takes the files only from the same
run (docs/guarantees.md); any other process would be a different sender.

Kept in the user's state folder (``$XDG_STATE_HOME/xfer/sent``, by default
``~/.local/state/xfer/sent``; the folder 0700, the file 0600), keyed by a hash of the
room's code and the files (names, sizes, modification times); taken (read and removed)
by the command that joins that room with those files. What is read is checked like
anything from outside: a file that does not fit is ignored, never trusted. Files older
than ``KEEP_FOR`` are removed when a new one is written.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..protocol.keys import KEY_BYTES, Runs
from ..protocol.messages import MAX_ID
from .base import SourceFile

KEEP_FOR = 24 * 3600.0  # a resume command run a day later is a new sender
MAX_BYTES = 64 * 1024


def runs_folder(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "xfer" / "sent"


def _path(room: str, files: Sequence[SourceFile], where: Path) -> Path:
    identity = json.dumps([room, [(f.name, f.size, f.mtime) for f in files]])
    return where / (hashlib.sha256(b"xfer-run\0" + identity.encode()).hexdigest()[:32] + ".json")


def keep(room: str, files: Sequence[SourceFile], transfer: int, runs: Runs, *, where: Path) -> None:
    """Write down the run (best effort: without it, the resume is a different sender)."""
    record = {"v": 1, "transfer": transfer, "given": [base64.b64encode(s).decode() for s in runs.given]}
    try:
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = _path(room, files, where)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(json.dumps(record))
        os.replace(tmp, path)
        cutoff = time.time() - KEEP_FOR
        for old in where.glob("*.json"):
            if old.stat().st_mtime < cutoff:
                old.unlink()
    except OSError:
        pass


def take(room: str, files: Sequence[SourceFile], runs: Runs, *, where: Path) -> int | None:
    """The transfer id of the run kept for this room and these files, its secrets put back
    into ``runs``; None when there is none (or it does not fit). The file is removed."""
    path = _path(room, files, where)
    try:
        if path.stat().st_size > MAX_BYTES or path.stat().st_mtime < time.time() - KEEP_FOR:
            path.unlink()
            return None
        record = json.loads(path.read_text("utf-8"))
        path.unlink()
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    transfer, given = record.get("transfer"), record.get("given")
    if type(transfer) is not int or not 1 <= transfer <= MAX_ID or type(given) is not list:
        return None
    try:
        secrets = [base64.b64decode(s, validate=True) for s in given if type(s) is str]
    except ValueError:
        return None
    if len(secrets) != len(given) or len(secrets) > runs.limit or any(len(s) != KEY_BYTES for s in secrets):
        return None
    runs.given = secrets
    return transfer
