"""The ``xfer`` command (the Typer app is in ``app``).

``main`` answers ``xfer --version`` before importing anything heavy, so that
scripts that ask for the version do not pay for Typer and rich.
"""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:] == ["--version"]:
        from .. import __version__

        print(f"xfer {__version__}")
        return
    from .app import main as run

    try:
        run()
    finally:
        # The command is over (files fsynced and renamed, connections closed). Freezing
        # what is alive spares the interpreter's final garbage collection a walk over
        # every object of typer, rich, websockets and asyncio: 50-60 ms of each exit
        # here. Standard streams are still flushed and atexit handlers still run.
        import gc

        gc.freeze()
