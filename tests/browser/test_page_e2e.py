"""The page's end-to-end encryption (protocol 2.0) in headless Chromium: its guard
(web/guard.js) against Python's ``xfer.protocol.guard.Guard``, box by box; what a passive
observer between the page and the relay reads; a link with the wrong secret.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import struct
import threading

import pytest
from pagekit import LAN_HOST, Relay, browser, on_lan, phone, playwright, relay, shot, wait_until, xfer_procs  # noqa: F401

from conftest import make_file, sha256_of
from xfer.protocol import FileInfo, Offer, PeerInfo, PeerJoined
from xfer.protocol.frames import parse_chunk
from xfer.protocol.guard import Deliver, Guard, PeerTrusted
from xfer.protocol.keys import Tampered, link_fragment, link_secret
from xfer.protocol.machine import Send
from xfer.protocol.messages import Accept, Text, parse_message, serialize
from xfer.protocol.words import parse_code

pytestmark = pytest.mark.timeout(180)

PAGE, TERMINAL = 44, 22


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def to_page(message) -> dict:
    """A message of Python's guard as the relay hands it to the page (``from`` stamped)."""
    return json.loads(serialize(dataclasses.replace(message, sender=TERMINAL)))


def from_page(obj: dict):
    """A message the page posted, as the relay hands it to the terminal."""
    return parse_message(json.dumps({**obj, "from": PAGE}))


# The page's guard, kept on the page between calls: posted messages are sealed when asked.
GUARD = """async ([op, arg]) => {
  const { PageGuard } = await import("./guard.js");
  const { ContentKey } = await import("./e2e.js");
  const p = await import("./protocol.js");
  const b = (t) => p.b64decode(t);
  if (op === "start") {
    globalThis.posted = [];
    globalThis.g = new PageGuard({ secret: b(arg.secret), name: "Pixel", post: (m, sealed) => posted.push([m, sealed]) });
    return g.greet({ id: arg.id, role: arg.role });
  }
  const drain = async () => {
    const out = [];
    for (const [m, sealed] of posted.splice(0)) out.push(sealed ? await g.seal(m) : m);
    return out;
  };
  if (op === "receive") {
    try {
      const events = await g.receive(arg);
      return { events, sent: await drain() };
    } catch (err) {
      return { error: err.name };
    }
  }
  if (op === "drain") return drain();
  if (op === "seal") return g.seal(arg);
  if (op === "chunk") {  // a sealed chunk frame as Upload makes it
    const key = await ContentKey.create(b(arg.key));
    const routed = new Uint8Array(p.HEADER_SIZE);
    p.writeChunkHeader(routed, 0, 0, arg.transfer, arg.index, arg.offset);
    const sealed = await key.seal(arg.index, arg.offset, b(arg.data), routed);
    const frame = new Uint8Array(p.HEADER_SIZE + sealed.length);
    p.writeChunkHeader(frame, arg.from, arg.to, arg.transfer, arg.index, arg.offset);
    frame.set(sealed, p.HEADER_SIZE);
    return p.b64encode(frame);
  }
}"""


