"""Downloads the page decrypts itself (web/sealed.js, saver.js, sw.js): a page at an https
origin on a hosted relay receives files from ``xfer send`` sealed end to end, and its service
worker streams them to the browser's downloader.

The relay (``xfer serve``, plain) sits behind ``TlsTap``, a TLS-terminating proxy like the
reverse proxy of a hosted relay, which keeps everything the page and the relay say to each
other (HTTP, and the WebSocket frames unmasked): exactly what the relay reads. Chromium trusts
the proxy's certificate by its key (``--ignore-certificate-errors-spki-list``): a browser does
not run service workers from an origin whose certificate it only lets pass.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import struct
import threading

import pytest
from pagekit import CHROMIUM, CHROMIUM_ARGS, LAN_HOST, Relay, playwright, relay, shot, wait_until, xfer_procs  # noqa: F401

from conftest import bounded, make_file, sha256_of

pytestmark = pytest.mark.timeout(120)


class TlsTap:
    """TLS on 127.0.0.1 in front of ``target`` (a plain relay), keeping what passes each way:
    ``raw`` (every byte, HTTP included) and ``frames`` (WebSocket payloads, unmasked). With
    ``flip`` set, byte ``flip`` of the payload of the second binary frame that goes down to the
    page on a WebSocket is inverted: a relay that tampers with a chunk."""

    def __init__(self, target: int, cert, flip: int | None = None) -> None:
        self.target, self.flip = target, flip
        self.raw: dict[str, bytearray] = {"up": bytearray(), "down": bytearray()}
        self.frames: dict[str, list[bytes]] = {"up": [], "down": []}
        self.flipped = False
        self.writers: set[asyncio.StreamWriter] = set()
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(self.context)
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        assert started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.context))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()
        self.loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.add(writer)
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.close()
            return
        self.writers.add(up_w)
        await asyncio.gather(self._pump(reader, up_w, "up"), self._pump(up_r, writer, "down"))

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, way: str) -> None:
        try:
            head = await src.readuntil(b"\r\n\r\n")  # a request or a response (its body follows raw)
            self.raw[way] += head
            dst.write(head)
            if b"websocket" not in head.lower():
                while data := await src.read(65536):
                    self.raw[way] += data
                    dst.write(data)
                    await dst.drain()
                return
            binary = 0
            while True:  # WebSocket frames, one at a time (RFC 6455)
                b0, b1 = await src.readexactly(2)
                n, ext = b1 & 0x7F, b""
                if n == 126:
                    ext = await src.readexactly(2)
                    (n,) = struct.unpack("!H", ext)
                elif n == 127:
                    ext = await src.readexactly(8)
                    (n,) = struct.unpack("!Q", ext)
                mask = await src.readexactly(4) if b1 & 0x80 else b""
                payload = bytearray(await src.readexactly(n))
                plain = bytes(b ^ mask[i % 4] for i, b in enumerate(payload)) if mask else bytes(payload)
                self.raw[way] += plain
                if b0 & 0x0F in (0, 1, 2):
                    self.frames[way].append(plain)
                if way == "down" and b0 & 0x0F == 2:
                    binary += 1
                    if binary == 2 and self.flip is not None and self.flip < n:
                        payload[self.flip] ^= 0xFF
                        self.flipped = True
                dst.write(bytes([b0, b1]) + ext + mask + payload)
                await dst.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError):
            pass
        finally:
            dst.close()

    def seen(self) -> bytes:
        return bytes(self.raw["up"] + self.raw["down"])

    async def _close(self) -> None:
        self.server.close()
        for writer in self.writers:
            writer.transport.abort()
        await asyncio.sleep(0.05)  # the pumps see their connections end

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def tls():
    """A certificate for lan.test from a throwaway CA, and the pin that makes Chromium trust it."""
    trustme = pytest.importorskip("trustme")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    cert = trustme.CA().issue_cert(LAN_HOST, "127.0.0.1")
    leaf = x509.load_pem_x509_certificate(cert.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    cert.pin = base64.b64encode(digest.finalize()).decode()
    return cert


@pytest.fixture(scope="module")
def trusting_browser(playwright, tls):  # noqa: F811
    """A Chromium that trusts ``tls``'s certificate."""
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={tls.pin}"],
    )
    yield browser
    browser.close()


@pytest.fixture
def trusting(playwright, trusting_browser):  # noqa: F811
    """A Pixel 7 page in ``trusting_browser``."""
    context = trusting_browser.new_context(**playwright.devices["Pixel 7"], accept_downloads=True)
    context.set_default_timeout(bounded(15_000))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda m: (
            errors.append(f"console: {m.text}") if m.type == "error" and "Content Security Policy" in m.text else None
        ),
    )
    yield page
    context.close()
    assert not errors, errors


