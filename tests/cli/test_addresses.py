"""Relay addresses as people type them, and the URLs xfer prints."""

from __future__ import annotations

import pytest

from xfer.addresses import lan_address, page_url, relay_ws_url
from xfer.errors import UsageError


@pytest.mark.parametrize(
    "typed, url",
    [
        ("ws://10.0.0.5:8765", "ws://10.0.0.5:8765/ws"),
        ("ws://10.0.0.5:8765/", "ws://10.0.0.5:8765/ws"),
        ("ws://10.0.0.5:8765/ws", "ws://10.0.0.5:8765/ws"),
        ("wss://relay.example", "wss://relay.example/ws"),
        ("https://relay.example/xfer", "wss://relay.example/xfer/ws"),
        ("http://relay.example:8080", "ws://relay.example:8080/ws"),
        ("relay.example:9000", "ws://relay.example:9000/ws"),
        ("relay.example", "ws://relay.example:8765/ws"),
        ("  127.0.0.1:1234 ", "ws://127.0.0.1:1234/ws"),
        ("[::1]:8765", "ws://[::1]:8765/ws"),
        ("WS://Relay.Example:1", "ws://relay.example:1/ws"),
    ],
)
def test_relay_addresses(typed, url):
    assert relay_ws_url(typed) == url


@pytest.mark.parametrize("bad", ["", "ftp://x", "ws://", "host:99999", "host:port", "file:///etc/passwd"])
def test_bad_relay_addresses(bad):
    with pytest.raises(UsageError):
        relay_ws_url(bad)


def test_page_urls():
    assert (
        page_url("ws://192.168.1.20:8765/ws", "7KQ2-M9XD-41TR-PZ8H") == "http://192.168.1.20:8765/#7KQ2-M9XD-41TR-PZ8H"
    )
    assert page_url("wss://relay.example/xfer/ws", "C") == "https://relay.example/xfer/#C"


def test_lan_address_is_never_loopback():
    address = lan_address()
    assert address is None or not address.startswith("127.")
