"""The event loop xfer's commands run on: uvloop where it is installed (CPython on Linux and
macOS: about a tenth less CPU per byte moved, issue 17), asyncio's own otherwise.

``XFER_LOOP=asyncio`` picks asyncio's loop anyway (to compare the two, or to rule uvloop out
when something behaves oddly)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's ``new_event_loop`` when it is installed and not turned off, else None (asyncio's)."""
    if os.environ.get("XFER_LOOP", "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the loop ``loop_factory`` picks."""
    factory = loop_factory()
    if factory is None:
        return asyncio.run(main)
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    else:  # no asyncio.Runner yet: the policy picks the loop
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        return asyncio.run(main)