def test_the_pages_guard_and_pythons_make_the_same_keys_and_open_each_others_boxes(phone, relay):
    """The page uploads to a terminal receiver: its hi, a sealed offer with a content key and a
    sealed chunk open in Python's Guard; the receiver's sealed hi and accept open in the page;
    a box the relay changed does not."""
    phone.goto(relay.page())
    secret = link_secret()
    terminal = Guard("receiver", "desk", parse_code("7-guitar-nebula"), link=secret)
    terminal.joined([])
    out = terminal.receive(PeerJoined(peer=PeerInfo(id=PAGE, name="", role="peer")))
    [their_pake] = [o.message for o in out if isinstance(o, Send)]
    phone.evaluate(GUARD, ["start", {"secret": b64(secret), "id": TERMINAL, "role": "receiver"}])
    [our_pake] = phone.evaluate(GUARD, ["drain", None])
    assert our_pake["type"] == "pake" and our_pake["link"] is True and len(base64.b64decode(our_pake["nonce"])) == 16
    got = phone.evaluate(GUARD, ["receive", to_page(their_pake)])
    [our_confirm] = got["sent"]
    # the terminal's hi comes right behind its tag; the page's tag then checks out quietly
    their_confirm, their_hi = [o.message for o in terminal.receive(from_page(our_pake)) if isinstance(o, Send)]
    assert [o for o in terminal.receive(from_page(our_confirm)) if isinstance(o, Send)] == []
    got = phone.evaluate(GUARD, ["receive", to_page(their_confirm)])
    [our_hi] = got["sent"]
    assert our_hi["type"] == "sealed" and "Pixel" not in json.dumps(our_hi)
    out = terminal.receive(from_page(our_hi))
    [trusted] = [o for o in out if isinstance(o, PeerTrusted)]
    assert trusted.link and trusted.peer.name == "Pixel"
    got = phone.evaluate(GUARD, ["receive", to_page(their_hi)])
    assert got["events"] == [
        {"kind": "trusted", "peer": {"id": TERMINAL, "role": "receiver", "client": "", "name": "desk"}}
    ]

    # The page's sealed offer, with its content key, then a sealed chunk under that key.
    key = os.urandom(32)
    offer = {"type": "offer", "to": TERMINAL, "transfer": 5, "window": 1 << 20, "key": b64(key),
             "files": [{"name": "secret-plans.txt", "size": 10}]}  # fmt: skip
    sealed = phone.evaluate(GUARD, ["seal", offer])
    assert "secret-plans" not in json.dumps(sealed) and set(sealed) == {"type", "to", "box"}
    [delivered] = [o.item for o in terminal.receive(from_page(sealed)) if isinstance(o, Deliver)]
    assert isinstance(delivered, Offer) and delivered.files[0].name == "secret-plans.txt"
    args = {"key": b64(key), "from": PAGE, "to": TERMINAL, "transfer": 5, "index": 0, "offset": 0}
    frame = base64.b64decode(phone.evaluate(GUARD, ["chunk", {**args, "data": b64(b"0123456789")}]))
    assert b"0123456789" not in frame and len(frame) == 28 + 10 + 16
    [chunk] = [o.item for o in terminal.receive(parse_chunk(frame)) if isinstance(o, Deliver)]
    assert bytes(chunk.payload) == b"0123456789"
    moved = parse_chunk(base64.b64decode(phone.evaluate(GUARD, ["chunk", {**args, "data": b64(b"x"), "offset": 9}])))
    with pytest.raises(Tampered):  # sealed for offset 9, claimed at offset 10
        terminal.receive(dataclasses.replace(moved, offset=10))

    # The terminal's sealed accept opens in the page, from and to as the relay routed them.
    [accept, subscribe] = [o.message for o in terminal.send(Accept(to=PAGE, transfer=5)) if isinstance(o, Send)]
    assert subscribe.type == "subscribe"
    got = phone.evaluate(GUARD, ["receive", to_page(accept)])
    assert got["events"] == [
        {"kind": "message", "msg": {"type": "accept", "transfer": 5, "resume": [], "from": TERMINAL, "to": PAGE}}
    ]

    # A box the relay changed, replayed or sent in clear: the page does not take it.
    [text] = [o.message for o in terminal.send(Text(to=PAGE, text="one")) if isinstance(o, Send)]
    box = bytearray(base64.b64decode(text.box))
    box[5] ^= 1
    assert phone.evaluate(GUARD, ["receive", {**to_page(text), "box": b64(bytes(box))}]) == {"error": "Tampered"}
    assert phone.evaluate(GUARD, ["receive", to_page(accept)]) == {"error": "Tampered"}  # a replay
    clear = {"type": "text", "text": "from the relay", "from": TERMINAL, "to": PAGE}
    assert phone.evaluate(GUARD, ["receive", clear]) == {"events": [], "sent": []}


def test_a_terminal_sender_gets_the_pages_hi_with_a_download_and_its_transfers_go_clear(phone, relay):
    """Toward a sender the page is the receiving side (salt = sender's nonce, then the page's),
    and asks for the bridge: the sender then sends it offers in clear, which the page takes."""
    phone.goto(relay.page())
    secret = link_secret()
    terminal = Guard("sender", "laptop", parse_code("7-guitar-nebula"), link=secret)
    terminal.joined([])
    out = terminal.receive(PeerJoined(peer=PeerInfo(id=PAGE, name="", role="peer")))
    [their_pake] = [o.message for o in out if isinstance(o, Send)]
    phone.evaluate(GUARD, ["start", {"secret": b64(secret), "id": TERMINAL, "role": "sender"}])
    [our_pake] = phone.evaluate(GUARD, ["drain", None])
    [our_confirm] = phone.evaluate(GUARD, ["receive", to_page(their_pake)])["sent"]
    # the terminal's hi comes right behind its tag; the page's tag then checks out quietly
    their_confirm, their_hi = [o.message for o in terminal.receive(from_page(our_pake)) if isinstance(o, Send)]
    assert [o for o in terminal.receive(from_page(our_confirm)) if isinstance(o, Send)] == []
    [our_hi] = phone.evaluate(GUARD, ["receive", to_page(their_confirm)])["sent"]
    terminal.receive(from_page(our_hi))
    assert terminal.pairs[PAGE].relayed  # the page's hi said download: "relay"
    assert phone.evaluate(GUARD, ["receive", to_page(their_hi)])["events"][0]["peer"]["name"] == "laptop"
    offer = Offer(to=PAGE, transfer=9, files=(FileInfo(name="report.pdf", size=3),))
    [clear] = [o.message for o in terminal.send(offer) if isinstance(o, Send)]
    assert clear.type == "offer"
    got = phone.evaluate(GUARD, ["receive", to_page(clear)])
    assert got["events"][0]["msg"]["files"][0]["name"] == "report.pdf"


