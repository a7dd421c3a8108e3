"""The phone page while it is away and after (issue 15): a phone that sleeps mid-upload is
told what happened when it is back; a batch shows its overall progress and the tab's title
its percentage; received images get a preview; texts and files go to other apps, and the
page is an installable app with a share target. Headless Chromium as a phone on a LAN sees
it, the installed ``xfer`` command, an ``xfer serve`` relay on loopback.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import time
from pathlib import Path

import pytest
from pagekit import (  # noqa: F401
    CHROMIUM,
    CHROMIUM_ARGS,
    LAN_HOST,
    browser,
    make_png,
    on_lan,
    phone,
    playwright,
    relay,
    shot,
    wait_until,
    xfer_procs,
)
from test_page_e2e import https_relay  # noqa: F401
from test_page_session import FreezableProxy, open_room, receiver, written

from conftest import bounded, make_file, sha256_of

MB = 1_000_000

pytestmark = pytest.mark.timeout(180)


class Sleep:
    """Stops the page's JavaScript for a while, as a phone that sleeps does: no event, no timer,
    nothing runs; the browser still holds the socket. (Headless Chromium never hides a page: not
    for another tab, a minimised window or a CDP lifecycle state; so this is the absence a test
    can make.) The debugger is attached beforehand: attaching takes long on a busy machine, and
    an upload would end meanwhile."""

    def __init__(self, page) -> None:
        self.cdp = page.context.new_cdp_session(page)
        self.cdp.send("Debugger.enable")

    def __call__(self, seconds: float, meanwhile=None) -> None:
        """Sleep ``seconds``; ``meanwhile()`` runs while the page is stopped."""
        self.cdp.send("Debugger.pause")  # at the next statement: the page's timers run every few ms
        if meanwhile:
            meanwhile()
        time.sleep(seconds)
        self.cdp.send("Debugger.resume")
        self.cdp.send("Debugger.disable")
        self.cdp.detach()


# What the page showed over time (polled in the page, so nothing is missed between two looks
# from the test): the tab's title and the batch's overall line.
WATCH = """
window.__seen = { titles: [], lines: [] };
setInterval(() => {
  const seen = window.__seen, title = document.title, line = document.querySelector(".overall-line")?.textContent;
  if (seen.titles.at(-1) !== title) seen.titles.push(title);
  if (line && seen.lines.at(-1) !== line) seen.lines.push(line);
}, 20);
"""
PERCENT_TITLE = re.compile(r"^(\d{1,3}) % · xfer$")


def shown_while_running(page, time_left: bool) -> tuple[list[str], list[str]]:
    """The title's percentages and the batch's lines seen while it ran; ``time_left``: the
    batch ran long enough (over 1 s) for the time left to show."""
    seen = page.evaluate("window.__seen")
    percents = [int(m[1]) for t in seen["titles"] if (m := PERCENT_TITLE.match(t))]
    assert any(0 < p < 100 for p in percents), seen["titles"]
    assert percents == sorted(percents), seen["titles"]  # it only goes up
    assert seen["titles"][-1] == "xfer", seen["titles"]  # and back after
    lines = seen["lines"]
    assert all(re.fullmatch(r"\S+ \S?B of \S+ \S?B · \d+%( · about \d+ (s|min) left)?", line) for line in lines[:-1]), (
        lines
    )
    if time_left:
        assert any(line.endswith(" left") for line in lines), lines
    return seen["titles"], lines


def test_a_batch_upload_with_a_sleep_says_what_happened(phone, relay, xfer_procs, tmp_path):
    """Three files from the page into ``xfer receive``, and the phone sleeps in the middle.
    Before: each file had its own bar only, the title stayed "xfer", and nothing was said
    after the sleep. Now one overall bar with the time left, "NN % · xfer" in the title, and
    "The phone slept for 5 s; the upload goes on." — and it does."""
    files = [make_file(tmp_path / f"clip{i}.mp4", 10 * MB, 21 + i) for i in range(3)]
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    phone.context.add_init_script(WATCH)
    open_room(phone, url)
    wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
    sleep = Sleep(phone)
    phone.set_input_files("#pick-files", [str(f) for f in files])
    # the page's own progress (xfer receive reports bytes per file): asleep well before the end
    wait_until(lambda: (m := PERCENT_TITLE.match(phone.title())) and int(m[1]) >= 5, 60, "5 % sent", interval=0.01)
    sleep(4.5)
    note = phone.locator("#away .away-text")
    note.wait_for()
    said = note.inner_text()
    assert re.fullmatch(r"The phone slept for [4-9] s; the upload goes on\.", said), said
    assert phone.get_attribute("#away", "role") == "status"  # read out as it changes
    shot(phone, "share1-back-from-sleep")
    phone.emulate_media(color_scheme="dark")
    shot(phone, "share1-back-from-sleep-dark")
    assert recv.wait(60) == 0, recv.stderr
    for f in files:
        assert sha256_of(tmp_path / "in" / f.name) == sha256_of(f)
    phone.wait_for_selector(".transfer-card .ok")
    phone.wait_for_timeout(100)
    shown_while_running(phone, time_left=True)  # it slept 4.5 s
    assert phone.inner_text(".transfer-card .overall-line") == "All sent · SHA-256 verified"
    assert phone.title() == "xfer"
    assert note.inner_text() == said  # it went on and ended well: not "finished meanwhile"
    phone.click("#away button")
    assert phone.locator("#away").count() == 0


def cut(proxy: FreezableProxy) -> None:
    """Reset every connection through ``proxy`` (it still takes new ones): the network that
    went away while the phone slept."""
    for s in proxy.sockets:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
    proxy.sockets.clear()


def test_a_connection_lost_in_a_sleep_is_said_and_the_upload_resumes(phone, relay, xfer_procs, tmp_path):
    """The phone sleeps mid-upload and its connection goes meanwhile. Before: nothing said.
    Now the note says the connection was lost while it slept, then that the upload goes on
    from where it stopped, which it does: ``xfer receive`` gets the whole file."""
    src = make_file(tmp_path / "clip.mp4", 24 * MB, 25)
    recv, url = receiver(xfer_procs, relay, tmp_path, "--yes")
    proxy = FreezableProxy(relay.port)
    try:
        open_room(phone, f"http://{LAN_HOST}:{proxy.port}/#{url.split('#', 1)[1]}")
        wait_until(lambda: "desk" in phone.inner_text("#peers"), 10, "the receiver")
        sleep = Sleep(phone)
        phone.set_input_files("#pick-files", [str(src)])
        wait_until(lambda: written(recv) >= 4 * MB, 60, "4 MB written", interval=0.01)
        sleep(4.5, meanwhile=lambda: cut(proxy))
        note = phone.locator("#away .away-text")
        wait_until(lambda: "connection was lost" in (note.all_inner_texts() or [""])[0], 10, "the loss said")
        shot(phone, "share6-lost-in-sleep")
        assert recv.wait(60) == 0, recv.stderr
        assert sha256_of(tmp_path / "in" / "clip.mp4") == sha256_of(src)
        phone.wait_for_selector(".transfer-card .ok")
        said = note.inner_text()
        assert re.fullmatch(
            r"The phone slept for [4-9] s, and the connection was lost meanwhile; the upload goes on from where it stopped\.",
            said,
        ), said
        accepted = [e for e in recv.events() if e["event"] == "accepted"]
        assert len(accepted) == 2 and accepted[1]["resumed"] >= 4 * MB, accepted
    finally:
        proxy.close()


def test_a_batch_download_shows_its_progress_and_previews_the_image(phone, relay, xfer_procs, tmp_path):
    """``xfer send`` of a photo and two larger files to the page. Before: no overall bar, no
    percentage in the title, and nothing of the photo on the page. Now the batch's bar and time
    left, "NN % · xfer", and a preview of the photo from the bytes the page itself received
    (small images only), while every file still lands in the downloads with its hash."""
    photo = make_png(tmp_path / "sunset.png", 160)
    files = [photo, make_file(tmp_path / "one.bin", 12 * MB, 31), make_file(tmp_path / "two.bin", 12 * MB, 32)]
    sender = xfer_procs(
        ["send", *map(str, files), "--relay", relay.ws, "--json", "--no-qr", "--name", "laptop"], "send"
    )
    phone.context.add_init_script(WATCH)
    downloads = []
    phone.on("download", lambda d: downloads.append(d))
    open_room(phone, on_lan(sender.first_event()["url"]))
    phone.click(".offer button.primary")
    # poll through Playwright (not time.sleep), so that its download events are dispatched
    wait_until(lambda: phone.wait_for_timeout(100) or len(downloads) == 3, 30, "three downloads")
    by_name = {d.suggested_filename: d for d in downloads}  # the photo is saved once the page holds it whole
    assert sorted(by_name) == sorted(f.name for f in files)
    for f in files:
        saved = tmp_path / f"got-{f.name}"
        by_name[f.name].save_as(saved)
        assert sha256_of(saved) == sha256_of(f)
    assert sender.wait(30) == 0, sender.stderr
    phone.wait_for_selector(".offer .ok")
    img = phone.locator(".offer .received img.preview")
    assert img.count() == 1
    assert img.get_attribute("src").startswith("blob:")
    assert img.get_attribute("alt") == "Preview of sunset.png"
    wait_until(
        lambda: phone.evaluate("document.querySelector('img.preview').naturalWidth") == 160, 5, "the decoded photo"
    )
    shown_while_running(phone, time_left=False)  # 24 MB may take less than 1 s
    assert phone.inner_text(".offer .overall-line") == "All saved · SHA-256 verified"
    # no Web Share API on a plain-http page: no Share button
    assert phone.evaluate("typeof navigator.share") == "undefined"
    assert phone.locator(".offer button.share").count() == 0
    shot(phone, "share2-batch-download-preview")
    phone.emulate_media(color_scheme="dark")
    shot(phone, "share2-batch-download-preview-dark")


def test_what_the_page_says_when_it_is_back(phone, relay):
    """Each outcome of an absence in words (the page's own function; the upload test above
    shows one of them on a real transfer)."""
    phone.goto(relay.page())
    say = "async (a) => (await import('./absence.js')).absenceNote(...a)"
    up = {"kind": "upload", "state": "running"}
    down = {"kind": "download", "state": "running"}
    cases = [
        (["slept", 125_000, [up], True], "The phone slept for 2 min; the upload goes on."),
        (["hidden", 40_000, [up, down], True], "This page was in the background for 40 s; the transfers go on."),
        (
            ["hidden", 40_000, [{**up, "state": "resuming"}], False],
            "This page was in the background for 40 s, and the connection was lost meanwhile: resuming once it is back.",
        ),
        (
            ["slept", 3_900_000, [{**up, "state": "resumed"}], True],
            "The phone slept for 1 h 5 min, and the connection was lost meanwhile; the upload goes on from where it stopped.",
        ),
        (
            ["paused", 9_000, [{**down, "state": "failed"}, up], True],
            "The browser paused this page for 9 s, and the download stopped meanwhile: ask the sender to send again.",
        ),
        (
            ["slept", 60_000, [{**up, "state": "failed"}], False],
            "The phone slept for 1 min, and the upload stopped meanwhile: pick the files again to send them.",
        ),
        (
            ["slept", 60_000, [{**up, "state": "done"}], True],
            "The phone slept for 1 min; the upload finished meanwhile.",
        ),
        (["slept", 60_000, [], True], None),
    ]
    for args, said in cases:
        assert phone.evaluate(say, args) == said, args


# -- an installable app with a share target, at an https origin ----------------------------------


def spki_pin(cert_pem: Path) -> str:
    """The base64 SHA-256 of the certificate's public key: Chromium trusts a certificate so pinned
    (``--ignore-certificate-errors-spki-list``), and only then runs service workers from it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    leaf = x509.load_pem_x509_certificate(cert_pem.read_bytes())
    spki = leaf.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return base64.b64encode(digest.finalize()).decode()


