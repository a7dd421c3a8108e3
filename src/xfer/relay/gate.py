"""How many connections the relay holds at once: below its descriptor limit, newest refused.

A process that runs out of file descriptors cannot accept anyone: asyncio logs an error
and stops accepting for a second, over and over, and every join fails, the honest ones
too. So the relay raises its soft ``RLIMIT_NOFILE`` to the hard limit where it may
(``raise_descriptor_limit``, done by ``xfer serve``) and holds at most
``Limits.max_connections`` connections, fewer when the descriptor limit leaves less room
(``connection_cap``). Past the cap it closes each new connection at once and keeps the
ones it has: a crowd of idle connections cannot push out people already in their rooms,
and it ages out by itself (a connection that sends no request in
``Limits.handshake_timeout`` is closed). It says so once, not once per connection.
"""

from __future__ import annotations

import logging
import sys

if sys.platform != "win32":  # Windows has no RLIMIT_NOFILE
    import resource

log = logging.getLogger("xfer.relay.connections")

# Descriptors the relay needs besides its connections: the listening socket, the event
# loop's own, standard streams, files it opens now and then; Redis's pool comes on top.
RESERVED_DESCRIPTORS = 32


def descriptor_limit() -> int | None:
    """The soft limit of open files, or None where there is none to read."""
    if sys.platform == "win32":
        return None
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def raise_descriptor_limit() -> int | None:
    """Raise the soft limit of open files to the hard one, where allowed; the soft limit now."""
    if sys.platform == "win32":
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft and (hard == resource.RLIM_INFINITY or hard > soft):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # e.g. macOS refuses more than OPEN_MAX: keep what we have
            pass
    return descriptor_limit()


def connection_cap(max_connections: int, reserved: int) -> int:
    """Connections the relay takes at once: ``max_connections``, or fewer so that
    ``reserved`` descriptors stay free below the soft limit (at least 1)."""
    limit = descriptor_limit()
    if limit is None:
        return max_connections
    return max(1, min(max_connections, limit - RESERVED_DESCRIPTORS - reserved))


class Gate:
    """Counts refusals and says once, per time the cap is reached, that it refuses."""

    __slots__ = ("cap", "refused", "_refusing")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.refused = 0
        self._refusing = False

    def admit(self, open_connections: int) -> bool:
        """Whether a new connection may stay, ``open_connections`` counting it."""
        if open_connections <= self.cap:
            if self._refusing and open_connections <= self.cap * 9 // 10:
                self._refusing = False
                log.warning("taking new connections again (%d refused)", self.refused)
                self.refused = 0
            return True
        self.refused += 1
        if not self._refusing:
            self._refusing = True
            log.warning(
                "refusing new connections: %d are open, the most this relay takes (--max-connections, "
                "and below its limit of open files); those open are kept",
                self.cap,
            )
        return False