# -- a passive observer ------------------------------------------------------------------


class Observer:
    """A TCP proxy in front of the relay that forwards bytes unchanged and keeps the payload of
    every WebSocket frame each way (the page's frames unmasked): what a relay operator or
    anyone on the LAN reads."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frames: dict[str, list[bytes]] = {"up": [], "down": []}
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            streams = {"up": bytearray(), "down": bytearray()}
            for a, b, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(a, b, streams[way], way), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, stream: bytearray, way: str) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
                stream += data
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            with self.lock:  # read when the connection ends
                self.frames[way].extend(ws_payloads(bytes(stream)))

    def close(self) -> None:
        self.listener.close()


def ws_payloads(stream: bytes) -> list[bytes]:
    """The payloads of the WebSocket frames after an HTTP upgrade in one direction of a
    connection (RFC 6455), unmasked, fragments joined (Chromium cuts large messages), close
    and ping frames left out; nothing for a plain HTTP exchange."""
    head = stream.find(b"\r\n\r\n")
    if head < 0 or b"websocket" not in stream[:head].lower():
        return []
    at, out = head + 4, []
    while at + 2 <= len(stream):
        opcode, b1 = stream[at] & 0x0F, stream[at + 1]
        n, at = b1 & 0x7F, at + 2
        if n == 126:
            (n,), at = struct.unpack("!H", stream[at : at + 2]), at + 2
        elif n == 127:
            (n,), at = struct.unpack("!Q", stream[at : at + 8]), at + 8
        mask = b""
        if b1 & 0x80:
            mask, at = stream[at : at + 4], at + 4
        payload = stream[at : at + n]
        at += n
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        if len(payload) < n:
            break  # cut short when the connection ended
        if opcode in (1, 2):  # a text or binary message (or its first fragment)
            out.append(payload)
        elif opcode == 0 and out:  # a continuation: the rest of the message before it
            out[-1] += payload
    return out


def test_a_passive_observer_of_the_page_reads_no_name_content_or_text(phone, relay, xfer_procs, tmp_path):
    """The page reaches the relay through the observer; ``xfer receive`` (which printed the QR)
    directly. The observer sees the upload's bytes go by, and none of its name, its content,
    the page's text or its device name."""
    observer = Observer(relay.port)
    try:
        recv = xfer_procs(
            ["receive", "--relay", relay.ws, "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in")], "recv"
        )
        url = on_lan(recv.first_event()["url"]).replace(f":{relay.port}/", f":{observer.port}/")
        src = make_file(tmp_path / "holiday-photo-of-the-secret-beach.jpg", 2_500_000, 41)  # three chunks
        phone.goto(url)
        phone.wait_for_selector("#status[data-state=connected]")
        wait_until(lambda: "(xfer)" in phone.inner_text("#peers"), 10, "the receiver's sealed name")
        phone.fill("#text-input", "the door code is 4711")
        phone.click("#text-send")
        wait_until(lambda: [e for e in recv.events() if e["event"] == "text"], 10, "the text")
        phone.set_input_files("#pick-files", [str(src)])
        assert recv.wait(60) == 0, recv.stderr
        phone.wait_for_selector(".transfer-card .ok")
        name = phone.evaluate("(async () => (await import('./protocol.js')).deviceName(navigator.userAgent))()")
        phone.goto("about:blank")  # the page's socket closes: its frames are all in
        wait_until(lambda: len(observer.frames["up"]) > 10, 10, "the page's frames")
    finally:
        observer.close()
    up, down = observer.frames["up"], observer.frames["down"]
    seen = b"\n".join(up + down)
    assert any(b'"hello"' in f and b'"xfer-web/2"' in f for f in up)  # the observer reads clear frames
    assert sum(len(f) for f in up) > src.stat().st_size  # and it saw the upload go by
    content = src.read_bytes()
    for secret in (b"holiday-photo", b"secret-beach", b"door code", b"4711", name.encode()):
        assert secret not in seen, secret
    for at in range(0, len(content) - 32, 50_000):
        assert content[at : at + 32] not in seen
    kinds = {json.loads(f)["type"] for f in up if f[:1] == b"{"}
    assert kinds <= {"hello", "pake", "confirm", "sealed"}, kinds
    assert sha256_of(tmp_path / "in" / src.name) == sha256_of(src)


