"""The built-in relay on the LAN: announce its nameplate, or find the relay that holds one.

The side that opens a room on a relay inside its own process draws a nameplate from 1
to ``MAX_LAN_NAMEPLATE`` and announces it with multicast DNS (``xfer.discovery``); the
other side, given ``7-guitar-nebula``, asks the LAN for nameplate 7 and joins that
relay. So a code is all the other side types. mDNS probes first: a nameplate another
relay on the LAN announces is never taken twice (we draw another).
"""

from __future__ import annotations

import ipaddress
import secrets
from dataclasses import dataclass

from ..errors import RoomError

MAX_LAN_NAMEPLATE = 999  # three digits at most: short to say
NAMEPLATE_DRAWS = 8  # nameplates tried before giving up on announcing (each probe takes ~0.3 s)
FIND_TIMEOUT = 4.0  # seconds to wait for the LAN's answer


@dataclass
class Announced:
    """The nameplate announced, and the announcement to close when the room closes."""

    nameplate: int
    announcement: object  # discovery.Announcement (imported lazily: zeroconf is slow to import)

    async def close(self) -> None:
        from ..discovery import Announcement

        if isinstance(self.announcement, Announcement):
            await self.announcement.close()


def announced_addresses(host: str | None) -> list[str] | None:
    """What to announce for a relay listening on ``host``: the LAN's addresses (None) when
    on all interfaces, that address when it is one others can reach, else nothing ([])."""
    if host in (None, "", "0.0.0.0"):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return []  # a host name: nothing to announce reliably
    if address.version != 4 or address.is_loopback or address.is_link_local or address.is_unspecified:
        return []
    return [str(address)]


async def announce(
    port: int,
    host: str | None,
    *,
    nameplate: int | None = None,
    taken: frozenset[int] = frozenset(),
    draws: int = NAMEPLATE_DRAWS,
) -> Announced | None:
    """Announce a free nameplate (``nameplate`` if given) for the relay on ``port``;
    None when there is nothing to announce (loopback only, no LAN, no multicast)."""
    from ..discovery import Announcement, NameplateTaken, lan_addresses

    addresses = announced_addresses(host)
    if addresses is None:
        addresses = lan_addresses()
    if not addresses:
        return None
    for _ in range(1 if nameplate is not None else draws):
        chosen = nameplate if nameplate is not None else _draw(taken)
        announcement = Announcement(chosen, port, addresses)
        try:
            await announcement.start()
        except NameplateTaken:
            if nameplate is not None:
                raise RoomError(
                    f"nameplate {nameplate} is already used by another xfer on this network; choose another code",
                    "room-taken",
                ) from None
            taken = taken | {chosen}
            continue
        except OSError:
            return None  # no multicast here: the command printed says --relay
        return Announced(chosen, announcement)
    return None


def _draw(taken: frozenset[int]) -> int:
    while True:
        nameplate = 1 + secrets.randbelow(MAX_LAN_NAMEPLATE)
        if nameplate not in taken or len(taken) >= MAX_LAN_NAMEPLATE:
            return nameplate


async def find_relay(code: str, nameplate: int, *, who: str = "sender", timeout: float = FIND_TIMEOUT) -> list[str]:
    """The WebSocket URLs of the relay on the LAN that announces ``nameplate``;
    ``RoomError`` (room-not-found) when none answers within ``timeout`` seconds."""
    from ..discovery import find

    try:
        found = await find(nameplate, timeout)
    except OSError:
        found = None
    if found is None:
        raise RoomError(
            f"no {who} with code {code} found on this network; give --relay if it is elsewhere",
            "room-not-found",
        )
    return found.urls()
