"""Finding a built-in relay on the LAN by its nameplate, with multicast DNS.

A ``send`` or ``receive`` that hosts its own relay announces the service
``xfer-NAMEPLATE._xfer._tcp.local.`` with the relay's port and addresses; the other
side, given only ``7-astronaut-avocado``, asks the LAN for that one name. The
announcement carries the nameplate and the protocol version and nothing else: the
words of a code never leave the machine, and a LAN observer who reads the
announcement can join the room but cannot pass the PAKE.

mDNS probes before it announces, so two relays on one LAN never hold the same
nameplate: ``announce`` raises ``NameplateTaken`` and the caller draws another.
``zeroconf`` (pure Python, maintained) does the multicast DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

import ifaddr
from zeroconf import IPVersion, NonUniqueNameException
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

SERVICE = "_xfer._tcp.local."
VERSION = "2"
LOOKUP_TIMEOUT = 3.0  # seconds to wait for an answer on the LAN


class NameplateTaken(Exception):
    """Another relay on this LAN announces the same nameplate."""


@dataclass(frozen=True)
class Found:
    """A relay that announced the nameplate: its addresses and port."""

    addresses: tuple[str, ...]
    port: int

    def urls(self) -> list[str]:
        return [f"ws://{f'[{a}]' if ':' in a else a}:{self.port}/ws" for a in self.addresses]


def instance(nameplate: int) -> str:
    return f"xfer-{nameplate}.{SERVICE}"


def lan_addresses() -> list[str]:
    """This machine's IPv4 addresses that others on a LAN can reach (not loopback, not link-local)."""
    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            address = ipaddress.ip_address(ip.ip)
            if not (address.is_loopback or address.is_link_local or address.is_multicast):
                found.append(ip.ip)
    return found


class Announcement:
    """The announcement of one relay's nameplate, from ``start`` until ``close``."""

    def __init__(self, nameplate: int, port: int, addresses: Sequence[str] | None = None) -> None:
        self.nameplate = nameplate
        self.port = port
        self.addresses = list(addresses) if addresses is not None else lan_addresses()
        self._zc: AsyncZeroconf | None = None
        self._info: AsyncServiceInfo | None = None

    async def start(self) -> None:
        """Probe, then announce; ``NameplateTaken`` when another relay holds the name."""
        info = AsyncServiceInfo(
            SERVICE,
            instance(self.nameplate),
            port=self.port,
            properties={"nameplate": str(self.nameplate), "v": VERSION},
            addresses=[socket.inet_aton(a) for a in self.addresses],
            server=f"xfer-{self.nameplate}-{socket.gethostname()[:32]}.local.",
        )
        zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        try:
            await zc.async_register_service(info, allow_name_change=False)
        except NonUniqueNameException:
            await zc.async_close()
            raise NameplateTaken(f"nameplate {self.nameplate} is announced by another relay on this network") from None
        except BaseException:
            await zc.async_close()
            raise
        self._zc, self._info = zc, info

    async def close(self) -> None:
        zc, info, self._zc, self._info = self._zc, self._info, None, None
        if zc is not None and info is not None:
            try:
                await zc.async_unregister_service(info)
            finally:
                await zc.async_close()

    async def __aenter__(self) -> Announcement:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def find(nameplate: int, timeout: float = LOOKUP_TIMEOUT) -> Found | None:
    """The relay on this LAN that announces ``nameplate``, or None after ``timeout`` seconds."""
    zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
    try:
        info = AsyncServiceInfo(SERVICE, instance(nameplate))
        if not await info.async_request(zc.zeroconf, int(timeout * 1000)):
            return None
        properties = info.properties or {}
        if properties.get(b"nameplate") != str(nameplate).encode() or not info.port:
            return None
        addresses = tuple(a for a in info.parsed_addresses(IPVersion.V4Only) if a)
        return Found(addresses, info.port) if addresses else None
    finally:
        await zc.async_close()


def find_blocking(nameplate: int, timeout: float = LOOKUP_TIMEOUT) -> Found | None:
    return asyncio.run(find(nameplate, timeout))