def _offer(page, tap: TlsTap, sender) -> None:
    fragment = sender.first_event()["url"].split("#", 1)[1]
    page.goto(f"https://{LAN_HOST}:{tap.port}/#{fragment}")
    page.wait_for_selector(".offer button.primary")
    assert page.evaluate("!!navigator.serviceWorker.controller")


def test_a_page_at_an_https_origin_decrypts_its_download_and_the_relay_reads_none(
    trusting, relay, tls, xfer_procs, tmp_path
):
    """``xfer send --receivers 2`` of 6 MB and 40 kB to a page on a hosted relay and to ``xfer
    receive``: the page asks for them sealed, takes the fanned-out chunks (one frame for both
    receivers), opens them, and its service worker streams each to the downloader; both are
    saved whole, one after the other, and nothing the relay saw of the page holds a name or any
    content (no request went to its bridge)."""
    tap = TlsTap(relay.port, tls)
    try:
        src = make_file(tmp_path / "quarterly-report-draft.pdf", 6_000_000, 61)
        small = make_file(tmp_path / "notes.txt", 40_000, 63)
        args = ["send", str(src), str(small), "--receivers", "2", "--relay", relay.ws, "--json", "--no-qr"]
        sender = xfer_procs(args, "send")
        code = sender.first_event()["code"]
        terminal = ["receive", code, "--relay", relay.ws, "--yes", "--json", "--dir", str(tmp_path / "in")]
        recv = xfer_procs(terminal, "recv")
        _offer(trusting, tap, sender)
        card = trusting.inner_text(".offer")
        assert "End-to-end encrypted" in card and "can read" not in card
        downloads: list = []
        trusting.on("download", lambda d: downloads.append(d))
        trusting.click(".offer button.primary")
        wait_until(lambda: trusting.wait_for_timeout(100) or len(downloads) == 2, 30, "two downloads")
        for download, f in zip(downloads, (src, small)):
            saved = tmp_path / f"got-{f.name}"
            download.save_as(saved)
            assert download.failure() is None and download.suggested_filename == f.name
            assert sha256_of(saved) == sha256_of(f)
        assert sender.wait(30) == 0, sender.stderr
        assert recv.wait(10) == 0, recv.stderr
        for f in (src, small):
            assert sha256_of(tmp_path / "in" / f.name) == sha256_of(f)
        trusting.wait_for_selector(".offer .ok")
        shot(trusting, "sealed-download")
        trusting.goto("about:blank")  # the page's socket closes: its frames are all in
    finally:
        tap.close()
    seen = tap.seen()
    chunks = [f for f in tap.frames["down"] if f[:1] == b"\x01"]
    assert sum(len(f) for f in chunks) > src.stat().st_size  # the file went by, sealed
    assert all(f[8:12] == bytes(4) for f in chunks)  # fanned out: `to` 0, one frame for both receivers
    assert b"GET /download/" not in seen and b"GET /save/" not in seen  # neither the bridge nor the worker's link
    content = src.read_bytes()
    for at in range(0, len(content) - 32, 50_000):
        assert content[at : at + 32] not in seen
    assert b"quarterly-report" not in seen and b"notes.txt" not in seen


def test_a_relay_that_flips_a_byte_of_a_chunk_gets_a_failed_download(trusting, relay, tls, xfer_procs, tmp_path):
    """The relay inverts one byte of a sealed chunk on its way to the page: the chunk does not
    open, the page stops ("tampered"), and the browser's download fails instead of completing."""
    tap = TlsTap(relay.port, tls, flip=5000)
    try:
        src = make_file(tmp_path / "b.bin", 3_000_000, 62)
        sender = xfer_procs(["send", str(src), "--relay", relay.ws, "--json", "--no-qr"], "send")
        _offer(trusting, tap, sender)
        with trusting.expect_download() as info:
            trusting.click(".offer button.primary")
        download = info.value
        assert download.failure() is not None
        assert tap.flipped
        trusting.wait_for_selector("#status[data-state=closed]")
        assert "tampered" in trusting.inner_text("body")
        card = trusting.inner_text(".offer")  # the card says why too, not a drop to come back from
        assert "tampered" in card and "Once the page is back" not in card, card
        assert trusting.inner_text("#status-text") == "Stopped"  # the box above says why, once
        hint = trusting.inner_text("#peers-hint")  # no comeback promised: it stopped for good
        assert "Offline" not in hint and "scan the QR code again" in hint, hint
        shot(trusting, "sealed-tampered")
    finally:
        tap.close()


