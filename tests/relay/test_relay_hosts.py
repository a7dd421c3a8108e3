"""DNS rebinding: the relay answers only its own names and addresses (issue 13, relays).

A page on another site that makes its own name point at the relay's address talks to
the relay as the same origin: ``Host`` and ``Origin`` both name the attacker's site.
Each request here is sent as such a browser would send it, to a real ``xfer serve``.
"""

from __future__ import annotations

import socket

import pytest

from conftest import bounded, free_port, wait_for_port
from xfer.relay.web import host_allowed, own_names

UPGRADE = (
    "GET /ws HTTP/1.1\r\nHost: {host}\r\n{origin}Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def status_of(port: int, request: str) -> int:
    """The HTTP status the relay answers ``request`` with."""
    with socket.create_connection(("127.0.0.1", port), timeout=bounded(5)) as sock:
        sock.sendall(request.encode())
        head = b""
        while b"\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                break
            head += data
    return int(head.split(b" ", 2)[1])


def get(port: int, path: str, host: str, origin: str | None = None) -> int:
    extra = f"Origin: {origin}\r\n" if origin else ""
    return status_of(port, f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")


def upgrade(port: int, host: str, origin: str | None) -> int:
    return status_of(port, UPGRADE.format(host=host, origin=f"Origin: {origin}\r\n" if origin else ""))


@pytest.fixture
def relay(procs, tmp_path):
    port = free_port()
    procs(
        [
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--public-url",
            "wss://relay.example",
            "--allow-host",
            "relay.lan",
        ],
        tmp_path,
        "serve",
    )
    wait_for_port(port)
    return port


def test_a_foreign_host_with_a_matching_origin_is_refused(relay):
    """The rebinding attacker's requests get nothing: the page, a download link and a
    WebSocket, each with ``Host`` and ``Origin`` of the attacker's name."""
    port = relay
    evil = f"rebind.attacker.example:{port}"
    assert get(port, "/", evil) == 421
    assert get(port, "/app.js", evil, origin=f"http://{evil}") == 421
    assert get(port, "/download/abcdefghijklmnopqrstuv/0", evil) == 421
    assert upgrade(port, evil, f"http://{evil}") == 403
    # The relay's own names and addresses are answered, as before.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "relay.example", f"relay.lan:{port}", f"[::1]:{port}"):
        assert get(port, "/", host) == 200, host
    assert upgrade(port, f"127.0.0.1:{port}", f"http://127.0.0.1:{port}") == 101
    assert upgrade(port, "relay.example", "https://relay.example") == 101
    # Clients that are not browsers send no Origin and may use any name (rebinding needs a browser);
    # load balancers ask /healthz by whatever name they know.
    assert upgrade(port, evil, None) == 101
    assert get(port, "/healthz", evil) == 200


def test_host_allowed():
    names = own_names(("wss://relay.example", "https://proxy.example:8443"), ("relay.lan",))
    for host in (
        "192.168.1.20:8765",
        "[fe80::1]:8765",
        "[::1]",
        "localhost:8765",
        "app.localhost",
        "relay.example",
        "RELAY.EXAMPLE.:443",
        "proxy.example:8443",
        "relay.lan:1",
        socket.gethostname(),
    ):
        assert host_allowed(host, names), host
    for host in (None, "", "attacker.example", "relay.example.attacker.example", "localhost.attacker.example", "a b"):
        assert not host_allowed(host, names), host


def test_the_relay_inside_xfer_receive_answers_its_public_name(procs, tmp_path):
    """``xfer receive --public-url`` prints a page link with that name: its own relay answers
    it (and addresses), and still refuses a foreign name."""
    port = free_port()
    procs(
        ["receive", "--yes", "--port", str(port), "--dir", "in", "--public-url", f"http://relay.test:{port}"],
        tmp_path,
        "recv",
    )
    wait_for_port(port)
    assert get(port, "/", f"relay.test:{port}") == 200
    assert get(port, "/", f"127.0.0.1:{port}") == 200
    assert get(port, "/", f"rebind.attacker.example:{port}") == 421
