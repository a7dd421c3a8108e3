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

    run()