def test_a_file_end_whose_sha256_differs_fails_the_download_and_the_sender_hears_it(trusting, relay, tls):
    """A sender (written here) whose chunks all open but whose sealed file-end has another SHA-256:
    the page has held the last piece back, so the browser's download fails, and the sender gets
    ``error hash-mismatch``. (The page acknowledged the bytes its downloader took before.)"""
    import hashlib
    import os

    from pagekit import LinkSender
    from test_page import _in_thread

    from xfer.protocol import Accept, Ack, Chunk, Error, FileEnd, FileInfo, FileStart, Offer, PeerJoined

    result: dict = {}

    async def main(result: dict) -> None:
        sender = await LinkSender.open(relay.ws, "liar")
        result["fragment"] = sender.fragment
        conn = sender.link

        async def until(kind):
            while True:
                item = await asyncio.wait_for(conn.recv(), bounded(20))
                if isinstance(item, kind):
                    return item

        try:
            page = (await until(PeerJoined)).peer
            data, step = os.urandom(6 * 256 * 1024), 256 * 1024
            files = (FileInfo(name="x.bin", size=len(data)),)
            await conn.send(Offer(to=page.id, transfer=78, files=files, window=8 << 20))
            result["resume"] = (await until(Accept)).resume
            await conn.send(FileStart(to=page.id, transfer=78, index=0))
            for at in range(0, len(data), step):
                await conn.send_chunk(Chunk(conn.peer_id, page.id, 78, 0, at, memoryview(data[at : at + step])))
            result["ack"] = (await until(Ack)).bytes
            wrong = hashlib.sha256(data + b"!").hexdigest()
            await conn.send(FileEnd(to=page.id, transfer=78, index=0, size=len(data), sha256=wrong))
            result["end"] = (await until(Error)).code
        finally:
            await conn.close()

    tap = TlsTap(relay.port, tls)
    try:
        thread = _in_thread(main, result)
        wait_until(lambda: "fragment" in result or "exception" in result, 10, "the lying sender's room")
        assert "exception" not in result, result
        trusting.goto(f"https://{LAN_HOST}:{tap.port}/#{result['fragment']}")
        trusting.wait_for_selector(".offer button.primary")
        assert "End-to-end encrypted" in trusting.inner_text(".offer")
        with trusting.expect_download() as info:
            trusting.click(".offer button.primary")
        download = info.value
        thread.join(bounded(30))
        assert "exception" not in result, result
        assert result["resume"] == () and result["ack"] >= 1 << 20 and result["end"] == "hash-mismatch"
        assert download.failure() is not None
        trusting.wait_for_selector(".offer .error")
        assert "damaged" in trusting.inner_text(".offer .error")
    finally:
        tap.close()


def test_the_pages_chunk_header_reader_agrees_with_frames_py(trusting, relay):
    """``readChunkHeader`` (sealed.js) on random frames, hostile ones among them (short, another
    kind, reserved bytes set, offsets past 2**53), against ``xfer.protocol.frames.HEADER``."""
    import random

    from xfer.protocol.frames import CHUNK, HEADER, HEADER_SIZE

    rng = random.Random(2026)
    frames = []
    for n in range(300):
        kind = CHUNK if n % 5 else rng.choice([0, 2, 255])
        fields = [rng.getrandbits(32) for _ in range(4)] + [rng.getrandbits(rng.choice([8, 40, 53, 54, 64]))]
        frame = bytearray(HEADER.pack(kind, *fields) + rng.randbytes(rng.randrange(0, 40)))
        if n % 7 == 0:
            frame[1:4] = rng.randbytes(3)  # reserved: ignored, as frames.py does
        if n % 11 == 0:
            frame = frame[: rng.randrange(0, HEADER_SIZE)]
        frames.append(bytes(frame))
    trusting.goto(relay.page(host="127.0.0.1"))
    got = trusting.evaluate(
        """async (frames) => {
          const { readChunkHeader } = await import("./sealed.js");
          const { b64decode } = await import("./protocol.js");
          return frames.map((f) => readChunkHeader(b64decode(f)));
        }""",
        [base64.b64encode(f).decode() for f in frames],
    )
    for frame, header in zip(frames, got):
        if len(frame) < HEADER_SIZE:
            assert header is None
            continue
        kind, sender, to, transfer, index, offset = HEADER.unpack_from(frame)
        if kind != CHUNK or offset >= 2**53:
            assert header is None, (kind, offset)
        else:
            assert header == {"from": sender, "to": to, "transfer": transfer, "index": index, "offset": offset}
    assert sum(h is not None for h in got) > 100  # most are chunks
