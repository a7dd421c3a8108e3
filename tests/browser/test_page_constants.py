"""The page takes its numbers and codes from the relay (``constants.js``, made from
``xfer.protocol`` and the relay's ``Limits``), not from copies of its own: a relay
that serves other limits gets a page that sends by them."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pytest
from pagekit import browser, on_lan, phone, playwright, relay, wait_until, xfer_procs  # noqa: F401

from conftest import bounded, free_port, make_file, sha256_of, wait_for_port
from xfer.protocol import HEADER_SIZE, PROTOCOL_VERSION, Limits
from xfer.protocol.keys import TAG_BYTES, link_fragment, link_secret
from xfer.protocol.words import MAX_NAMEPLATE
from xfer.relay.web import page_constants

pytestmark = pytest.mark.timeout(120)

# Limits unlike the defaults in everything the page reads from them.
OTHER = Limits(chunk_size=64 * 1024, window=1024 * 1024, max_peer_name_chars=8, max_text_chars=1000)

# A relay as `xfer serve` builds it, but with OTHER as its limits.
RELAY_WITH_OTHER_LIMITS = """
import asyncio, sys
from xfer.protocol import Limits
from xfer.relay import RelayServer, bind_socket
limits = Limits(chunk_size=64 * 1024, window=1024 * 1024, max_peer_name_chars=8, max_text_chars=1000)
server = RelayServer(bind_socket("127.0.0.1", int(sys.argv[1])), limits=limits)
server.app.state.limits = limits
asyncio.run(server.run_until_signal())
"""

READ_PAGE_CONSTANTS = """async (arg) => {
  const p = await import("/protocol.js");  // the module the page itself runs (one per URL)
  return { protocol_version: p.PROTOCOL_VERSION, header_size: p.HEADER_SIZE, chunk_size: p.CHUNK_SIZE,
           window: p.WINDOW, max_peer_name_chars: p.MAX_PEER_NAME, max_text_chars: p.MAX_TEXT,
           close_codes: p.CLOSE, builtin_relay: p.BUILTIN_RELAY, link: p.parseLink(arg)?.nameplate ?? null };
}"""


def served(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/constants.js", timeout=bounded(5)) as r:
        text = r.read().decode()
    return json.loads(text[text.index("Object.freeze(") + len("Object.freeze(") : text.rindex(");")])


@pytest.fixture
def other_relay(tmp_path):
    port = free_port()
    log = open(tmp_path / "relay.err", "wb")
    proc = subprocess.Popen([sys.executable, "-c", RELAY_WITH_OTHER_LIMITS, str(port)], stderr=log)
    try:
        wait_for_port(port)
        yield port
    finally:
        proc.terminate()
        proc.wait(bounded(10))
        log.close()


def test_the_page_runs_on_what_xfer_serve_served(phone, relay):
    document = served(relay.port)
    assert document == page_constants()  # from xfer.protocol and the default Limits
    assert document["protocol_version"] == PROTOCOL_VERSION and document["header_size"] == HEADER_SIZE
    phone.goto(relay.page())
    seen = phone.evaluate(READ_PAGE_CONSTANTS, link_fragment(MAX_NAMEPLATE, link_secret()))
    assert seen.pop("link") == str(MAX_NAMEPLATE)  # the served nameplate range and secret length
    assert seen == {k: document[k] for k in seen}
    assert seen["builtin_relay"] is False  # xfer serve: the page warns before a download
    assert phone.evaluate(READ_PAGE_CONSTANTS, link_fragment(MAX_NAMEPLATE + 1, link_secret()))["link"] is None


def test_a_relay_with_other_limits_gets_a_page_that_sends_by_them(phone, other_relay, xfer_procs, tmp_path):
    document = served(other_relay)
    assert document == page_constants(OTHER)
    assert (document["chunk_size"], document["window"]) == (64 * 1024, 1024 * 1024)

    relay_ws = f"ws://127.0.0.1:{other_relay}/ws"
    recv = xfer_procs(
        ["receive", "--relay", relay_ws, "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in")], "recv"
    )
    room = recv.first_event()
    frames: list[bytes | str] = []
    phone.on("websocket", lambda ws: ws.on("framesent", lambda payload: frames.append(payload)))
    phone.goto(on_lan(room["url"]))
    phone.wait_for_selector("#status[data-state=connected]")
    seen = phone.evaluate(READ_PAGE_CONSTANTS, "")
    seen.pop("link")
    assert seen == {k: document[k] for k in seen}

    # The page's name is cut to the served max_peer_name_chars before it is sealed.
    joined = wait_until(
        lambda: [e for e in recv.events() if e["event"] == "peer-joined"], 15, "the page joining the room"
    )
    assert 0 < len(joined[0]["peer"]["name"]) <= 8

    # Its upload goes out in chunks of the served size, inside the served window.
    src = make_file(tmp_path / "notes.bin", 300_000, 7)
    phone.set_input_files("#pick-files", [str(src)])
    assert recv.wait(60) == 0, recv.stderr
    assert sha256_of(tmp_path / "in" / "notes.bin") == sha256_of(src)
    # Playwright hands over the page's events while it is called: wait on the page for the end too.
    phone.wait_for_selector(".transfer-card .ok", timeout=bounded(20_000))
    # (each sealed: 16 bytes of tag more than its payload)
    chunks = [len(f) - HEADER_SIZE - TAG_BYTES for f in frames if isinstance(f, bytes)]
    assert chunks and max(chunks) == 64 * 1024 and sum(chunks) == 300_000
    # the offer is sealed: its window is what the receiver's machine saw (it acked inside it)
    assert not [f for f in frames if isinstance(f, str) and '"offer"' in f]
