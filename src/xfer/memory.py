"""glibc's allocator, set for a process that moves frames of a quarter to one MiB.

By default glibc serves a block of 128 KiB or more with a fresh memory mapping and gives
the top of its heap back to the system as soon as 128 KiB there are free, raising both
thresholds only after it has freed a mapped block of a larger size. A transfer allocates
and frees a few blocks of a frame's size for every frame (the frame read, the sealed or opened
payload, the frame written), so whether those come from reused heap or from new pages
depended on which sizes happened to be freed first: with one order the sender took
127,000 page faults for 300 MB, with another 16,000 (issue 17).

``keep_big_blocks`` fixes both thresholds above the largest frame: blocks up to 4 MiB come
from the heap, and up to 16 MiB of free heap is kept for the next frames rather than given
back and faulted in again. Peak memory grows by at most that, in a process that holds a
few MiB of frames at once. Nothing happens where the C library is not glibc."""

from __future__ import annotations

import os
import sys

MMAP_THRESHOLD = 4 << 20  # bytes: blocks below this come from the heap (the largest frame is 1 MiB)
TRIM_THRESHOLD = 16 << 20  # bytes of free heap top kept before any is given back

WORTH_IT = 16 << 20  # bytes: a smaller file makes too few frames to be worth the import of ctypes

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
_M_MMAP_THRESHOLD = -3
_done = False


def keep_big_blocks() -> bool:
    """Set glibc's thresholds (once per process; cheap after the first call). True if set."""
    global _done
    if _done:
        return True
    _done = True
    if not sys.platform.startswith("linux"):
        return False
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return False
    except (ValueError, OSError):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def for_size(size: int | None) -> None:
    """``keep_big_blocks`` before moving a file of ``size`` bytes (None: a stream, of any size)."""
    if size is None or size >= WORTH_IT:
        keep_big_blocks()
