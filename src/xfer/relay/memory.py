"""The relay's memory: a bound on the whole, and giving memory back after a load.

Each busy room holds about a megabyte (frames on their way, the connections'
buffers), so many rooms at once can take more than the machine has. Past
``Limits.max_memory`` of resident memory the relay opens no new rooms (rooms open go
on, and people still join them): ``Memory.full``.

What a load of rooms used is freed when they close, but glibc's allocator keeps
most of it for later rather than giving it back to the system: after 1,000 busy
rooms a relay held about 300 MiB doing nothing. ``Memory.upkeep`` notices when the
relay holds far fewer connections than it recently did and then collects Python's
cycles and asks glibc to return its free pages (``malloc_trim``). Resident memory is
read from ``/proc/self/statm``; where there is none (not Linux), there is no bound,
and where there is no glibc, nothing to trim.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import time
from collections.abc import Callable

log = logging.getLogger("xfer.relay")

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
EVERY = 2.0  # seconds between looks at the number of connections
AT_MOST_EVERY = 5.0  # seconds between two give-backs when the bound is reached


def _trimmer() -> Callable[[int], int] | None:
    # The process's own symbols (CDLL(None)), not find_library("c"): that runs ldconfig in a
    # subprocess, tens of milliseconds at every start of a relay, built-in ones included.
    try:
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
    return trim


_TRIM = _trimmer()


def resident() -> int | None:
    """This process's resident memory in bytes, or None where it cannot be read cheaply."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return None


def give_back() -> None:
    """Free Python's cycles, then hand the allocator's free pages back to the system."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


class Memory:
    """Holds the relay to ``limit`` bytes of resident memory (0: no bound)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._given_back = 0.0

    def full(self) -> bool:
        """Whether a new room would take the relay past its bound. Memory held but free is
        given back first (at most every few seconds), so only memory in use counts."""
        if not self.limit:
            return False
        used = resident()
        if used is None or used <= self.limit:
            return False
        now = time.monotonic()
        if now - self._given_back >= AT_MOST_EVERY:
            self._given_back = now
            give_back()
            used = resident() or 0
        return used > self.limit

    async def upkeep(self, connections: Callable[[], int]) -> None:
        """Give memory back once the relay holds at most half the connections it held at its
        recent peak (and that peak was a load worth it)."""
        peak = 0
        while True:
            await asyncio.sleep(EVERY)
            now = connections()
            peak = max(peak, now)
            if peak >= 64 and now <= peak // 2:
                give_back()
                log.debug("memory given back after %d connections, %d now", peak, now)
                peak = now