# -- a link that is not the room's ---------------------------------------------------------


def test_a_link_with_the_wrong_secret_is_told_so_and_the_sender_counts_it(phone, relay, xfer_procs, tmp_path):
    src = make_file(tmp_path / "a.bin", 1000, 3)
    sender = xfer_procs(["send", str(src), "--relay", relay.ws, "--json", "--no-qr"], "send")
    room = sender.first_event()
    nameplate = int(room["code"].split("-")[0])
    phone.goto(relay.page(link_fragment(nameplate, link_secret())))  # the room's nameplate, another secret
    phone.wait_for_selector("#status[data-state=closed]")
    assert "This link is not for this room any more; scan the QR code again" in phone.inner_text("#join-message")
    shot(phone, "11-wrong-link")
    wrong = wait_until(lambda: [e for e in sender.events() if e["event"] == "wrong-code"], 10, "the sender counting")
    assert wrong[0]["attempts"] == 1
    assert not phone.locator(".offer").count()  # nothing was offered to it
    # the right link still works
    phone.goto(on_lan(room["url"]))
    phone.wait_for_selector(".offer button.primary")


# -- an https origin: WebCrypto ---------------------------------------------------------------


@pytest.fixture
def https_relay(tmp_path):
    """``xfer serve`` with TLS, its certificate for lan.test from a throwaway CA (trustme)."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert(LAN_HOST, "127.0.0.1")
    paths = {k: tmp_path / f"{k}.pem" for k in ("cert", "key", "ca")}
    cert.cert_chain_pems[0].write_to_path(paths["cert"])
    cert.private_key_pem.write_to_path(paths["key"])
    ca.cert_pem.write_to_path(paths["ca"])
    relay = Relay(tmp_path, extra=("--tls-cert", str(paths["cert"]), "--tls-key", str(paths["key"])))
    relay.ca = paths["ca"]
    yield relay
    relay.stop()


def test_both_ways_at_an_https_origin(browser, playwright, https_relay, xfer_procs, tmp_path):
    """At https://lan.test the page is a secure context and seals with WebCrypto: an upload into
    ``xfer receive`` and a download from ``xfer send``, both through the TLS relay."""
    wss = f"wss://127.0.0.1:{https_relay.port}/ws"
    trust = {"SSL_CERT_FILE": str(https_relay.ca)}
    context = browser.new_context(**playwright.devices["Pixel 7"], accept_downloads=True, ignore_https_errors=True)
    page = context.new_page()
    try:
        recv = xfer_procs(
            ["receive", "--relay", wss, "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in")], "recv", env=trust
        )
        url = on_lan(recv.first_event()["url"])
        assert url.startswith("https://lan.test:")
        page.goto(url)
        page.wait_for_selector("#status[data-state=connected]")
        assert page.evaluate("window.isSecureContext") is True
        assert page.evaluate("async () => (await import('./e2e.js')).backend().name") == "webcrypto"
        wait_until(lambda: "(xfer)" in page.inner_text("#peers"), 10, "the receiver")
        src = make_file(tmp_path / "scan.pdf", 5_000_000, 51)
        page.set_input_files("#pick-files", [str(src)])
        assert recv.wait(60) == 0, recv.stderr
        assert sha256_of(tmp_path / "in" / "scan.pdf") == sha256_of(src)

        big = make_file(tmp_path / "slides.key", 8_000_000, 52)
        sender = xfer_procs(["send", str(big), "--relay", wss, "--json", "--no-qr"], "send", env=trust)
        page.goto(on_lan(sender.first_event()["url"]))
        page.wait_for_selector(".offer button.primary")
        assert "This relay can read these files" in page.inner_text(".offer")
        with page.expect_download() as info:
            page.click(".offer button.primary")
        saved = tmp_path / "got.key"
        info.value.save_as(saved)
        assert sha256_of(saved) == sha256_of(big)
        assert sender.wait(30) == 0, sender.stderr
    finally:
        context.close()
