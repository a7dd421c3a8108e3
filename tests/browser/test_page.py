"""The phone page end to end, in headless Chromium as a phone on a LAN sees it.

Pages open the link ``xfer`` printed (``url`` of its ``room`` event, ``#7.SECRET``) at
http://lan.test:PORT (mapped to 127.0.0.1, not a secure context: the page's own AES-GCM
and HKDF); one test uses http://127.0.0.1 as well (WebCrypto). The desktop side is the
installed ``xfer`` command, talking to an ``xfer serve`` relay on loopback.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import threading
import time
from pathlib import Path

import pytest
from pagekit import (  # noqa: F401
    LinkSender,
    Relay,
    browser,
    chromium_rss,
    make_png,
    on_lan,
    phone,
    playwright,
    relay,
    shot,
    wait_until,
    xfer_procs,
)

from conftest import bounded, make_file, sha256_of
from xfer.protocol.frames import DEFAULT_CHUNK_SIZE, chunk_header, parse_chunk
from xfer.protocol.keys import ContentKey, link_fragment, link_secret

MB = 1_000_000
BIG = 200 * MB  # a download that must stream (Chromium's memory is measured)
VIDEO = 40 * MB  # an upload: many credit windows and hashing pieces (its size is not the point)

pytestmark = pytest.mark.timeout(240)


def wait_js(page, expression: str, timeout: float) -> None:
    """Poll a JS expression (wait_for_function needs eval, which the page's CSP forbids)."""
    wait_until(lambda: page.evaluate(expression), timeout, expression)


def open_room(page, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("#status[data-state=connected]")


def receiver(xfer_procs, relay, tmp_path, name="recv"):
    """``xfer receive`` opening a room on the relay; returns (process, the page's link on the LAN)."""
    proc = xfer_procs(
        ["receive", "--relay", relay.ws, "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in"), "--name", "desk"],
        name,
    )
    room = proc.first_event()
    assert room["event"] == "room"
    return proc, on_lan(room["url"])


def events_of(proc, kind: str) -> list[dict]:
    return [e for e in proc.events() if e["event"] == kind]


# -- the page's own code ---------------------------------------------------------


def test_sha256_matches_python(phone, relay):
    """The page's incremental SHA-256 (no crypto.subtle on http://LAN) against hashlib."""
    phone.goto(relay.page())
    assert phone.evaluate("window.isSecureContext") is False
    assert phone.evaluate("typeof crypto.subtle") == "undefined"
    rng = random.Random(7)
    cases = [b"", b"abc", bytes(55), bytes(56), bytes(63), bytes(64), bytes(65)]
    cases += [rng.randbytes(rng.randrange(1, 300_000)) for _ in range(12)]
    for data in cases:
        cuts = sorted(rng.randrange(0, len(data) + 1) for _ in range(rng.randrange(0, 5)))
        got = phone.evaluate(
            """async ([b64, cuts]) => {
                const { Sha256 } = await import("./sha256.js");
                const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                const h = new Sha256();
                let at = 0;
                for (const cut of [...cuts, bytes.length]) { h.update(bytes.subarray(at, cut)); at = cut; }
                return h.hexdigest();
            }""",
            [base64.b64encode(data).decode(), cuts],
        )
        assert got == hashlib.sha256(data).hexdigest(), (len(data), cuts)


def test_upload_hashing_in_a_worker_and_on_the_page_match_python(phone, relay):
    """The upload's hasher (a module worker, or the page itself where there is none), fed slice
    by slice, from zero and from a resumed prefix's state, against hashlib."""
    phone.goto(relay.page())
    rng = random.Random(11)
    data = rng.randbytes(3_000_001)
    cuts = sorted(rng.randrange(0, len(data)) for _ in range(9))
    prefix = cuts[4]
    script = """async ([b64, cuts, prefix, noWorker]) => {
        if (noWorker) globalThis.Worker = undefined;
        const { createHasher } = await import("./hashing.js");
        const { Sha256 } = await import("./sha256.js");
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const hasher = await createHasher(() => {});
        const out = { inWorker: hasher.inWorker };
        const feed = (from) => {
            let at = from;
            for (const cut of [...cuts.filter((c) => c > from), bytes.length]) {
                hasher.update(bytes.slice(at, cut)); at = cut;
            }
        };
        hasher.start(null); feed(0); out.whole = await hasher.digest();
        hasher.start(new Sha256().update(bytes.subarray(0, prefix))); feed(prefix); out.resumed = await hasher.digest();
        hasher.close();
        return out;
    }"""
    want = hashlib.sha256(data).hexdigest()
    args = [base64.b64encode(data).decode(), cuts, prefix]
    assert phone.evaluate(script, [*args, False]) == {"inWorker": True, "whole": want, "resumed": want}
    assert phone.evaluate(script, [*args, True]) == {"inWorker": False, "whole": want, "resumed": want}


def test_upload_sealing_in_a_worker_and_on_the_page_opens_in_python(phone, relay):
    """The upload's sealer (a module worker, or the page itself where there is none) turns one
    read into chunk frames: each the header the relay routes on and the payload sealed under
    the round's content key, nonce (index, offset), associated data the header with from and
    to 0, which Python's ``keys.ContentKey`` opens; a second round seals under its own key."""
    phone.goto(relay.page())
    rng = random.Random(12)
    data = rng.randbytes(2 * DEFAULT_CHUNK_SIZE + 1_001)  # two whole chunks (of the relay's chunk_size) and a short one
    keys_ = [rng.randbytes(32), rng.randbytes(32)]
    script = """async ([b64, raws, noWorker]) => {
        if (noWorker) globalThis.Worker = undefined;
        const { createSealer } = await import("./sealing.js");
        const { ContentKey } = await import("./e2e.js");
        const bytes = (t) => Uint8Array.from(atob(t), (c) => c.charCodeAt(0));
        const text = (b) => btoa(Array.from(b, (x) => String.fromCharCode(x)).join(""));
        const sealer = await createSealer();
        const out = { inWorker: sealer.inWorker, rounds: [] };
        for (const [i, raw] of raws.entries()) {
            sealer.round(await ContentKey.create(bytes(raw)), { from: 7 + i, to: 9, transfer: 1234 });
            const frames = await sealer.seal(3, 5 * 262144, bytes(b64)); // (any offset)
            out.rounds.push(frames.map(text));
        }
        sealer.close();
        return out;
    }"""
    args = [base64.b64encode(data).decode(), [base64.b64encode(k).decode() for k in keys_]]
    for no_worker in (False, True):
        got = phone.evaluate(script, [*args, no_worker])
        assert got["inWorker"] is not no_worker
        for i, frames in enumerate(got["rounds"]):
            content = ContentKey(keys_[i])
            assert len(frames) == 3
            at = 0
            for frame in map(base64.b64decode, frames):
                chunk = parse_chunk(frame)
                assert (chunk.sender, chunk.to, chunk.transfer, chunk.index) == (7 + i, 9, 1234, 3)
                assert chunk.offset == 5 * 262_144 + at
                aad = chunk_header(0, 0, 1234, 3, chunk.offset)
                plain = content.open(3, chunk.offset, bytes(chunk.payload), aad)
                assert plain == data[at : at + len(plain)]
                at += len(plain)
            assert at == len(data)


def test_upload_without_workers_hashes_on_the_page(browser, playwright, relay, xfer_procs, tmp_path):
    """A browser without module workers still uploads, hashing on the page's own thread."""
    context = browser.new_context(**playwright.devices["Pixel 7"])
    context.add_init_script("delete globalThis.Worker;")
    try:
        page = context.new_page()
        src = make_file(tmp_path / "clip.bin", 5 * MB, 9)
        recv, url = receiver(xfer_procs, relay, tmp_path)
        open_room(page, url)
        assert page.evaluate("typeof Worker") == "undefined"
        page.set_input_files("#pick-files", [str(src)])
        assert recv.wait(60) == 0, recv.stderr
        assert sha256_of(tmp_path / "in" / src.name) == sha256_of(src)
        page.wait_for_selector(".transfer[data-state=done]")
    finally:
        context.close()


def test_bad_links_and_closed_rooms_say_so(phone, relay):
    """No code to type on the page: a link that is not whole says to scan again."""
    phone.goto(relay.page("not-a-link"))
    phone.wait_for_selector("#join:not([hidden])")
    assert "Scan the QR code again" in phone.inner_text("#join-message")
    assert phone.locator("#join input").count() == 0
    whole = link_fragment(654_321, link_secret())
    phone.goto(relay.page(whole[:-1]))  # one character short
    phone.wait_for_selector("#join:not([hidden])")
    assert "Scan the QR code again" in phone.inner_text("#join-message")
    phone.goto(relay.page(whole))
    phone.wait_for_selector("#status[data-state=closed]")
    message = phone.inner_text("#join-message")
    assert "Room 654321 is not open" in message and "scan its new QR code" in message
    shot(phone, "1-room-not-open")


# -- phone to desktop ----------------------------------------------------------------


def test_upload_three_files_into_xfer_receive(phone, relay, xfer_procs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    files = [
        make_file(src / "video.mp4", VIDEO, 1),
        make_file(src / "sketch.jpg", 3 * MB, 2),
        make_png(src / "a very long name for a photo of the whiteboard that will not fit on a phone.png"),
    ]
    recv, url = receiver(xfer_procs, relay, tmp_path)
    open_room(phone, url)
    wait_until(lambda: "desk (xfer)" in phone.inner_text("#peers"), 10, "the receiver's sealed name")
    assert phone.inner_text("#peers").count("desk (xfer)") == 1
    shot(phone, "1-room-with-desktop")
    phone.set_input_files("#pick-files", [str(f) for f in files])
    wait_until(lambda: events_of(recv, "progress"), 30, "the first progress")
    wait_js(phone, "document.querySelector('progress').value > 0", 30)
    shot(phone, "2-upload-in-progress")
    assert recv.wait(120) == 0, recv.stderr
    phone.wait_for_selector(".transfer-card .ok", timeout=bounded(20_000))
    shot(phone, "3-upload-finished")
    for f in files:
        assert sha256_of(tmp_path / "in" / f.name) == sha256_of(f)
    assert phone.locator(".transfer[data-state=done]").count() == 3
    assert "SHA-256 verified" in phone.inner_text("#transfers")
    assert phone.locator("#transfers img.thumb").count() == 1  # the photo, not the video or the random bytes


# -- desktop to phone -----------------------------------------------------------------


def test_download_200mb_from_xfer_send_streams(phone, relay, xfer_procs, tmp_path):
    big = make_file(tmp_path / "report.bin", BIG, 4)
    sender = xfer_procs(["send", str(big), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send")
    room = sender.first_event()
    open_room(phone, on_lan(room["url"]))
    phone.wait_for_selector(".offer button.primary")
    assert "laptop (xfer) wants to send 1 file, 200.0 MB" in phone.inner_text(".offer")
    # said before anything is accepted: this relay (xfer serve, not the sender's own) can read the file
    assert "This relay can read these files" in phone.inner_text(".offer .relay-note")
    shot(phone, "4-offer")

    baseline = chromium_rss()
    peak = [baseline]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], chromium_rss())
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        with phone.expect_download(timeout=bounded(30_000)) as info:
            phone.click(".offer button.primary")
        download = info.value
        wait_js(phone, "document.querySelector('.offer progress')?.value > 20000000", 30)
        shot(phone, "5-download-in-progress")
        saved = tmp_path / "saved.bin"
        download.save_as(saved)  # waits for the download to finish
        assert download.failure() is None
    finally:
        sampling.set()
        sampler.join(5)
    assert download.suggested_filename == "report.bin"
    assert sha256_of(saved) == sha256_of(big)
    assert sender.wait(60) == 0, sender.stderr
    assert events_of(sender, "file-end")[0]["sha256"] == sha256_of(big)  # the sender's hash check passed
    phone.wait_for_selector(".offer .ok")
    shot(phone, "6-download-finished")
    grown = peak[0] - baseline
    assert grown < BIG // 4, f"Chromium grew by {grown / MB:.0f} MB while downloading {BIG / MB:.0f} MB"


# -- text ---------------------------------------------------------------------------------


def test_text_both_ways(phone, relay, xfer_procs, tmp_path):
    recv, url = receiver(xfer_procs, relay, tmp_path)
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    phone.fill("#text-input", "hello from the phone <b>not bold</b>")
    phone.click("#text-send")
    got = wait_until(lambda: events_of(recv, "text"), 10, "the text at xfer receive")
    assert got[0]["text"] == "hello from the phone <b>not bold</b>"
    line = "from the desk: <img src=x onerror=alert(1)> ünïcode ✓"
    sender = xfer_procs(["send", "--text", line, "--relay", relay.ws, "--json", "--no-qr"], "text")
    other = phone.context.new_page()  # the same phone scans the text sender's QR code
    try:
        open_room(other, on_lan(sender.first_event()["url"]))
        bubble = other.locator(".bubble:not(.mine)").first
        bubble.wait_for()
        assert bubble.locator(".bubble-text").inner_text() == line
        assert other.locator(".bubble img").count() == 0
        bubble.locator("button.copy").click()  # no async clipboard API here: the fallback must work
        other.wait_for_selector(".bubble button.copy:text('Copied')")
        shot(other, "7-texts")
        assert sender.wait(30) == 0, sender.stderr
    finally:
        other.close()


def test_an_offer_that_arrives_while_typing_leaves_the_focus_where_it_was(phone, relay, xfer_procs, tmp_path):
    """Issue 13: the offer moved the focus to Accept, and the Enter that ended the line
    accepted the files. The focus stays in the text box; on a phone Enter starts a new line
    there (and on a desktop sends the text: test_page_a11y), Send sends it."""
    src = make_file(tmp_path / "offered.bin", 100_000, 3)
    args = ["send", str(src), "--relay", relay.ws, "--receivers", "2", "--json", "--no-qr", "--name", "desk"]
    sender = xfer_procs(args, "send")  # offers once a terminal joins too: while the page types
    room = sender.first_event()
    open_room(phone, on_lan(room["url"]))
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the sender")
    phone.click("#text-input")
    phone.keyboard.type("typing a li")
    terminal = ["receive", room["code"], "--relay", relay.ws, "--yes", "--json", "--dir", str(tmp_path / "in")]
    xfer_procs(terminal, "recv")
    phone.wait_for_selector(".offer button.primary")
    assert phone.evaluate("document.activeElement && document.activeElement.id") == "text-input"
    phone.keyboard.type("ne")
    phone.keyboard.press("Enter")
    phone.keyboard.type("and another")
    assert phone.input_value("#text-input") == "typing a line\nand another"
    phone.click("#text-send")
    got = wait_until(lambda: events_of(sender, "text"), 10, "the text at xfer send")
    assert got[0]["text"] == "typing a line\nand another"
    assert phone.locator(".offer button.primary").count() == 1  # still asking: nothing was accepted


# -- staying in the room -----------------------------------------------------------------


def test_reload_rejoins_the_room(phone, relay, xfer_procs, tmp_path):
    recv, url = receiver(xfer_procs, relay, tmp_path)
    open_room(phone, url)
    wait_until(lambda: events_of(recv, "peer-joined"), 10, "the page joining")
    phone.reload()
    phone.wait_for_selector("#status[data-state=connected]")
    # the terminal shows once the reloaded page and it have greeted each other (its name is
    # sealed), a round trip after the relay's welcome that set the status
    wait_until(lambda: "desk (xfer)" in phone.inner_text("#peers"), 10, "the receiver's sealed name")
    wait_until(
        lambda: len(events_of(recv, "peer-joined")) == 2 and events_of(recv, "peer-left"),
        10,
        "the page leaving and joining again",
    )
    # after the reload the page is a full member again: a text still arrives
    phone.fill("#text-input", "still here")
    phone.click("#text-send")
    wait_until(lambda: any(e["text"] == "still here" for e in events_of(recv, "text")), 10, "the text")


def test_reconnects_after_the_relay_restarts(browser, playwright, tmp_path, xfer_procs):
    """The relay goes away: the page counts down, retries, and is back in the same room."""
    relay = Relay(tmp_path)
    try:
        recv, url = receiver(xfer_procs, relay, tmp_path)
        context = browser.new_context(**playwright.devices["Pixel 7"])
        page = context.new_page()
        open_room(page, url)
        relay.stop()
        page.wait_for_selector("#status[data-state=waiting]", timeout=bounded(10_000))
        assert "retry in" in page.inner_text("#status")
        shot(page, "8-reconnecting")
        relay = Relay(tmp_path, port=relay.port)
        page.wait_for_selector("#status[data-state=connected]", timeout=bounded(30_000))
        wait_until(lambda: "desk (xfer)" in page.inner_text("#peers"), 30, "xfer receive back in the room")
        context.close()
    finally:
        relay.stop()


def test_upload_resumes_after_the_relay_is_killed(browser, playwright, tmp_path, xfer_procs):
    """SIGKILL the relay mid-upload and start it again: the page offers the same files again
    and continues from what ``xfer receive`` already wrote, not from zero."""
    src = make_file(tmp_path / "clip.mp4", 60 * MB, 31)
    relay = Relay(tmp_path)
    context = browser.new_context(**playwright.devices["Pixel 7"])
    context.set_default_timeout(bounded(15_000))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    try:
        recv, url = receiver(xfer_procs, relay, tmp_path)
        open_room(page, url)
        wait_until(lambda: "desk" in page.inner_text("#peers"), 10, "the receiver")
        page.set_input_files("#pick-files", [str(src)])

        def written() -> int:
            return max((e["bytes"] for e in events_of(recv, "progress")), default=0)

        wait_until(lambda: written() >= 15 * MB, 60, "15 MB written by xfer receive", interval=0.01)
        relay.proc.kill()  # SIGKILL: no goodbye to anyone
        relay.proc.wait(5)
        relay.log.close()
        at_kill = written()
        assert at_kill < src.stat().st_size, "the upload ended before the relay was killed"
        wait_js(page, "document.querySelector('.transfer[data-state=resuming]') !== null", 10)
        assert "Resuming" in page.inner_text(".transfer .status-line")
        shot(page, "10-upload-resuming")
        relay = Relay(tmp_path, port=relay.port)
        assert recv.wait(120) == 0, recv.stderr
        assert sha256_of(tmp_path / "in" / "clip.mp4") == sha256_of(src)
        accepted = events_of(recv, "accepted")
        assert len(accepted) == 2, accepted
        assert accepted[0]["resumed"] == 0
        assert accepted[1]["resumed"] >= at_kill, accepted  # it went on from what was written, not from zero
        assert events_of(recv, "file-start")[1]["offset"] == accepted[1]["resumed"]
        page.wait_for_selector(".transfer-card .ok", timeout=bounded(20_000))
        assert page.locator(".transfer[data-state=done]").count() == 1
        assert page.locator(".transfer-card .error").count() == 0
        assert not list((tmp_path / "in").glob(".*xfer-*")), "partial or state files left behind"
    finally:
        context.close()
        relay.stop()
    assert not errors, errors


# -- hostile peers ------------------------------------------------------------------------

HOSTILE = '<img src=x onerror="alert(1)">/../..\\evil\u202egpj.exe";\r\nX: y\x00.txt'


def _in_thread(main, result: dict) -> threading.Thread:
    """Run ``main(result)`` (a coroutine function) in a thread with its own event loop, as the
    peers written in these tests are: Playwright's sync API holds this thread's loop."""

    def run() -> None:
        try:
            asyncio.run(main(result))
        except BaseException as exc:  # reported by the test
            result["exception"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _hostile_sender(relay, path: Path):
    """A peer speaking the protocol from Python (the real Sender, over the real SecureLink),
    with a name chosen to hurt."""
    from xfer.transfer.base import SourceFile
    from xfer.transfer.sender import Sender

    async def main(result: dict) -> None:
        sender = await LinkSender.open(relay.ws, "<script>alert(2)</script>")
        result["fragment"] = sender.fragment
        f = SourceFile(path=path, name=HOSTILE, size=path.stat().st_size, mtime=0.0)
        try:
            result["result"] = await asyncio.wait_for(Sender(sender.link, [f], lambda *a, **k: None).run(), bounded(60))
        finally:
            await sender.link.close()

    return main


def test_hostile_file_name_is_text_and_sanitised(phone, relay, tmp_path):
    payload = make_file(tmp_path / "payload", 300_000, 9)
    done: dict = {}
    thread = _in_thread(_hostile_sender(relay, payload), done)
    wait_until(lambda: "fragment" in done or "exception" in done, 10, "the hostile sender's room")
    open_room(phone, relay.page(done["fragment"]))
    phone.wait_for_selector(".offer button.primary")
    offer = phone.locator(".offer")
    assert "<script>alert(2)</script> (xfer) wants to send 1 file" in offer.inner_text()
    assert '<img src=x onerror="alert(1)">' in offer.locator(".name").get_attribute("title")
    assert phone.locator("main img, main script").count() == 0
    shot(phone, "9-hostile-offer")
    with phone.expect_download() as info:
        phone.click(".offer button.primary")
    download = info.value
    saved = tmp_path / "hostile-download"
    download.save_as(saved)
    thread.join(bounded(30))
    assert "exception" not in done, done.get("exception")
    name = download.suggested_filename
    assert "/" not in name and "\\" not in name and "\x00" not in name and "\u202e" not in name
    assert "\r" not in name and "\n" not in name and ".." not in name.split("_")[0]
    assert name.endswith(".txt")
    assert sha256_of(saved) == sha256_of(payload)


# -- a secure context too -------------------------------------------------------------------


def test_on_loopback_too(browser, relay, xfer_procs, tmp_path):
    """On 127.0.0.1 the page is a secure context (WebCrypto, clipboard): same behaviour."""
    recv, url = receiver(xfer_procs, relay, tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        open_room(page, on_lan(url, host="127.0.0.1"))
        assert page.evaluate("window.isSecureContext") is True
        assert page.evaluate("async () => (await import('./e2e.js')).backend().name") == "webcrypto"
        wait_until(lambda: "desk" in page.inner_text("#peers"), 10, "the receiver")
        note = make_file(tmp_path / "note.txt", 70_000, 5)
        page.set_input_files("#pick-files", [str(note)])
        assert recv.wait(30) == 0, recv.stderr
        assert sha256_of(tmp_path / "in" / "note.txt") == sha256_of(note)
        assert page.is_visible("#drop-hint")  # a desktop browser is told it can drop files
    finally:
        context.close()


def test_page_needs_no_wide_screen(phone, relay, xfer_procs, tmp_path):
    """360 px wide: nothing scrolls sideways, touch targets are at least 44 px."""
    recv, url = receiver(xfer_procs, relay, tmp_path)
    phone.set_viewport_size({"width": 360, "height": 740})
    open_room(phone, url)
    assert phone.evaluate("document.documentElement.scrollWidth") <= 360
    sizes = phone.evaluate("""() => [...document.querySelectorAll('button:not([hidden]), label.button, input:not(.visually-hidden)')]
        .filter((e) => e.offsetParent !== null)
        .map((e) => [e.id || e.textContent.trim(), e.getBoundingClientRect().height])""")
    assert sizes and all(h >= 44 for _, h in sizes), sizes
    for control in ("#text-input", "#pick-files", "#pick-camera"):
        assert phone.evaluate(f"document.querySelector('{control}').labels.length") >= 1
    assert phone.get_attribute("#pick-camera", "capture") == "environment"
    shot(phone, "0-room-360px")
    phone.emulate_media(color_scheme="dark")
    assert phone.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(17, 19, 23)"
    shot(phone, "0-room-360px-dark")


def _fetching_sender(relay, lie: bool):
    """A sender that tries the page's download link itself: before it sends the file (to take
    it first), or, with ``lie``, while the page downloads, and then it ends the file with the
    wrong SHA-256."""
    import hashlib
    import os
    import urllib.error
    import urllib.request

    from xfer.protocol import (
        Accept,
        Ack,
        Error,
        FileEnd,
        FileInfo,
        FileStart,
        Offer,
        PeerJoined,
        Verified,
        chunk_header,
    )

    def status_of(url: str) -> int:
        try:
            with urllib.request.urlopen(url, timeout=bounded(10)) as r:
                return r.status
        except urllib.error.HTTPError as exc:
            return exc.code

    async def main(result: dict) -> None:
        sender = await LinkSender.open(relay.ws, "liar" if lie else "racer")
        result["fragment"] = sender.fragment
        conn = sender.link

        async def until(kind):
            while True:
                item = await asyncio.wait_for(conn.recv(), bounded(20))
                if isinstance(item, kind):
                    return item

        try:
            page = (await until(PeerJoined)).peer  # after its handshake: the page proved the link
            data, step = os.urandom(6 * 256 * 1024), 256 * 1024
            result["data"] = data
            await conn.send(
                Offer(to=page.id, transfer=77, files=(FileInfo(name="x.bin", size=len(data)),), window=8 << 20)
            )
            link = f"http://127.0.0.1:{relay.port}/download/{(await until(Accept)).download}/0"
            if not lie:
                result["first"] = await asyncio.to_thread(status_of, link)
            await conn.send(FileStart(to=page.id, transfer=77, index=0))
            for offset in range(0, len(data), step):
                await conn.send_frame(chunk_header(conn.peer_id, page.id, 77, 0, offset) + data[offset : offset + step])
            result["ack"] = (await until(Ack)).bytes  # the page's download is running
            if lie:
                result["again"] = await asyncio.to_thread(status_of, link)
            sha = "0" * 64 if lie else hashlib.sha256(data).hexdigest()
            await conn.send(FileEnd(to=page.id, transfer=77, index=0, size=len(data), sha256=sha))
            end = await until(Error if lie else Verified)
            result["end"] = end.code if isinstance(end, Error) else "verified"
        finally:
            await conn.close()

    return main


def _accept_from_fetching_sender(phone, relay, *, lie: bool):
    """The page accepts a file from ``_fetching_sender`` (in a thread); what it found, and the download."""
    result: dict = {}
    thread = _in_thread(_fetching_sender(relay, lie=lie), result)
    wait_until(lambda: "fragment" in result or "exception" in result, 10, "the fetching sender's room")
    open_room(phone, relay.page(result["fragment"]))
    phone.wait_for_selector(".offer button.primary")
    with phone.expect_download() as info:
        phone.click(".offer button.primary")
    download = info.value
    thread.join(bounded(30))
    assert "exception" not in result, result
    return result, download


def test_bridge_aborts_a_download_whose_hash_does_not_match(phone, relay):
    result, download = _accept_from_fetching_sender(phone, relay, lie=True)
    assert result["ack"] > 0 and result["again"] == 404  # the link is the page's browser's alone
    assert result["end"] == "hash-mismatch"
    assert download.failure() is not None  # the browser did not keep the damaged file
    phone.wait_for_selector(".offer .error")
    assert "SHA-256 mismatch" in phone.inner_text(".offer .error")
    assert "Traceback" not in relay.stderr() and "Exception" not in relay.stderr(), relay.stderr()


def test_a_download_link_works_only_for_the_page_that_asked(phone, relay, tmp_path):
    """Whoever learns the page's download link (here the sender, which sees the page's accept;
    on a plain-http LAN anyone who watches) and fetches it first gets 404 and uses nothing up:
    the link is bound to the browser that loaded the page (a cookie the relay set). The page
    still gets the whole file, and only then says it is saved."""
    result, download = _accept_from_fetching_sender(phone, relay, lie=False)
    assert result["first"] == 404 and result["end"] == "verified"
    saved = tmp_path / "x.bin"
    download.save_as(saved)
    assert saved.read_bytes() == result["data"]
    phone.wait_for_selector(".offer .ok")


def test_several_files_download_one_after_another(phone, relay, xfer_procs, tmp_path):
    files = [
        make_file(tmp_path / "one.bin", 3 * MB, 11),
        make_file(tmp_path / "empty.txt", 0, 12),
        make_file(tmp_path / "three.jpg", 2 * MB, 13),
    ]
    sender = xfer_procs(["send", *map(str, files), "--relay", relay.ws, "--json", "--no-qr"], "send")
    room = sender.first_event()
    downloads = []
    phone.on("download", lambda d: downloads.append(d))
    open_room(phone, on_lan(room["url"]))
    phone.click(".offer button.primary")
    # poll through Playwright (not time.sleep), so that its download events are dispatched
    wait_until(lambda: phone.wait_for_timeout(100) or len(downloads) == 3, 30, "three downloads")
    for d, f in zip(downloads, files):
        saved = tmp_path / f"got-{f.name}"
        d.save_as(saved)
        assert d.suggested_filename == f.name and sha256_of(saved) == sha256_of(f)
    assert sender.wait(30) == 0, sender.stderr
    phone.wait_for_selector(".offer .ok")
    assert phone.locator(".offer .transfer[data-state=done]").count() == 3


def test_fanned_out_send_reaches_a_page_and_a_terminal(phone, relay, xfer_procs, tmp_path):
    """``xfer send --receivers 3``, two terminals and a page: the terminals' chunks are sealed
    and fanned out by the relay, the page's go in clear to its download; every copy is identical."""
    src = make_file(tmp_path / "talk.pdf", 20 * MB, 21)
    sender = xfer_procs(["send", str(src), "--receivers", "3", "--relay", relay.ws, "--json", "--no-qr"], "send")
    room = sender.first_event()
    terminals = [
        xfer_procs(
            [
                "receive",
                "--room",
                room["code"],
                "--relay",
                relay.ws,
                "--yes",
                "--json",
                "--dir",
                str(tmp_path / f"in{i}"),
            ],
            f"recv{i}",
        )
        for i in range(2)
    ]
    open_room(phone, on_lan(room["url"]))
    with phone.expect_download(timeout=bounded(30_000)) as info:
        phone.click(".offer button.primary")
    saved = tmp_path / "page-copy"
    info.value.save_as(saved)
    for recv in terminals:
        assert recv.wait(60) == 0, recv.stderr
    assert sender.wait(60) == 0, sender.stderr
    assert len([e for e in sender.events() if e["event"] == "done"][0]["peers"]) == 3
    assert sha256_of(saved) == sha256_of(src)
    for i in range(2):
        assert sha256_of(tmp_path / f"in{i}" / "talk.pdf") == sha256_of(src)


def test_a_download_from_the_senders_own_relay_says_it_comes_straight_from_it(phone, xfer_procs, tmp_path):
    """``xfer send`` with its built-in relay: the page's files never pass a third party, and
    the offer says so instead of the warning a hosted relay gets."""
    doc = make_file(tmp_path / "doc.bin", 300_000, 8)
    sender = xfer_procs(["send", str(doc), "--host", "127.0.0.1", "--json", "--no-qr", "--name", "laptop"], "send")
    room = sender.first_event()
    open_room(phone, on_lan(room["url"]))
    phone.wait_for_selector(".offer button.primary")
    note = phone.inner_text(".offer .relay-note")
    assert "straight from the sender's computer" in note and "can read" not in note
    with phone.expect_download(timeout=bounded(30_000)) as info:
        phone.click(".offer button.primary")
    saved = tmp_path / "saved.bin"
    info.value.save_as(saved)
    assert sha256_of(saved) == sha256_of(doc)
    assert sender.wait(60) == 0, sender.stderr