# A form on another page that posts as the system's share sheet does: multipart, to the
# manifest's share_target action, with a real file and a text.
SHARE_SHEET = """
<form method="post" enctype="multipart/form-data" action="{action}">
  <input type="file" name="files" multiple>
  <input name="text" value="look at this">
  <button>share</button>
</form>
"""

# Only to see the Share button's presence logic: headless Chromium on Linux has no share sheet.
# Nothing is asserted of sharing itself.
STUB_SHARE = "navigator.share = async () => {}; navigator.canShare = () => true;"


def fetched(page, path: str) -> tuple[str, str]:
    """(content type, text) of ``path``, fetched by the page (the browser resolves lan.test)."""
    got = page.evaluate(
        "async (path) => { const r = await fetch(path); return [r.headers.get('content-type'), await r.text()]; }",
        path,
    )
    return got[0], got[1]


def test_an_installable_app_whose_share_target_sends_to_xfer_receive(playwright, https_relay, xfer_procs, tmp_path):
    """At an https relay the page is an installable app: its manifest is served and valid
    (Chromium finds no installability error), with an SVG icon and a share target. A photo
    posted to that share target (as the share sheet does) is kept by the page's worker, offered
    on the page, and goes to a real ``xfer receive`` once the page is in its room. Before: no
    manifest, no share target."""
    photo = make_png(tmp_path / "holiday.png", 120)
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={spki_pin(tmp_path / 'cert.pem')}"],
    )
    try:
        context = browser.new_context(**playwright.devices["Pixel 7"])
        context.set_default_timeout(bounded(15_000))
        origin = f"https://{LAN_HOST}:{https_relay.port}/"
        page = context.new_page()
        page.goto(origin)
        kind, body = fetched(page, "manifest.webmanifest")
        assert kind == "application/manifest+json"
        fields = json.loads(body)
        assert fields["name"] == "xfer" and fields["display"] == "standalone" and fields["start_url"] == "./"
        assert fields["share_target"]["method"] == "POST"
        assert fields["share_target"]["enctype"] == "multipart/form-data"
        assert fields["share_target"]["params"]["files"][0]["name"] == "files"
        kind, body = fetched(page, fields["icons"][0]["src"])
        assert kind == "image/svg+xml" and body.startswith("<svg")
        cdp = context.new_cdp_session(page)
        found = cdp.send("Page.getAppManifest")
        assert found["url"] == origin + "manifest.webmanifest" and found["errors"] == [], found
        wait_until(
            lambda: page.evaluate("async () => !!(await navigator.serviceWorker.getRegistration('./share'))?.active"),
            10,
            "the share target's worker",
        )
        # Chromium's own check: nothing stands in the way but the test's private (incognito) profile
        errors = {e["errorId"] for e in cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]}
        assert errors <= {"in-incognito"}, errors

        sheet = context.new_page()
        sheet.set_content(SHARE_SHEET.format(action=origin + "share"))
        sheet.set_input_files("input[type=file]", [str(photo)])
        with sheet.expect_navigation():
            sheet.click("button")
        card = sheet.locator(".shared")
        card.wait_for()
        assert sheet.url == origin  # ?shared is taken off
        assert "holiday.png" in card.inner_text() and "Scan the QR code" in card.inner_text()
        assert sheet.input_value("#text-input") == "look at this"
        shot(sheet, "share3-shared-not-in-a-room")

        wss = f"wss://127.0.0.1:{https_relay.port}/ws"
        trust = {"SSL_CERT_FILE": str(https_relay.ca)}
        recv = xfer_procs(
            ["receive", "--relay", wss, "--yes", "--json", "--no-qr", "--dir", str(tmp_path / "in"), "--name", "desk"],
            "recv",
            env=trust,
        )
        room = context.new_page()  # the QR code opens a new tab
        room.goto(on_lan(recv.first_event()["url"]))
        send = room.locator(".shared button.primary")
        wait_until(lambda: send.inner_text() == "Send to desk (xfer)" and send.is_enabled(), 10, "the receiver")
        shot(room, "share4-shared-in-a-room")
        send.click()
        assert recv.wait(30) == 0, recv.stderr
        assert sha256_of(tmp_path / "in" / "holiday.png") == sha256_of(photo)
        room.wait_for_selector(".transfer-card .ok")
        assert room.locator(".shared").count() == 0
        wait_until(lambda: not room.evaluate("caches.has('xfer-shared')"), 5, "the share forgotten once sent")

        # The Share button shows only where navigator.share exists (a stub here: see STUB_SHARE).
        context.add_init_script(STUB_SHARE)
        texter = xfer_procs(["send", "--text", "from the desk", "--relay", wss, "--json", "--no-qr"], "text", env=trust)
        bubbles = context.new_page()
        bubbles.goto(on_lan(texter.first_event()["url"]))
        bubbles.locator(".bubble:not(.mine) button.share").wait_for()
        shot(bubbles, "share5-text-with-share")
        assert texter.wait(30) == 0, texter.stderr
    finally:
        browser.close()
